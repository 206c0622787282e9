"""Image encoders: the classic conv-conv-pool CNN and a small BN ResNet. Input: uint8 or float images (B, H, W, C)."""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import layers, ops

from omnifuse.encoders import build_chain


@dataclass(frozen=True)
class CNNConfig:
    filters: tuple[int, ...] = (32, 64)  # one conv-conv-pool block per entry
    dense_units: int = 256
    batchnorm: bool = True
    dropout: float = 0.25


@dataclass(frozen=True)
class ResNetConfig:
    widths: tuple[int, ...] = (
        64,
        128,
        256,
    )  # one stage per entry, each halving the resolution after the first
    blocks: int = 1  # residual blocks per stage
    dense_units: int = 256
    dropout: float = 0.0


def _conv_bn(filters: int, batchnorm: bool, name: str) -> list[layers.Layer]:
    out = [layers.Conv2D(filters, 3, padding="same", use_bias=not batchnorm, name=f"{name}_conv")]
    if batchnorm:
        out.append(layers.BatchNormalization(name=f"{name}_bn"))
    out.append(layers.Activation("relu", name=f"{name}_relu"))
    return out


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageCNN(layers.Layer):
    """The classic Keras CIFAR-10 CNN: (conv-conv-pool-dropout) x len(filters) -> dense. Output (B, dense_units)."""

    output_kind = "vector"

    def __init__(self, filters=(32, 64), dense_units=256, batchnorm=True, dropout=0.25, **kwargs):
        super().__init__(**kwargs)
        self.filters = tuple(filters)
        self.dense_units = dense_units
        self.batchnorm = batchnorm
        self.dropout = dropout
        self.output_dim = dense_units
        self.rescale = layers.Rescaling(1.0 / 255.0)
        self.stack = []
        for i, f in enumerate(self.filters):
            self.stack += _conv_bn(f, batchnorm, f"b{i}a") + _conv_bn(f, batchnorm, f"b{i}b")
            self.stack += [layers.MaxPooling2D(2), layers.Dropout(dropout)]
        self.flatten = layers.Flatten()
        self.dense = layers.Dense(dense_units, use_bias=not batchnorm)
        self.dense_bn = layers.BatchNormalization() if batchnorm else None
        self.out_dropout = layers.Dropout(min(2 * dropout, 0.5))

    def build(self, input_shape):
        build_chain([*self.stack, self.flatten, self.dense, self.dense_bn], input_shape)

    def call(self, x, training=None):
        x = self.rescale(ops.cast(x, "float32"))
        for layer in self.stack:
            x = layer(x, training=training)
        x = self.dense(self.flatten(x))
        if self.dense_bn is not None:
            x = self.dense_bn(x, training=training)
        return self.out_dropout(ops.relu(x), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "filters": list(self.filters),
            "dense_units": self.dense_units,
            "batchnorm": self.batchnorm,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageResNet(layers.Layer):
    """A small pre-activation-free BN ResNet: stem conv, stages of residual blocks, global pool, dense."""

    output_kind = "vector"

    def __init__(self, widths=(64, 128, 256), blocks=1, dense_units=256, dropout=0.0, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(widths)
        self.blocks = blocks
        self.dense_units = dense_units
        self.dropout = dropout
        self.output_dim = dense_units
        self.rescale = layers.Rescaling(1.0 / 255.0)
        self.stem = _conv_bn(self.widths[0], True, "stem")
        self.stages = []
        for s, width in enumerate(self.widths):
            stage = {"pool": layers.MaxPooling2D(2) if s > 0 else None, "proj": None, "blocks": []}
            if s > 0:
                stage["proj"] = _conv_bn(width, True, f"s{s}_proj")
            for b in range(blocks):
                stage["blocks"].append(
                    _conv_bn(width, True, f"s{s}b{b}_1") + _conv_bn(width, True, f"s{s}b{b}_2")
                )
            self.stages.append(stage)
        self.pool = layers.GlobalMaxPooling2D()
        self.dense = layers.Dense(dense_units, activation="relu")
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        shape = build_chain(self.stem, input_shape)
        for stage in self.stages:
            if stage["proj"] is not None:
                shape = build_chain([*stage["proj"], stage["pool"]], shape)
            for block in stage["blocks"]:
                build_chain(block, shape)
        build_chain([self.pool, self.dense], shape)

    def _run(self, seq, x, training):
        for layer in seq:
            x = layer(x, training=training)
        return x

    def call(self, x, training=None):
        x = self._run(self.stem, self.rescale(ops.cast(x, "float32")), training)
        for stage in self.stages:
            if stage["proj"] is not None:
                x = stage["pool"](self._run(stage["proj"], x, training))
            for block in stage["blocks"]:
                x = x + self._run(block, x, training)
        return self.drop(self.dense(self.pool(x)), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "widths": list(self.widths),
            "blocks": self.blocks,
            "dense_units": self.dense_units,
            "dropout": self.dropout,
        }
