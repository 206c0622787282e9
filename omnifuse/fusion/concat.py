"""Concatenation fusion: the masked features side by side, projected to ``dim`` (ReLU); ``dim = 0`` passes the
concatenated features on unprojected, so a single-modality model's head sits right on its encoder."""

import keras
from keras import layers, ops

from omnifuse.fusion import Fusion, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class ConcatFusion(Fusion):
    returns_weights = False
    unprojected = True

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.proj = layers.Dense(dim, activation="relu") if dim else None

    def _concatenated_shape(self, features_shape):
        batch = next(iter(features_shape.values()))[0]
        return (batch, sum(features_shape[m][-1] for m in self.modalities))

    def build(self, features_shape, masks_shape=None):
        if self.proj is not None:
            self.proj.build(self._concatenated_shape(features_shape))

    def call(self, features, masks, training=None):
        parts = self.masked(features, presence(masks, self.modalities, self.compute_dtype))
        fused = ops.concatenate(parts, axis=-1)
        if self.proj is not None:
            fused = self.proj(fused)
        return self.drop(fused, training=training)

    def compute_output_shape(self, features_shape, masks_shape=None):
        if self.proj is not None:
            return super().compute_output_shape(features_shape, masks_shape)
        return self._concatenated_shape(features_shape)
