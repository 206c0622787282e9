"""Encoders, one per modality kind: a Keras layer taking that modality's tensor, returning (B, output_dim)."""


def build_chain(layers, shape):
    """Build ``layers`` in order from ``shape`` (so a saved model can restore their weights); return the last shape."""
    shape = tuple(shape)
    for layer in layers:
        if layer is None:
            continue
        if not layer.built:
            layer.build(shape)
        shape = tuple(layer.compute_output_shape(shape))
    return shape
