"""The image objective: contrastive learning of omnifuse's from-scratch image encoders (SimCLR, Chen et al. 2020).

Each image is seen twice per step, each time differently perturbed with omnifuse's own augmentations: Gaussian
noise at a random level (the image modality's corruption rule, as consistency training's strong view makes it) in
the data stream, then the random flip and translation of :class:`~omnifuse.encoders.image.augment.ImageAugment`
inside the step (``fastnet`` adds its own flip and shift on top, as in its training). The encoder and a small
projection head map both views to unit vectors, and the NT-Xent loss asks each view to pick its twin among the
other 2B - 1 views of the batch at temperature ``pretrain.temperature``. The projection head is thrown away: only
the encoder's variables are kept (:mod:`omnifuse.pretrain.checkpoint`).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf
from keras import layers, ops

from omnifuse.config import Config
from omnifuse.encoders.image.augment import ImageAugment
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import image as image_kind
from omnifuse.pretrain import checkpoint
from omnifuse.registry import IMAGE_ENCODERS, lookup

NOISE = 0.5  # the views' noise level is drawn up to this share of the image kind's strongest (semi.STRONG's)


@keras.saving.register_keras_serializable(package="omnifuse")
class ContrastiveLogits(layers.Layer):
    """Two views (B, H, W, C) -> logits (2B, 2B) of each view's cosine similarity to every view / temperature, a
    view's similarity to itself at -1e9; the target of view i is its twin, (i + B) mod 2B (see :func:`twins`)."""

    def __init__(self, encoder, projection_dim: int = 128, temperature: float = 0.2, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.projection_dim = projection_dim
        self.temperature = temperature
        self.augment = ImageAugment(flip=True, translate=0.125, name="views")
        self.hidden = layers.Dense(encoder.output_dim, activation="relu", name="projection_hidden")
        self.project = layers.Dense(projection_dim, name="projection")

    def build(self, input_shape):
        shape = tuple(input_shape[0])
        self.augment.build(shape)
        if not self.encoder.built:
            self.encoder.build(shape)
        self.hidden.build((None, self.encoder.output_dim))
        self.project.build((None, self.encoder.output_dim))

    def call(self, views, training=None):
        first, second = views
        x = ops.concatenate(
            [self.augment(first, training=training), self.augment(second, training=training)], axis=0
        )
        z = self.project(self.hidden(self.encoder(x, training=training)))
        z = ops.cast(z, "float32")
        z = z / ops.maximum(ops.norm(z, axis=1, keepdims=True), 1e-12)
        logits = ops.matmul(z, ops.transpose(z)) / self.temperature
        return ops.where(ops.eye(ops.shape(z)[0], dtype="bool"), -1e9, logits)


def twins(batch):
    """The NT-Xent targets of a batch of ``batch`` pairs: view i's twin is i + B, view B + i's is i."""
    return tf.concat([tf.range(batch, 2 * batch), tf.range(0, batch)], axis=0)


def build(cfg: Config, images: np.ndarray):
    """The encoder (``model.image.encoder`` with its options; a data-initialised one adapted to ``images``) and the
    Keras model of the contrastive objective on it."""
    img, p = cfg.model.image, cfg.pretrain
    encoder = lookup(IMAGE_ENCODERS, img.encoder, "image encoder")(
        **dataclasses.asdict(getattr(img, img.encoder)), name="image_encoder"
    )
    shape = tuple(images.shape[1:])
    if hasattr(encoder, "adapt"):
        encoder.adapt(images[:5000])
    views = [keras.Input(shape, dtype="uint8", name=f"view{i}") for i in (1, 2)]
    head = ContrastiveLogits(encoder, p.projection_dim, p.temperature, name="contrastive")
    model = keras.Model(views, head(views), name="image_pretraining")
    return encoder, model, keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def stream(cfg: Config, images: np.ndarray, seed: int) -> tuple[tf.data.Dataset, int]:
    """An endless stream of ((view 1, view 2), twins) batches over ``images``, reshuffled each pass, each view with
    its own noise; and the steps of one pass."""
    p = cfg.pretrain

    def views(step, batch):
        keys = tf.random.experimental.stateless_split(tf.stack([tf.constant(seed, tf.int64), step]), 4)
        n = tf.shape(batch)[0]
        out = []
        for i in (0, 1):
            level = tf.random.stateless_uniform([n], seed=keys[2 * i]) * (NOISE * image_kind.MAX_LEVEL)
            out.append(image_kind.corrupt(batch, level, keys[2 * i + 1]))
        return (out[0], out[1]), twins(n)

    ds = tf.data.Dataset.from_tensor_slices(images)
    ds = ds.shuffle(len(images), seed=seed, reshuffle_each_iteration=True).repeat()
    ds = ds.batch(p.batch_size, drop_remainder=len(images) >= p.batch_size).enumerate().map(views)
    return ds.prefetch(tf.data.AUTOTUNE), max(1, len(images) // p.batch_size)


def check(cfg: Config) -> None:
    """The image encoder must be one omnifuse pretrains from scratch."""
    if cfg.model.image.encoder not in checkpoint.PRETRAINABLE["image"]:
        raise OmnifuseError(
            f"Expected model.image.encoder to be one of {', '.join(checkpoint.PRETRAINABLE['image'])} (the image "
            f"encoders omnifuse pretrains from scratch). Received: {cfg.model.image.encoder!r}"
        )


def setup(cfg: Config, images: np.ndarray, run_dir, seed: int):
    """The contrastive model ready to fit on ``images``: (no vocabulary, encoder, model, loss, stream, steps,
    encoder name, input shape, no further facts)."""
    encoder, model, loss = build(cfg, images)
    data, steps = stream(cfg, images, seed)
    return None, encoder, model, loss, data, steps, cfg.model.image.encoder, list(images.shape[1:]), {}
