"""Images: uint8 (B, H, W, C) pixels 0-255; corruption is Gaussian noise scaled by each image's own spread."""

from __future__ import annotations

DTYPE = "uint8"
CORRUPTION = "Gaussian noise, std / image std"
MAX_LEVEL = 2.0  # noise of twice the image's own standard deviation
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)


def sample_shape(*, image_shape=None, **_) -> tuple[int, ...]:
    if image_shape is None:
        raise ValueError("An image modality needs the images' shape (H, W, C).")
    shape = tuple(int(d) for d in image_shape)
    return (*shape, 1) if len(shape) == 2 else shape


def blank(batch, shape):
    import tensorflow as tf

    return tf.zeros([batch, *shape], tf.uint8)


def corrupt(value, level, seed):
    """``value`` (B, H, W, C) uint8 with Gaussian noise of ``level`` (B,) times each image's own standard
    deviation, rounded and clipped back to 0-255; ``seed``: a stateless seed (2 ints)."""
    import tensorflow as tf

    x = tf.cast(value, tf.float32)
    axes = list(range(1, len(value.shape)))
    scale = tf.math.reduce_std(x, axis=axes, keepdims=True)
    return tf.cast(tf.clip_by_value(tf.round(_noisy(x, scale, level, seed)), 0.0, 255.0), tf.uint8)


def _noisy(x, scale, level, seed):
    """``x`` plus standard normal noise times ``scale`` times each sample's ``level``."""
    import tensorflow as tf

    shape = tf.concat([tf.shape(level), tf.ones([len(x.shape) - 1], tf.int32)], axis=0)
    return x + tf.random.stateless_normal(tf.shape(x), seed=seed) * scale * tf.reshape(level, shape)


def describe(*, image_shape, **_) -> dict:
    h, w, c = image_shape
    kind = "RGB" if c == 3 else "grayscale"
    return {"shape": [h, w, c], "expects": f"an image file (PNG, JPEG, ...), resized to {w}x{h}, {kind}"}


def example(n: int, rng, *, image_shape, **_):
    return rng.integers(0, 256, (n, *image_shape), dtype="uint8")


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    """A PNG file field of random pixels at the model's image size."""
    import io

    from PIL import Image

    h, w, c = info["shape"]
    pixels = rng.integers(0, 256, (h, w, c), dtype="uint8")
    buf = io.BytesIO()
    Image.fromarray(pixels[..., 0] if c == 1 else pixels).save(buf, format="PNG")
    return "file", (f"{name}.png", buf.getvalue(), "image/png")


def feed(info: dict) -> str:
    return "uint8 pixels 0-255, " + info.get("expects", "").replace("an image file (PNG, JPEG, ...), ", "")
