"""A small batch-norm ResNet image encoder. Input: uint8 or float images (B, H, W, C)."""

from __future__ import annotations

import keras
from keras import layers, ops

from omnifuse.encoders.image.cnn import _conv_bn
from omnifuse.encoders.layers import apply_layers, build_chain


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageResNet(layers.Layer):
    """A small pre-activation-free BN ResNet: stem conv, stages of residual blocks, global pool, dense."""

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
        self.autocast = False  # apply_layers folds batch norms from the float32 variables

    def build(self, input_shape):
        shape = build_chain(self.stem, input_shape)
        for stage in self.stages:
            if stage["proj"] is not None:
                shape = build_chain([*stage["proj"], stage["pool"]], shape)
            for block in stage["blocks"]:
                build_chain(block, shape)
        build_chain([self.pool, self.dense], shape)

    def call(self, x, training=None):
        x = apply_layers(self.stem, self.rescale(ops.cast(x, "float32")), training)
        for stage in self.stages:
            if stage["proj"] is not None:
                x = stage["pool"](apply_layers(stage["proj"], x, training))
            for block in stage["blocks"]:
                x = x + apply_layers(block, x, training)
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
