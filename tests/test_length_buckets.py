"""Training batches of texts of similar length (data.length_buckets), and the recurrent encoder that then runs only
as many steps as the batch's longest text, in training as at inference."""

import numpy as np
import pytest
import tensorflow as tf

from omnifuse import pipeline
from omnifuse.config import Config
from omnifuse.data import Dataset, Split


def _texts_of_many_lengths(n=400, seed=0):
    """Texts of 1-200 words; the label is the word count's parity, so a text that lost its label shows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, 201, n)
    texts = np.array([" ".join(f"w{rng.integers(50)}" for _ in range(k)) for k in lengths], dtype=object)
    split = Split(inputs={"text": texts}, labels={"y": lengths % 2})
    return Dataset("toy", {"train": split, "test": split}, {"y": ["even", "odd"]}, {"text": "text"}), lengths


def _batches(length_buckets, repeat=False):
    data, lengths = _texts_of_many_lengths()
    prepared = pipeline.prepare(Config().replace(["data.val_fraction=0"]), [data])
    ds, steps = pipeline.stream(
        prepared,
        [prepared.parts[0].train],
        batch_size=16,
        shuffle=True,
        seed=0,
        repeat=repeat,
        length_buckets=length_buckets,
    )
    out = []
    for x, y in ds.take(steps) if repeat else ds:  # one pass: the buckets' remainders come as short batches
        words = np.array([len(t.split()) for t in x["text"].numpy()])
        np.testing.assert_array_equal(y["y"].numpy(), words % 2)  # each text kept its label
        out.append(words)
    return out, lengths, steps


def test_length_buckets_batch_texts_of_similar_length_and_keep_every_text_once():
    batches, lengths, _ = _batches(length_buckets=4)
    np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.sort(lengths))
    # the buckets are cut at the quartiles of the training texts' word counts (a count at a cut goes below it)
    cuts = np.floor(np.quantile(lengths, [0.25, 0.5, 0.75])) + 1
    for words in batches:
        assert len(set(np.searchsorted(cuts, words, side="right"))) == 1, words
    spread = np.mean([w.max() - w.min() for w in batches])
    random_spread = np.mean([w.max() - w.min() for w in _batches(length_buckets=0)[0]])
    assert spread < random_spread / 3


def test_negative_length_buckets_is_an_error_naming_the_key():
    from omnifuse.errors import OmnifuseError

    with pytest.raises(OmnifuseError, match=r"data.length_buckets of at least 0.*Received: -2"):
        _batches(length_buckets=-2)


def test_word_counts_read_str_and_the_bytes_a_stream_gives_back():
    texts = [np.array(["two words", "", "three utf-8 wörds".encode()], dtype=object)]
    np.testing.assert_array_equal(pipeline._word_counts(texts), [2, 0, 3])
    np.testing.assert_array_equal(pipeline.length_order(texts), [1, 0, 2])


def test_length_buckets_in_an_endless_stream_give_full_batches_in_random_order_of_length():
    batches, _, steps = _batches(length_buckets=4, repeat=True)
    assert len(batches) == steps == 25
    assert all(len(words) == 16 for words in batches)
    medians = [np.median(words) for words in batches]
    assert medians != sorted(medians), "batches of short and long texts must come mixed, not in length order"


@pytest.mark.parametrize(
    "options",
    [dict(conv_filters=8, conv_pool=4, pooling="max", bidirectional=True, cell="gru"), dict(pooling="last")],
    ids=["conv-pool4-bigru-max", "lstm-last"],
)
def test_rnn_encoder_trains_the_same_whatever_the_padding_after_the_longest_text(options):
    """In training the RNN encoder drops the padding after the batch's longest text: the outputs and every
    gradient must be those of the fully padded batch."""
    from omnifuse.encoders.text import TextRNN

    encoder = TextRNN(vocab_size=50, embed_dim=8, units=6, dropout=0.0, **options)
    rng = np.random.default_rng(1)
    ids = np.zeros((3, 80), "int32")
    for row, n in enumerate((9, 23, 30)):
        ids[row, :n] = rng.integers(1, 50, n)
    encoder(ids[:, :40])  # build

    def outputs_and_gradients(batch):
        with tf.GradientTape() as tape:
            out = encoder(tf.constant(batch), training=True)
            loss = tf.reduce_sum(out * tf.range(1.0, out.shape[1] + 1.0))
        return out.numpy(), [
            tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, encoder.trainable_variables)
        ]

    short, short_grads = outputs_and_gradients(ids[:, :40])
    long, long_grads = outputs_and_gradients(ids)
    np.testing.assert_allclose(short, long, rtol=1e-5, atol=1e-6)
    for a, b in zip(short_grads, long_grads, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)
    assert encoder._trim_padding(ids).shape[1] < 40


def test_prediction_runs_shortest_text_first_and_answers_in_sample_order():
    from omnifuse.evaluation import _predict
    from omnifuse.inference import Inference

    texts = np.array(["a b c d e", "a", "", "a b c", "a b"], dtype=object)
    seen = []

    class CountingModel:
        """Answers each sample's word count and number, and notes the order it was asked in."""

        def __call__(self, batch, training=False):
            counts = [len(t.split()) for t in batch["text"].numpy()]
            seen.extend(counts)
            return {"count": np.array(counts), "number": batch["number"].numpy()}

    out = _predict(Inference(CountingModel()), {"text": texts, "number": np.arange(5.0)}, batch_size=2)
    assert seen == [0, 1, 2, 3, 5]
    np.testing.assert_array_equal(out["count"], [5, 1, 0, 3, 2])
    np.testing.assert_array_equal(out["number"], np.arange(5.0))


def test_bag_and_nb_encoders_answer_the_same_whatever_the_padding_after_the_longest_text():
    """The bag and NBSVM encoders drop the padding after the batch's longest text; answers (in training, the NBSVM's
    cross-fitted ones too) must not depend on how far a batch was padded."""
    from omnifuse.encoders.text import TextBag, TextNB

    rng = np.random.default_rng(2)
    labels = np.arange(40) % 2
    ids = np.zeros((40, 60), "int32")
    for row, label in enumerate(labels):
        n = int(rng.integers(3, 20))
        ids[row, :n] = rng.integers(2, 30, n) + 20 * (rng.random(n) < 0.5) * label
    nb = TextNB(vocab_size=60, classes=2, c=1.0)
    nb.adapt([(ids, labels)])
    bag = TextBag(vocab_size=60, embed_dim=4, dropout=0.0)
    for layer, training in ((nb, False), (nb, True), (bag, False)):
        padded = np.asarray(layer(ids, training=training))
        np.testing.assert_allclose(
            np.asarray(layer(ids[:, :20], training=training)), padded, rtol=1e-5, atol=1e-5
        )
        alone = np.asarray(layer(ids[:1], training=training))
        np.testing.assert_allclose(alone, padded[:1], rtol=1e-5, atol=1e-5)
