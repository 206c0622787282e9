"""The text objective: a language model over omnifuse's own recurrent text encoder (ULMFiT's recipe).

The encoder (:class:`~omnifuse.encoders.text.rnn.TextRNN`, with the options the fine-tuned model will have) reads
the token ids of its own vectorizer, through its own embedding and recurrent layer, and a softmax head on each
step's state predicts the next token. A bidirectional encoder holds two recurrent layers that read the text in
opposite directions: the forward one learns to predict the next token and the backward one the previous token, each
from what it has read so far, as ULMFiT's forward and backward language models (a masked-token objective would need
a mask token the fine-tuned vocabulary does not have, and would train the two directions on inputs they never see
again). The heads are thrown away after pretraining: only the encoder's variables are kept
(:mod:`omnifuse.pretrain.checkpoint`).

The softmax covers the ``pretrain.lm_vocab`` most frequent tokens and one class for all rarer ones (the
vocabulary's out-of-vocabulary id, 1), so a 20,000-word vocabulary costs a fraction of its full softmax. Padding
(id 0) is no target: Keras's cross-entropy leaves it out (``ignore_class``).

The heads' biases start at the log-frequencies of the targets (:func:`target_counts`, :func:`log_prior`): an
untrained model already predicts each token's frequency, so its first steps have nothing to gain from the recurrent
layer but context. Started at zero instead, Adam reaches the frequencies fastest through the head's kernel, by
driving every recurrent state to one saturated constant that the kernel turns into the frequencies (each of the
``units`` states moves every logit at once, the bias only its own); the cell states then grow with every token
(|c| about 50 after 200 tokens), no gradient passes the saturated ``tanh``, the language model stays at the unigram
loss, and a classifier started from that encoder reads almost the same features for every text and cannot fit its
training data (docs/pretraining.md, "What went wrong").
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from omnifuse.config import Config
from omnifuse.encoders.text.rnn import TextRNN
from omnifuse.errors import OmnifuseError
from omnifuse.preprocessing import standardize_text
from omnifuse.pretrain import checkpoint

RARE = 1  # the vectorizer's out-of-vocabulary id, also the class of every token outside the LM's softmax


@keras.saving.register_keras_serializable(package="omnifuse")
class LanguageModel(layers.Layer):
    """Token ids (B, T) -> next-token logits (B, T - 1, lm_vocab) of the forward direction, followed along the time
    axis by the previous-token logits (B, T - 1, lm_vocab) of the backward one for a bidirectional encoder."""

    def __init__(self, encoder: TextRNN, lm_vocab: int, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.lm_vocab = lm_vocab
        self.forward_head = layers.Dense(lm_vocab, name="forward_head")
        self.backward_head = layers.Dense(lm_vocab, name="backward_head") if encoder.bidirectional else None

    def build(self, input_shape):
        self.encoder.build(input_shape)
        self.forward_head.build((None, None, self.encoder.units))
        if self.backward_head is not None:
            self.backward_head.build((None, None, self.encoder.units))

    def call(self, ids, training=None):
        e = self.encoder
        present = ops.not_equal(ids, 0)
        x = e.embed(ids, training=training)
        # every step's state: the encoder is built with a pooling that returns sequences (its variables are the
        # same whatever the pooling); a bidirectional layer's backward states come back in reading order
        h = e.out_drop(e.rnn(x, mask=present, training=training), training=training)
        logits = self.forward_head(h[:, :-1, : e.units])  # step t has read tokens 0..t: predicts t + 1
        if self.backward_head is None:
            return logits
        backward = self.backward_head(h[:, 1:, e.units :])  # step t has read tokens t..end: predicts t - 1
        return ops.concatenate([logits, backward], axis=1)


def targets(ids, lm_vocab: int, bidirectional: bool):
    """The language model's targets for ``ids`` (B, T): the next token (and, bidirectional, the previous one, where
    the step reading it is not padding); ids past the LM's softmax become :data:`RARE`; 0 (padding) is ignored."""
    ids = tf.cast(ids, tf.int64)
    capped = tf.where(ids >= lm_vocab, tf.constant(RARE, tf.int64), ids)
    out = capped[:, 1:]
    if bidirectional:
        previous = tf.where(ids[:, 1:] != 0, capped[:, :-1], tf.zeros_like(ids[:, 1:]))
        out = tf.concat([out, previous], axis=1)
    return out


def check(cfg: Config) -> None:
    """The text encoder must be one a language model can read token by token."""
    txt = cfg.model.text
    if "rnn" not in txt.encoder.split("+"):
        raise OmnifuseError(
            "Expected model.text.encoder = 'rnn' (the encoder omnifuse pretrains on text). "
            f"Received: {txt.encoder!r}"
        )
    if txt.rnn.conv_filters:
        raise OmnifuseError(
            "Expected model.text.rnn.conv_filters = 0 for text pretraining (a language model predicts each next "
            f"token; the convolution pools {txt.rnn.conv_pool} tokens into one step). "
            f"Received: {txt.rnn.conv_filters}"
        )
    if txt.ngrams != 1:
        raise OmnifuseError(f"Expected model.text.ngrams = 1 for text pretraining. Received: {txt.ngrams}")
    if txt.rnn.bigram_buckets and txt.rnn.bidirectional:
        raise OmnifuseError(
            "Expected model.text.rnn.bigram_buckets = 0 with a bidirectional encoder for text pretraining (the "
            "backward language model would read the word it predicts in the bigram). "
            f"Received: {txt.rnn.bigram_buckets}"
        )
    if cfg.pretrain.lm_vocab < 2:
        raise OmnifuseError(f"Expected pretrain.lm_vocab >= 2. Received: {cfg.pretrain.lm_vocab}")


def vectorizer(cfg: Config, texts: np.ndarray, vocabulary: list[str] | None):
    """The encoder's vectorizer, as the fine-tuned model makes it: learned from ``texts`` or given ``vocabulary``."""
    txt = cfg.model.text
    settings = dict(max_tokens=txt.vocab_size, output_sequence_length=txt.sequence_length)
    if vocabulary is not None:
        return layers.TextVectorization(standardize=standardize_text, vocabulary=vocabulary, **settings)
    vectorize = layers.TextVectorization(standardize=standardize_text, **settings)
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(texts.astype(object)).batch(1024))
    return vectorize


def target_counts(cfg: Config, vectorize, texts: np.ndarray) -> np.ndarray:
    """How often each of the language model's classes is a target in ``texts`` (forward and, bidirectional,
    backward targets together; class 0, padding, is never one)."""
    txt = cfg.model.text
    lm_vocab = min(cfg.pretrain.lm_vocab, txt.vocab_size)
    counts = np.zeros(lm_vocab, np.int64)
    for batch in tf.data.Dataset.from_tensor_slices(texts.astype(object)).batch(1024):
        found = targets(vectorize(batch), lm_vocab, txt.rnn.bidirectional).numpy().ravel()
        counts += np.bincount(found[found > 0], minlength=lm_vocab)
    return counts


def log_prior(counts: np.ndarray) -> np.ndarray:
    """The log-probabilities of the classes that :func:`target_counts` counted, add-one smoothed (padding, never a
    target, gets the smallest): the heads' starting biases."""
    smoothed = counts.astype(np.float64) + 1.0
    return np.log(smoothed / smoothed.sum()).astype(np.float32)


def unigram_entropy(counts: np.ndarray) -> float:
    """The loss in nats of a model that knows only the targets' frequencies: what a language model must beat."""
    p = counts[counts > 0] / max(1, counts.sum())
    return float(-(p * np.log(p)).sum())


def build(cfg: Config, counts: np.ndarray | None = None):
    """The encoder (options of ``model.text.rnn``) and the Keras model of the language model on it; ``counts``
    (:func:`target_counts`) start the heads' biases at the targets' log-frequencies (None: at zero, which leaves
    the recurrent layer to learn the frequencies and saturate, see above)."""
    txt = cfg.model.text
    options = dataclasses.asdict(txt.rnn)
    options.pop("init_embeddings")
    options["pooling"] = "max"  # return_sequences: every step's state (the variables do not depend on it)
    encoder = TextRNN(vocab_size=txt.vocab_size, name="text_encoder", **options)
    ids = keras.Input((None,), dtype="int64", name="ids")
    lm = LanguageModel(encoder, min(cfg.pretrain.lm_vocab, txt.vocab_size), name="language_model")
    model = keras.Model(ids, lm(ids), name="text_pretraining")
    if counts is not None:
        for head in (lm.forward_head, lm.backward_head):
            if head is not None:
                head.bias.assign(log_prior(counts))
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0)
    return encoder, model, loss


def stream(cfg: Config, vectorize, texts: np.ndarray, seed: int) -> tuple[tf.data.Dataset, int]:
    """An endless stream of (token ids, targets) batches over ``texts``, reshuffled each pass; each batch cut after
    its longest text (the recurrent layer then runs no step of padding only); and the steps of one pass."""
    p, txt = cfg.pretrain, cfg.model.text
    lm_vocab = min(p.lm_vocab, txt.vocab_size)

    def to_ids(batch):
        ids = tf.cast(vectorize(batch), tf.int64)
        longest = tf.reduce_max(tf.math.count_nonzero(ids, axis=1))
        ids = ids[:, : tf.maximum(longest, 2)]
        return ids, targets(ids, lm_vocab, txt.rnn.bidirectional)

    ds = tf.data.Dataset.from_tensor_slices(texts.astype(object))
    ds = ds.shuffle(len(texts), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(p.batch_size, drop_remainder=len(texts) >= p.batch_size).map(to_ids)
    return ds.prefetch(tf.data.AUTOTUNE), max(1, len(texts) // p.batch_size)


def setup(cfg: Config, texts: np.ndarray, run_dir, seed: int):
    """The language model ready to fit on ``texts``: (vocabulary, encoder, model, loss, stream, steps, encoder name,
    input shape, facts for the run's meta); the vocabulary is ``run_dir``'s when a run before this one learnt it.
    The facts hold ``unigram_entropy``, the loss of word frequencies alone, which the model's loss must get below."""
    vectorize = vectorizer(cfg, texts, checkpoint.read_vocabulary(run_dir))
    vocabulary = vectorize.get_vocabulary()
    counts = target_counts(cfg, vectorize, texts)
    encoder, model, loss = build(cfg, counts)
    data, steps = stream(cfg, vectorize, texts, seed)
    facts = {"unigram_entropy": round(unigram_entropy(counts), 4)}
    return vocabulary, encoder, model, loss, data, steps, "rnn", [cfg.model.text.sequence_length], facts
