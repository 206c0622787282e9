"""Concatenation fusion: the masked features side by side, projected to ``dim``."""

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="omnifuse")
class ConcatFusion(layers.Layer):
    returns_weights = False

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.modalities = list(modalities)
        self.dim = dim
        self.dropout = dropout
        self.proj = layers.Dense(dim, activation="relu")
        self.drop = layers.Dropout(dropout)

    def build(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        self.proj.build((batch, sum(features_shape[m][-1] for m in self.modalities)))

    def call(self, features, masks, training=None):
        parts = [
            features[m] * ops.reshape(ops.cast(masks[m], features[m].dtype), (-1, 1)) for m in self.modalities
        ]
        return self.drop(self.proj(ops.concatenate(parts, axis=-1)), training=training)

    def compute_output_shape(self, features_shape, masks_shape=None):
        return (next(iter(features_shape.values()))[0], self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "modalities": self.modalities,
            "dim": self.dim,
            "dropout": self.dropout,
        }
