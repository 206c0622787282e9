"""Fusion layers: ``call(features: dict[name -> (B, D)], masks: dict[name -> (B,)])``.

Every fusion returns the fused ``(B, dim)`` vector; those whose ``returns_weights`` is true return
``(fused, weights)`` with ``weights`` of shape ``(B, n_modalities)`` in the order of ``modalities``.
A modality whose mask is 0 gets weight 0 and its features cannot change the output.
"""

from keras import layers, ops


def presence(masks, modalities, dtype="float32"):
    """The presence masks of ``modalities`` (in that order) as one (B, M) tensor of ``dtype``, 1 = present."""
    return ops.stack([ops.reshape(ops.cast(masks[m], dtype), (-1,)) for m in modalities], axis=1)


def masked_softmax(logits, present):
    """Softmax over axis 1 (the modalities) of ``logits`` (B, M, ...) among the present ones (``present`` (B, M)):
    exactly 0 where absent, all 0 when nothing is present. Written out, because Keras warns on a softmax over a
    single entry (a model with one modality)."""
    p = present
    while len(p.shape) < len(logits.shape):
        p = ops.expand_dims(p, -1)
    logits = ops.where(p > 0, logits, -1e9)
    scaled = ops.exp(logits - ops.max(logits, axis=1, keepdims=True)) * p
    return scaled / ops.maximum(ops.sum(scaled, axis=1, keepdims=True), 1e-12)


class Fusion(layers.Layer):
    """What every fusion shares: the modalities (in order), the fused width ``dim``, dropout on the fused vector,
    the output shapes and the config. A subclass makes its own layers, ``build`` and ``call``, and adds its own
    options to :meth:`get_config`."""

    returns_weights = False
    # whether ``dim = 0`` is accepted: the features pass on without a common projection
    unprojected = False

    def __init__(self, modalities, dim=128, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.modalities = list(modalities)
        self.dim = dim
        self.dropout = dropout
        self.drop = layers.Dropout(dropout)

    def masked(self, features, present):
        """Each modality's features times its presence (``present`` (B, M)): zeros for an absent one."""
        return [
            features[m] * ops.cast(present[:, i : i + 1], features[m].dtype)
            for i, m in enumerate(self.modalities)
        ]

    def compute_output_shape(self, features_shape, masks_shape=None):
        batch = next(iter(features_shape.values()))[0]
        if self.returns_weights:
            return (batch, self.dim), (batch, len(self.modalities))
        return (batch, self.dim)

    def get_config(self):
        return {
            **super().get_config(),
            "modalities": self.modalities,
            "dim": self.dim,
            "dropout": self.dropout,
        }
