"""Fusion layers: ``call(features: dict[name -> (B, D)], masks: dict[name -> (B,)])``.

Every fusion returns the fused ``(B, dim)`` vector; those whose ``returns_weights`` is true return
``(fused, weights)`` with ``weights`` of shape ``(B, n_modalities)`` in the order of ``modalities``.
A modality whose mask is 0 gets weight 0 and its features cannot change the output.
"""
