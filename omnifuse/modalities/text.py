"""Text: one string per sample (B,), vectorized inside the model; corruption drops whitespace tokens."""

from __future__ import annotations

DTYPE = "string"
CORRUPTION = "token dropout rate"
MAX_LEVEL = 1.0  # every token dropped
LEVELS = (0.0, 0.25, 0.5, 0.75, MAX_LEVEL)


def sample_shape(**_) -> tuple[int, ...]:
    return ()


def blank(batch, shape=()):
    import tensorflow as tf

    return tf.fill([batch], "")


def corrupt(value, level, seed):
    """``value`` (B,) strings with each whitespace token dropped with probability ``level`` (B,)."""
    import tensorflow as tf

    tokens = tf.strings.split(value)
    draw = tf.random.stateless_uniform(tf.shape(tokens.flat_values), seed=seed)
    keep = tokens.with_flat_values(draw >= tf.gather(level, tokens.value_rowids()))
    return tf.strings.reduce_join(tf.ragged.boolean_mask(tokens, keep), axis=1, separator=" ")


WORDS = ("a", "wonderful", "dull", "film", "great", "awful", "story", "not", "bad", "the")


def describe(**_) -> dict:
    return {"expects": "UTF-8 text; empty text counts as absent"}


def example(n: int, rng, **_):
    import numpy as np

    return np.array([" ".join(rng.choice(WORDS, 8)) for _ in range(n)], dtype=object)


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    return "form", "A wonderful, moving film with a great cast."


def feed(info: dict) -> str:
    return info.get("expects", "")
