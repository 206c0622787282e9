"""Tabular encoder: numbers (B, F), NaN for a missing cell → impute, standardise, MLP → (B, units[-1]).

The per-feature mean and standard deviation are learned from the training rows before training (``adapt``, missing
cells left out) and kept as non-trainable weights, so a saved ``.keras`` model standardises a served row exactly as
it did in training. A missing cell is replaced by its feature's training mean (0 after standardising) and flagged
in a missing-indicator input beside it, so the MLP can tell "average" from "unknown".
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

_MIN_STD = 1e-6  # a constant feature is divided by 1, not by ~0


@keras.saving.register_keras_serializable(package="omnifuse")
class TabularMLP(layers.Layer):
    """Impute + standardise (statistics from ``adapt``) → MLP. Input float32 (B, F) with NaN; output (B, units[-1]).

    Example::

        enc = TabularMLP(units=(32,))
        enc.adapt(train_rows)          # (N, F) float array, NaN = missing
        enc(keras.ops.zeros((2, F))).shape == (2, 32)
    """

    def __init__(self, units=(64, 64), dropout=0.1, missing_indicator=True, **kwargs):
        super().__init__(**kwargs)
        self.units = tuple(int(u) for u in units)
        if not self.units or min(self.units) <= 0:
            raise ValueError(f"Expected units to be a non-empty list of positive widths. Received: {units!r}")
        self.dropout = float(dropout)
        self.missing_indicator = bool(missing_indicator)
        self.output_dim = self.units[-1]
        self.hidden = [layers.Dense(u, activation="relu") for u in self.units]
        self.drops = [layers.Dropout(self.dropout) for _ in self.units]
        self.autocast = False  # raw numbers are standardised in float32, then cast to the compute dtype

    def build(self, input_shape):
        features = int(input_shape[-1])
        self.mean = self.add_weight(shape=(features,), initializer="zeros", trainable=False, name="mean")
        self.std = self.add_weight(shape=(features,), initializer="ones", trainable=False, name="std")
        shape = (input_shape[0], features * (2 if self.missing_indicator else 1))
        for dense in self.hidden:
            dense.build(shape)
            shape = dense.compute_output_shape(shape)

    def adapt(self, data) -> None:
        """Learn each feature's mean and standard deviation from ``data`` (N, F), skipping NaN cells.

        A feature with no value in ``data`` keeps mean 0 and std 1; a constant one gets std 1.
        """
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2:
            raise ValueError(f"Expected training rows of shape (N, features). Received: shape {data.shape}")
        if not self.built:
            self.build((None, data.shape[1]))
        if data.shape[1] != self.mean.shape[0]:
            raise ValueError(
                f"Expected rows with {self.mean.shape[0]} features (as built). Received: {data.shape[1]}"
            )
        seen = ~np.isnan(data)
        count = seen.sum(axis=0)
        filled = np.where(seen, data, 0.0)
        mean = filled.sum(axis=0) / np.maximum(count, 1)
        var = (np.where(seen, data - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
        std = np.sqrt(var)
        self.mean.assign(mean.astype("float32"))
        self.std.assign(np.where(std > _MIN_STD, std, 1.0).astype("float32"))

    def call(self, x, training=None):
        x = ops.cast(x, "float32")
        missing = ops.isnan(x)
        z = ops.cast((ops.where(missing, self.mean, x) - self.mean) / self.std, self.compute_dtype)
        if self.missing_indicator:
            z = ops.concatenate([z, ops.cast(missing, z.dtype)], axis=-1)
        for dense, drop in zip(self.hidden, self.drops):
            z = drop(dense(z), training=training)
        return z

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "units": list(self.units),
            "dropout": self.dropout,
            "missing_indicator": self.missing_indicator,
        }
