"""Cross-modal attention fusion, in the spirit of MulT (Tsai et al. 2019).

Tokens. The encoders' contract is one vector ``(B, D_m)`` per modality, so each vector is projected into ``tokens``
learned tokens of width ``dim`` (one Dense to ``tokens * dim``, reshaped; each token position has its own weights
and bias, so the bias doubles as a token/modality embedding). Having the encoders return their own sequences
instead was rejected: a CNN's feature map, an LSTM's states and a spectrogram's frames differ in length and meaning
per encoder, every encoder (and the branch that skips a batch without the modality) would need a second output
contract, and a saved model's inputs to the fusion would change shape with the encoder. Learned tokens keep one
fusion contract for every encoder, and let attention pick sub-spaces of each modality's features, as MulT's
cross-modal blocks do over time steps.

Cross-modal block. One transformer block (``keras.layers.MultiHeadAttention``, residual + LayerNorm, feed-forward,
residual + LayerNorm) in which every token attends only to the tokens of the *other* modalities that are present:
the attention mask is block-off-diagonal (no token attends to its own modality) and drops the columns of absent
modalities. MulT keeps one such block per pair of modalities; here the pairs share weights and the per-modality token
biases tell them apart, which keeps the layer count independent of the number of modalities. A token with no other
modality present to attend to skips the attention update instead of attending to nothing.

Pooling and weights. One learned query attends to the tokens of all present modalities; its output is the fused
vector, and the attention it pays to each modality's tokens (summed over the modality's tokens, averaged over the
heads) is the per-sample modality weight: it sums to 1 over the present modalities and is exactly 0 for an absent one.
An absent modality's features are zeroed before they become tokens, so its content cannot reach the output.
"""

import keras
import numpy as np
from keras import layers, ops

from omnifuse.fusion import Fusion, presence


@keras.saving.register_keras_serializable(package="omnifuse")
class CrossAttentionFusion(Fusion):
    returns_weights = True

    def __init__(self, modalities, dim=128, tokens=4, heads=4, dropout=0.0, **kwargs):
        super().__init__(modalities, dim, dropout, **kwargs)
        self.tokens = tokens
        self.heads = heads
        key_dim = max(1, dim // heads)
        self.to_tokens = {m: layers.Dense(tokens * dim, name=f"tokens_{m}") for m in self.modalities}
        self.attend = layers.MultiHeadAttention(heads, key_dim, name="attend")
        self.norm1 = layers.LayerNormalization(name="norm1")
        self.ff1 = layers.Dense(2 * dim, activation="relu", name="ff1")
        self.ff2 = layers.Dense(dim, name="ff2")
        self.norm2 = layers.LayerNormalization(name="norm2")
        self.pool = layers.MultiHeadAttention(heads, key_dim, name="pool")
        owner = np.repeat(np.arange(len(self.modalities)), tokens)
        self._other = owner[:, None] != owner[None, :]  # (M k, M k): token i may attend to token j

    def build(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        every = (batch, len(self.modalities) * self.tokens, self.dim)
        for m in self.modalities:
            self.to_tokens[m].build(features_shape[m])
        self.attend.build(every, every)
        self.norm1.build(every)
        self.ff1.build(every)
        self.ff2.build((*every[:2], 2 * self.dim))
        self.norm2.build(every)
        self.query = self.add_weight(shape=(1, 1, self.dim), initializer="glorot_uniform", name="query")
        self.pool.build((batch, 1, self.dim), every)

    def call(self, features, masks, training=None):
        n, k, d = len(self.modalities), self.tokens, self.dim
        present = presence(masks, self.modalities, self.compute_dtype)  # (B, M)
        tokens = ops.concatenate(
            [
                ops.reshape(self.to_tokens[m](x), (-1, k, d))
                for m, x in zip(self.modalities, self.masked(features, present))
            ],
            axis=1,
        )  # (B, M k, d)
        seen = ops.repeat(present, k, axis=1) > 0  # (B, M k): tokens of present modalities
        if n > 1:
            mask = ops.logical_and(
                ops.convert_to_tensor(self._other)[None], seen[:, None, :]
            )  # (B, M k, M k)
            has_other = ops.cast(ops.any(mask, axis=-1), tokens.dtype)[..., None]
            update = self.attend(tokens, tokens, attention_mask=mask, training=training)
            tokens = self.norm1(tokens + has_other * update)
            tokens = self.norm2(tokens + self.ff2(self.ff1(tokens)))
        query = ops.broadcast_to(self.query, (ops.shape(tokens)[0], 1, d))
        fused, scores = self.pool(
            query, tokens, attention_mask=seen[:, None, :], return_attention_scores=True, training=training
        )  # (B, 1, d), (B, heads, 1, M k)
        per_modality = ops.sum(ops.reshape(scores, (-1, self.heads, n, k)), axis=-1)  # (B, heads, M)
        weights = ops.mean(per_modality, axis=1) * present  # exactly 0 where absent
        return self.drop(ops.reshape(fused, (-1, d)), training=training), weights

    def get_config(self):
        return {**super().get_config(), "tokens": self.tokens, "heads": self.heads}
