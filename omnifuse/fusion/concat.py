"""Concatenation fusion: the masked features side by side, projected to ``dim``."""

import keras
from keras import layers, ops

from omnifuse.fusion import Fusion, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class ConcatFusion(Fusion):
    returns_weights = False

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.proj = layers.Dense(dim, activation="relu")

    def build(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        self.proj.build((batch, sum(features_shape[m][-1] for m in self.modalities)))

    def call(self, features, masks, training=None):
        parts = self.masked(features, presence(masks, self.modalities, self.compute_dtype))
        return self.drop(self.proj(ops.concatenate(parts, axis=-1)), training=training)
