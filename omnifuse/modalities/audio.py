"""Audio: float32 (B, samples) waveforms in [-1, 1]; corruption is Gaussian noise scaled by each clip's RMS
(levels 0.25, 0.5, 1, 2 are SNRs of 12, 6, 0 and -6 dB)."""

from __future__ import annotations

from omnifuse.modalities.image import _noisy

DTYPE = "float32"
CORRUPTION = "Gaussian noise, std / RMS"
MAX_LEVEL = 2.0
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)


def sample_shape(*, num_samples: int = 0, **_) -> tuple[int, ...]:
    return (int(num_samples),)


def blank(batch, shape):
    import tensorflow as tf

    return tf.zeros([batch, *shape], tf.float32)


def corrupt(value, level, seed):
    """``value`` (B, samples) with Gaussian noise of ``level`` (B,) times each clip's RMS."""
    import tensorflow as tf

    x = tf.cast(value, tf.float32)
    scale = tf.sqrt(tf.reduce_mean(tf.square(x), axis=list(range(1, len(value.shape))), keepdims=True))
    return tf.cast(_noisy(x, scale, level, seed), value.dtype)
