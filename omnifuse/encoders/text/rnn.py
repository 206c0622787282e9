"""Recurrent text encoder over token ids (B, L) from the model's TextVectorization; id 0 is padding."""

from __future__ import annotations

import keras
from keras import layers, ops

from omnifuse.encoders.layers import build_chain
from omnifuse.encoders.text.padding import trim_padding
from omnifuse.encoders.text.rnn_config import RNNConfig
from omnifuse.keras_compat import outside_object_sharing


@keras.saving.register_keras_serializable(package="omnifuse")
class TextRNN(layers.Layer):
    """Embedding -> [Conv1D + pool] -> LSTM/GRU (optionally bidirectional). Output (B, units * directions).

    ``bigram_buckets > 0``: a second embedding table, indexed by a hash of each position's (previous word, word) ids
    (:meth:`bigram_ids`), is added to the word embedding.
    """

    def __init__(
        self,
        vocab_size=20000,
        embed_dim=RNNConfig.embed_dim,
        cell=RNNConfig.cell,
        units=RNNConfig.units,
        bidirectional=RNNConfig.bidirectional,
        pooling=RNNConfig.pooling,
        conv_filters=RNNConfig.conv_filters,
        conv_pool=RNNConfig.conv_pool,
        dropout=RNNConfig.dropout,
        word_dropout=RNNConfig.word_dropout,
        bigram_buckets=RNNConfig.bigram_buckets,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"Expected cell 'lstm' or 'gru'. Received: {cell!r}")
        if pooling not in ("last", "max", "maxmean"):
            raise ValueError(f"Expected pooling 'last', 'max' or 'maxmean'. Received: {pooling!r}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"Expected word_dropout in [0, 1). Received: {word_dropout!r}")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.cell = cell
        self.units = units
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.conv_filters = conv_filters
        self.conv_pool = conv_pool
        self.dropout = dropout
        self.word_dropout = word_dropout
        self.bigram_buckets = int(bigram_buckets)
        self.output_dim = units * (2 if bidirectional else 1) * (2 if pooling == "maxmean" else 1)
        self.embedding = layers.Embedding(vocab_size, embed_dim)
        # bucket 0: no bigram (the first word, padding)
        self.bigram_embedding = (
            layers.Embedding(self.bigram_buckets + 1, embed_dim) if self.bigram_buckets else None
        )
        self.word_drop = layers.Dropout(word_dropout, noise_shape=(None, None, 1)) if word_dropout else None
        self.embed_drop = layers.Dropout(dropout)
        self.conv = (
            layers.Conv1D(conv_filters, 5, padding="same", activation="relu") if conv_filters else None
        )
        self.conv_pooling = layers.MaxPooling1D(conv_pool) if conv_filters else None
        rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU
        rnn = rnn_cls(units, return_sequences=pooling != "last")
        if bidirectional:
            with (
                outside_object_sharing()
            ):  # a load could otherwise make both directions one layer (keras_compat)
                rnn = layers.Bidirectional(rnn)
        self.rnn = rnn
        self.out_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        if self.bigram_embedding is not None:
            self.bigram_embedding.build(input_shape)
        build_chain([self.embedding, self.conv, self.conv_pooling, self.rnn], input_shape)

    def bigram_ids(self, ids):
        """Per position, the bucket (1..bigram_buckets) of the bigram that ends there: the pair of word ids
        ``previous * 1000003 + id`` (distinct for vocabularies under a million) modulo the bucket count, plus 1;
        0 where the position or the one before is padding, and at the first position."""
        ids = ops.cast(ids, "int64")
        previous = ops.pad(ids[:, :-1], [[0, 0], [1, 0]])
        buckets = ops.mod(previous * 1000003 + ids, self.bigram_buckets) + 1
        return ops.where(ops.logical_and(ops.not_equal(previous, 0), ops.not_equal(ids, 0)), buckets, 0)

    def _trim_padding(self, ids):
        """``ids`` without the padding columns after the batch's longest text, but for what the convolution
        around the last pooled step reads: a short sentence then runs a few recurrent steps instead of
        ``sequence_length / conv_pool``. Padding is masked everywhere after that, so the output is the same, and in
        training no gradient reaches the columns dropped. Batches of texts of similar length
        (``data.length_buckets``) make this pay in training too."""
        pool, reach = (self.conv_pool, 2) if self.conv is not None else (1, 0)  # the conv's kernel is 5 wide
        return trim_padding(ids, pool, reach)

    def embed(self, ids, training=None):
        """Token ids (B, T) -> the vectors the recurrent layer reads (B, T, embed_dim): word (and word-pair)
        embeddings, with word and embedding dropout in training."""
        x = self.embedding(ids)
        if self.bigram_embedding is not None:
            x = x + self.bigram_embedding(self.bigram_ids(ids))
        if self.word_drop is not None:
            x = self.word_drop(x, training=training)
        return self.embed_drop(x, training=training)

    def call(self, ids, training=None):
        ids = self._trim_padding(ids)
        present = ops.cast(ops.not_equal(ids, 0), "bool")
        x = self.embed(ids, training=training)
        if self.conv is not None:
            x = self.conv_pooling(self.conv(x))
            # a pooled step is padding only if every token it covers was padding
            steps = ops.shape(x)[1]
            present = ops.any(
                ops.reshape(present[:, : steps * self.conv_pool], (-1, steps, self.conv_pool)), axis=-1
            )
        x = self.rnn(x, mask=present, training=training)
        if self.pooling != "last":
            x = self._pool(x, present)
        return self.out_drop(x, training=training)

    def _pool(self, x, present):
        """Max (and for ``maxmean`` also mean) over the steps that are not padding; an empty text gives zeros."""
        keep = present[..., None]
        top = ops.max(ops.where(keep, x, -1e9), axis=1)
        top = ops.where(ops.any(present, axis=1, keepdims=True), top, 0.0)
        if self.pooling == "max":
            return top
        weights = ops.cast(keep, x.dtype)
        mean = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        return ops.concatenate([top, mean], axis=-1)

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
            "word_dropout": self.word_dropout,
            "bigram_buckets": self.bigram_buckets,
        }
