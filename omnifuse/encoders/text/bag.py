"""Bag-of-embeddings text encoder over token ids (B, L); id 0 is padding."""

from __future__ import annotations

import keras
from keras import layers, ops

from omnifuse.encoders.text.padding import trim_padding


@keras.saving.register_keras_serializable(package="omnifuse")
class TextBag(layers.Layer):
    """Bag of (n-gram) embeddings, masked mean over the tokens (fastText-style). Output (B, embed_dim)."""

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
        ids = trim_padding(ids)  # the mean is over the real tokens only
        present = ops.cast(ops.not_equal(ids, 0), self.compute_dtype)[..., None]
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
