"""TF-IDF text encoder over the TextVectorization's tf-idf vector."""

from __future__ import annotations

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="omnifuse")
class TextTfidf(layers.Layer):
    """A linear layer over a TF-IDF n-gram vector (B, V), the classic strong baseline for long reviews.

    Output (B, units). Its input comes from a ``TextVectorization(output_mode="tf_idf", ngrams=...)`` in the model.
    """

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
        return self.dense(self.drop(ops.cast(x, self.compute_dtype), training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}
