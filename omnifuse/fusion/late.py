"""Late fusion, the baseline: each modality predicts on its own and the predictions are averaged.

Each modality gets its own projection ``p_m = relu(W_m x_m)``; the fused vector is the mean of ``p_m`` over the
modalities present in the sample. The model's heads are linear (``model.head_hidden = 0``, the default), so a head
applied to that mean is the mean of the head applied to each ``p_m``: the logits are the average of per-modality
logits, and each modality's pathway (its encoder, ``W_m`` and the head) is a unimodal classifier. With a hidden head
layer the average happens one layer earlier and the equivalence no longer holds.

The weights are the averaging weights, ``1 / (number of present modalities)`` for each present modality and 0 for an
absent one: fixed by design, not learned.
"""

import keras
from keras import layers, ops

from omnifuse.fusion import Fusion, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class LateFusion(Fusion):
    returns_weights = True

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.proj = {m: layers.Dense(dim, activation="relu", name=f"proj_{m}") for m in self.modalities}

    def build(self, features_shape, masks_shape=None):
        for m in self.modalities:
            self.proj[m].build(features_shape[m])

    def call(self, features, masks, training=None):
        present = presence(masks, self.modalities, self.compute_dtype)  # (B, M)
        weights = present / ops.maximum(ops.sum(present, axis=1, keepdims=True), 1.0)
        projected = ops.stack(
            [self.proj[m](x) for m, x in zip(self.modalities, self.masked(features, present))], axis=1
        )
        fused = ops.sum(projected * weights[..., None], axis=1)
        return self.drop(fused, training=training), weights
