"""Attention fusion: score each modality's feature per sample, softmax over the present ones, weighted sum.

Each modality is projected to a common ``dim`` (its own Dense); a shared scorer ``v . tanh(W h + b)`` gives one score
per modality and sample; absent modalities (mask 0) are excluded from the softmax, so their weight is exactly 0 and
their features cannot reach the output. The weights are returned for the model to expose.

``dim = 0``: no common projection. The fused width is the widest modality's; a modality of that width enters as it
is (its features unchanged), a narrower one gets its own ReLU projection to it. A sample with one modality present
then passes that modality's features on exactly, so a one-modality task in a joint model gets the same head input
as in its own model (``cifar10-imdb-fast``: the image head right on fastnet's features, as in ``cifar10-fast``).

``normalize``: each projection is scaled to zero mean and unit variance over its ``dim`` features (a LayerNorm
without learned scale) before it is scored and weighted. Then a modality's share of the fused vector is its weight
alone: the projection's size can no longer carry how much it counts, so the scorer is the only way for the model to
turn a modality down for one sample.
"""

import keras
from keras import layers, ops

from omnifuse.fusion import Fusion, masked_softmax, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class AttentionFusion(Fusion):
    returns_weights = True
    unprojected = True

    def __init__(self, modalities, dim=128, hidden=64, dropout=0.0, normalize=False, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.hidden = hidden
        self.normalize = bool(normalize)
        self.norm = (
            layers.LayerNormalization(center=False, scale=False, name="norm") if self.normalize else None
        )
        # with dim = 0 the projections are made in build, once the widths are known
        self.proj = {m: self._projection(m, dim) for m in self.modalities} if dim else {}
        self.score_hidden = layers.Dense(hidden, activation="tanh", name="score_hidden")
        self.score = layers.Dense(1, use_bias=False, name="score")

    @staticmethod
    def _projection(modality, width):
        return layers.Dense(width, activation="relu", name=f"proj_{modality}")

    def _width(self, features_shape):
        return self.dim or max(features_shape[m][-1] for m in self.modalities)

    def build(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        width = self._width(features_shape)
        if not self.dim:
            self.proj = {
                m: self._projection(m, width) for m in self.modalities if features_shape[m][-1] != width
            }
        for m, proj in self.proj.items():
            proj.build(features_shape[m])
        self.score_hidden.build((batch, len(self.modalities), width))
        if self.norm is not None:
            self.norm.build((batch, len(self.modalities), width))
        self.score.build((batch, len(self.modalities), self.hidden))

    def call(self, features, masks, training=None):
        present = presence(masks, self.modalities, self.compute_dtype)
        projected = ops.stack(
            [self.proj[m](features[m]) if m in self.proj else features[m] for m in self.modalities], axis=1
        )  # (B, M, width)
        if self.norm is not None:
            projected = self.norm(projected)
        projected = projected * present[..., None]
        scores = ops.squeeze(self.score(self.score_hidden(projected)), axis=-1)  # (B, M)
        weights = masked_softmax(scores, present)  # exactly 0 where absent; all 0 if nothing is present
        fused = ops.sum(projected * weights[..., None], axis=1)
        return self.drop(fused, training=training), weights

    def compute_output_shape(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        return (batch, self._width(features_shape)), (batch, len(self.modalities))

    def get_config(self):
        return {**super().get_config(), "hidden": self.hidden, "normalize": self.normalize}
