"""Fusion layers: ``call(features: dict[name -> (B, D)], masks: dict[name -> (B,)])``.

Every fusion returns the fused ``(B, dim)`` vector; those whose ``returns_weights`` is true return
``(fused, weights)`` with ``weights`` of shape ``(B, n_modalities)`` in the order of ``modalities``.
A modality whose mask is 0 gets weight 0 and its features cannot change the output.
"""

from keras import ops


def presence(masks, modalities):
    """The presence masks of ``modalities`` (in that order) as one float32 (B, M) tensor, 1 = present."""
    return ops.stack([ops.reshape(ops.cast(masks[m], "float32"), (-1,)) for m in modalities], axis=1)
