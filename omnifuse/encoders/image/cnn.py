"""The classic conv-conv-pool CNN image encoder. Input: uint8 or float images (B, H, W, C)."""

from __future__ import annotations

import keras
from keras import layers, ops

from omnifuse.encoders.layers import BatchNormalization, apply_layers, build_chain


def _conv_bn(filters: int, batchnorm: bool, name: str) -> list[layers.Layer]:
    out = [layers.Conv2D(filters, 3, padding="same", use_bias=not batchnorm, name=f"{name}_conv")]
    if batchnorm:
        out.append(BatchNormalization(name=f"{name}_bn"))
    out.append(layers.Activation("relu", name=f"{name}_relu"))
    return out


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageCNN(layers.Layer):
    """The classic Keras CIFAR-10 CNN: (conv-conv-pool-dropout) x len(filters) -> dense. Output (B, dense_units)."""

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
        self.dense_bn = BatchNormalization() if batchnorm else None
        self.out_dropout = layers.Dropout(min(2 * dropout, 0.5))
        self.autocast = False  # apply_layers folds batch norms from the float32 variables

    def build(self, input_shape):
        build_chain([*self.stack, self.flatten, self.dense, self.dense_bn], input_shape)

    def call(self, x, training=None):
        x = apply_layers(self.stack, self.rescale(ops.cast(x, "float32")), training)
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
