"""Gated fusion: the gated multimodal unit (GMU, Arevalo et al. 2017) generalised to N modalities.

Each modality gets its own ``h_m = tanh(W_m x_m)``; a gate network sees every modality's (masked) features and the
presence mask and gives, per output dimension, one logit per modality; a softmax over the *present* modalities turns
them into gates ``z_m`` that sum to 1 in every dimension, and the fused vector is ``sum_m z_m * h_m``. With two
modalities this is the paper's ``z h_1 + (1 - z) h_2`` with ``z = sigmoid(l_1 - l_2)``.

The per-sample modality weights are the gates averaged over the dimensions: they sum to 1 over the present modalities
(each dimension's gates do) and an absent modality's gate is exactly 0 in every dimension.
"""

import keras
from keras import layers, ops

from omnifuse.fusion import Fusion, masked_softmax, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class GatedFusion(Fusion):
    returns_weights = True

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.hidden = {m: layers.Dense(dim, activation="tanh", name=f"hidden_{m}") for m in self.modalities}
        self.gate = layers.Dense(dim * len(self.modalities), name="gate")

    def build(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        for m in self.modalities:
            self.hidden[m].build(features_shape[m])
        width = sum(features_shape[m][-1] for m in self.modalities) + len(self.modalities)
        self.gate.build((batch, width))

    def call(self, features, masks, training=None):
        present = presence(masks, self.modalities, self.compute_dtype)  # (B, M)
        masked = self.masked(features, present)
        hidden = ops.stack([self.hidden[m](x) for m, x in zip(self.modalities, masked)], axis=1)  # (B, M, D)
        # the gate sees which modalities are present, not only their (zeroed) features
        logits = ops.reshape(
            self.gate(ops.concatenate([*masked, present], axis=-1)), (-1, len(self.modalities), self.dim)
        )
        gates = masked_softmax(logits, present)  # over the present modalities, per dimension; 0 where absent
        fused = ops.sum(gates * hidden, axis=1)
        weights = ops.mean(gates, axis=-1)
        return self.drop(fused, training=training), weights
