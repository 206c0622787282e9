"""Random flip and translation of image batches inside the training step."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


def _random_flip(x, seed_generator):
    """Each image of ``x`` (B, H, W, C) mirrored left-right with probability 1/2."""
    coin = keras.random.uniform((ops.shape(x)[0],), seed=seed_generator) < 0.5
    return ops.where(coin[:, None, None, None], ops.flip(x, axis=2), x)


def _window(padded, start, size: int, axis: int):
    """``size`` consecutive rows (axis 1) or columns (axis 2) of each image of ``padded`` (B, H, W, C), the window of
    image b beginning at ``start[b]`` (int (B,))."""
    index = ops.arange(size)[None, :] + start[:, None]
    index = index[:, :, None, None] if axis == 1 else index[:, None, :, None]
    return ops.take_along_axis(padded, index, axis=axis)


def _shifted(x, dy, dx, r: int):
    """Each image of ``x`` (B, H, W, C) moved by (dy - r, dx - r) pixels, reflect-padded; dy, dx int (B,) in [0, 2r]."""
    padded = ops.pad(x, [[0, 0], [r, r], [r, r], [0, 0]], mode="reflect")
    return _window(_window(padded, dy, x.shape[1], 1), dx, x.shape[2], 2)


def _translated(x, ty, tx, reach: float):
    """Each image of ``x`` (B, H, W, C) moved by (ty, tx) pixels (float (B,), |shift| <= ``reach`` times the side),
    resampled bilinearly; the border mirrors the image with its edge pixel repeated (Keras's ``fill_mode="reflect"``)."""
    for axis, shift in ((1, ty), (2, tx)):
        size = x.shape[axis]
        pad = int(np.ceil(reach * size)) + 1
        widths = [[0, 0]] * 4
        widths[axis] = [pad, pad]
        padded = ops.pad(x, widths, mode="symmetric")
        source = pad - shift  # where output pixel 0 reads from, in padded coordinates
        start = ops.floor(source)
        frac = ops.cast(source - start, x.dtype)[:, None, None, None]
        start = ops.cast(start, "int32")
        x = (1 - frac) * _window(padded, start, size, axis) + frac * _window(padded, start + 1, size, axis)
    return x


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageAugment(layers.Layer):
    """Random horizontal flip and translation of each training image, inside the training step; otherwise only the
    cast of the pixels to the layer's compute dtype.

    Each image moves by a uniform random fraction of up to ``translate`` of its height and of its width, resampled
    bilinearly with a mirrored border, as Keras's ``RandomFlip("horizontal")`` + ``RandomTranslation(translate,
    translate, fill_mode="reflect")``, but in gathers and arithmetic that XLA compiles (those Keras layers opt out
    of ``jit_compile``, so a model holding them trains without XLA).
    """

    def __init__(self, flip=True, translate=0.125, seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0 <= translate < 1:
            raise ValueError(f"Expected translate in [0, 1). Received: translate={translate!r}")
        self.flip = flip
        self.translate = translate
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, x, training=None):
        # uint8 pixels become floats (exact, also in bfloat16), so the resampling can interpolate between them
        x = ops.cast(x, self.compute_dtype)
        if not training:
            return x
        batch = ops.shape(x)[0]
        if self.flip:
            x = _random_flip(x, self.seed_generator)
        if self.translate:
            shifts = keras.random.uniform(
                (2, batch), -self.translate, self.translate, seed=self.seed_generator
            )
            x = _translated(x, shifts[0] * x.shape[1], shifts[1] * x.shape[2], self.translate)
        return x

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "flip": self.flip, "translate": self.translate, "seed": self.seed}
