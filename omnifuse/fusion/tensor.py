"""Tensor fusion in low rank: LMF (Liu et al. 2018).

Full tensor fusion takes the outer product of ``z_m = [x_m, 1]`` over the modalities and maps it linearly to ``dim``;
the constant 1 appended to each vector keeps every unimodal and lower-order term in that product. LMF factorises the
weight tensor into ``rank`` terms, one factor ``W_m^(i)`` (``(D_m + 1) x dim``) per modality and term, so

    fused = sum_i lambda_i * prod_m (z_m W_m^(i)) + b

costs ``rank * sum_m (D_m + 1) * dim`` weights instead of ``prod_m (D_m + 1) * dim``.

A masked modality enters as ``z_m = [0, ..., 0, 1]``: exactly what an absent one does (its features are zeros), so
its product factor is the learned constant row of the appended 1 and its features cannot change the output. The
fusion mixes modalities multiplicatively and has no per-modality weight to report (``returns_weights`` is false).
"""

import keras
from keras import ops

from omnifuse.fusion import Fusion, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class TensorFusion(Fusion):
    returns_weights = False

    def __init__(self, modalities, dim=128, rank=4, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.rank = rank

    def build(self, features_shape, masks_shape=None):
        self.factors = {
            m: self.add_weight(
                shape=(features_shape[m][-1] + 1, self.rank * self.dim),
                initializer="glorot_uniform",
                name=f"factor_{m}",
            )
            for m in self.modalities
        }
        self.rank_weights = self.add_weight(shape=(self.rank,), initializer="ones", name="rank_weights")
        self.bias = self.add_weight(shape=(self.dim,), initializer="zeros", name="bias")

    def call(self, features, masks, training=None):
        product = None
        for m, x in zip(
            self.modalities, self.masked(features, presence(masks, self.modalities, self.compute_dtype))
        ):
            z = ops.concatenate([x, ops.ones_like(x[:, :1])], axis=-1)  # the appended constant 1
            term = ops.reshape(ops.matmul(z, self.factors[m]), (-1, self.rank, self.dim))
            product = term if product is None else product * term
        fused = ops.einsum("brd,r->bd", product, self.rank_weights) / self.rank + self.bias
        return self.drop(fused, training=training)

    def get_config(self):
        return {**super().get_config(), "rank": self.rank}
