"""Text encoders over token ids (B, L) from the model's TextVectorization; id 0 is padding."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from omnifuse.encoders import build_chain


@dataclass(frozen=True)
class RNNConfig:
    embed_dim: int = 128
    cell: str = "lstm"  # lstm | gru
    units: int = 64
    bidirectional: bool = False
    pooling: str = "last"  # last (final state) | max (over all steps, padding excluded)
    conv_filters: int = (
        0  # > 0: Conv1D + max-pool before the RNN (the CNN-LSTM combination), shortening the sequence
    )
    conv_pool: int = 4
    dropout: float = 0.2


@dataclass(frozen=True)
class BagConfig:
    embed_dim: int = 64
    dropout: float = 0.2


@dataclass(frozen=True)
class TfidfConfig:
    vocab_size: int = 100000  # n-grams kept (most frequent in the training texts)
    ngrams: int = 2  # unigrams up to this length
    units: int = 64
    dropout: float = 0.5


@keras.saving.register_keras_serializable(package="omnifuse")
class TextRNN(layers.Layer):
    """Embedding -> [Conv1D + pool] -> LSTM/GRU (optionally bidirectional). Output (B, units * directions)."""

    output_kind = "vector"

    def __init__(
        self,
        vocab_size=20000,
        embed_dim=128,
        cell="lstm",
        units=64,
        bidirectional=False,
        pooling="last",
        conv_filters=0,
        conv_pool=4,
        dropout=0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"Expected cell 'lstm' or 'gru'. Received: {cell!r}")
        if pooling not in ("last", "max"):
            raise ValueError(f"Expected pooling 'last' or 'max'. Received: {pooling!r}")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.cell = cell
        self.units = units
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.conv_filters = conv_filters
        self.conv_pool = conv_pool
        self.dropout = dropout
        self.output_dim = units * (2 if bidirectional else 1)
        self.embedding = layers.Embedding(vocab_size, embed_dim)
        self.embed_drop = layers.Dropout(dropout)
        self.conv = (
            layers.Conv1D(conv_filters, 5, padding="same", activation="relu") if conv_filters else None
        )
        self.conv_pooling = layers.MaxPooling1D(conv_pool) if conv_filters else None
        rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU
        rnn = rnn_cls(units, return_sequences=pooling == "max")
        self.rnn = layers.Bidirectional(rnn) if bidirectional else rnn
        self.out_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        build_chain([self.embedding, self.conv, self.conv_pooling, self.rnn], input_shape)

    def call(self, ids, training=None):
        present = ops.cast(ops.not_equal(ids, 0), "bool")
        x = self.embed_drop(self.embedding(ids), training=training)
        if self.conv is not None:
            x = self.conv_pooling(self.conv(x))
            # a pooled step is padding only if every token it covers was padding
            steps = ops.shape(x)[1]
            present = ops.any(
                ops.reshape(present[:, : steps * self.conv_pool], (-1, steps, self.conv_pool)), axis=-1
            )
        x = self.rnn(x, mask=present, training=training)
        if self.pooling == "max":
            x = ops.max(ops.where(present[..., None], x, -1e9), axis=1)
            x = ops.where(
                ops.any(present, axis=1, keepdims=True), x, 0.0
            )  # an empty text gives zeros, not -1e9
        return self.out_drop(x, training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "cell": self.cell,
            "units": self.units,
            "bidirectional": self.bidirectional,
            "pooling": self.pooling,
            "conv_filters": self.conv_filters,
            "conv_pool": self.conv_pool,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class TextBag(layers.Layer):
    """Bag of (n-gram) embeddings, masked mean over the tokens (fastText-style). Output (B, embed_dim)."""

    output_kind = "vector"

    def __init__(self, vocab_size=20000, embed_dim=64, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.output_dim = embed_dim
        self.embedding = layers.Embedding(vocab_size, embed_dim)
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.embedding.build(input_shape)

    def call(self, ids, training=None):
        present = ops.cast(ops.not_equal(ids, 0), "float32")[..., None]
        total = ops.sum(self.embedding(ids) * present, axis=1)
        return self.drop(total / ops.maximum(ops.sum(present, axis=1), 1.0), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class TextTfidf(layers.Layer):
    """A linear layer over a TF-IDF n-gram vector (B, V), the classic strong baseline for long reviews.

    Output (B, units). Its input comes from a ``TextVectorization(output_mode="tf_idf", ngrams=...)`` in the model.
    """

    output_kind = "vector"

    def __init__(self, units=64, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.output_dim = units
        self.drop = layers.Dropout(dropout)
        self.dense = layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x, training=None):
        return self.dense(self.drop(ops.cast(x, "float32"), training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}
