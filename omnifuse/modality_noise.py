"""Modality dropout and corruption as augmentations of a training stream of filled ``(x, y)`` batches
(``train.modality_dropout``, ``train.modality_noise``): stateless draws, seeded by the seed and each batch's
position, so a stream is the same for a seed."""

from __future__ import annotations

import tensorflow as tf

from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as kind_of
from omnifuse.names import mask_name


def _presence(x: dict, names: list[str]) -> tuple[tf.Tensor, tf.Tensor]:
    """For a filled batch: which of ``names`` each sample has (B, M), and whether it has 2 or more (B, 1)."""
    present = tf.stack([x[mask_name(m)] > 0 for m in names], axis=1)
    several = tf.reduce_sum(tf.cast(present, tf.int32), axis=1, keepdims=True) >= 2
    return present, several


def drop_modalities(ds: tf.data.Dataset, modalities: dict, rate: float, seed: int) -> tf.data.Dataset:
    """Modality dropout (``train.modality_dropout``) on a stream of filled ``(x, y)`` batches.

    In each sample with at least 2 modalities present, each present modality is dropped (mask 0 and its input
    zeroed, ``""`` for text) with probability ``rate``; where that would drop all of them, the one with the largest
    draw stays. So with 2 modalities each is dropped with probability ``rate - rate**2 / 2`` and never both. The
    draws are stateless, seeded by ``seed`` and the batch's position in the stream (deterministic for a seed).
    """
    if isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise OmnifuseError(f"Expected train.modality_dropout in [0, 1]. Received: {rate!r}")
    names = sorted(modalities)

    def drop(step, batch):
        x, y = batch
        present, several = _presence(x, names)
        key = tf.stack([tf.constant(seed, tf.int64), step])
        draw = tf.random.stateless_uniform(tf.shape(present), seed=key)
        dropped = present & several & (draw < rate)
        every = tf.reduce_all(dropped | ~present, axis=1, keepdims=True)
        keeper = tf.one_hot(tf.argmax(tf.where(present, draw, -1.0), axis=1), len(names), True, False)
        dropped = dropped & ~(every & keeper)
        out = dict(x)
        for i, m in enumerate(names):
            keep = ~dropped[:, i]
            value = x[m]
            shape = tf.concat([tf.shape(keep), tf.ones([len(value.shape) - 1], tf.int32)], axis=0)
            out[m] = tf.where(tf.reshape(keep, shape), value, tf.zeros_like(value))
            out[mask_name(m)] = x[mask_name(m)] * tf.cast(keep, x[mask_name(m)].dtype)
        return out, y

    return ds.enumerate().map(drop, num_parallel_calls=tf.data.AUTOTUNE)


def corrupt_modalities(ds: tf.data.Dataset, modalities: dict, rate: float, seed: int) -> tf.data.Dataset:
    """Corruption augmentation (``train.modality_noise``) on a stream of filled ``(x, y)`` batches.

    In each sample with at least 2 modalities present, each present modality is corrupted with probability
    ``rate``, at a level drawn uniformly from [0, its kind's ``MAX_LEVEL``] with the kind's one corruption rule,
    which the robustness evaluation uses too (see omnifuse/modalities/: Gaussian noise scaled by each image's
    standard deviation, each clip's RMS, each numbers column's spread; text tokens dropped). The masks
    stay 1: the model sees a present but unreliable modality, so a fusion that weights modalities learns to trust
    a noisy one less. Draws are stateless, seeded by ``seed`` and the batch's position in the stream.
    """
    if isinstance(rate, bool) or not 0.0 <= rate <= 1.0:
        raise OmnifuseError(f"Expected train.modality_noise in [0, 1]. Received: {rate!r}")
    names = sorted(modalities)
    kinds = {m: kind_of(modalities[m], m) for m in names}

    def corrupt(step, batch):
        x, y = batch
        present, several = _presence(x, names)
        keys = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), step]), 2 + 2 * len(names)
        )
        chosen = tf.random.stateless_uniform(tf.shape(present), seed=keys[0]) < rate
        chosen = chosen & present & several
        levels = tf.random.stateless_uniform(tf.shape(present), seed=keys[1])
        out = dict(x)
        for i, m in enumerate(names):
            rule = kinds[m]
            level = tf.where(chosen[:, i], levels[:, i] * rule.MAX_LEVEL, 0.0)
            if rule.DTYPE == "string":  # rejoining the tokens would change an untouched text's spacing
                out[m] = tf.where(chosen[:, i], rule.corrupt(x[m], level, keys[2 + 2 * i]), x[m])
            else:
                out[m] = rule.corrupt(x[m], level, keys[3 + 2 * i])
        return out, y

    return ds.enumerate().map(corrupt, num_parallel_calls=tf.data.AUTOTUNE)
