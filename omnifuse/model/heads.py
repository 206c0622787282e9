"""Task heads and what trains them: the head layers, the masked loss and accuracy, balanced class weights.

A task's label -1 means the sample has no label for that task: the loss and the accuracy leave it out.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="omnifuse")
class MaskedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy that counts only samples carrying a label (label -1 = this sample has no label for the task).

    The mean is over labelled samples, so a task's loss has the same scale whatever share of the batch it labels.
    ``class_weights`` (one per class, optional) multiply each sample's loss by its true class's weight.
    """

    def __init__(self, label_smoothing=0.0, class_weights=None, name="masked_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]

    def call(self, y_true, y_pred):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        valid = ops.cast(y_true >= 0, y_pred.dtype)
        onehot = ops.one_hot(ops.maximum(y_true, 0), ops.shape(y_pred)[-1], dtype=y_pred.dtype)
        loss = keras.losses.categorical_crossentropy(onehot, y_pred, label_smoothing=self.label_smoothing)
        if self.class_weights is not None:
            weights = ops.convert_to_tensor(self.class_weights, dtype=y_pred.dtype)
            loss = loss * ops.take(weights, ops.maximum(y_true, 0))
        scale = ops.cast(ops.shape(y_true)[0], y_pred.dtype) / ops.maximum(ops.sum(valid), 1.0)
        return loss * valid * scale

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
        }


def balanced_class_weights(labels: np.ndarray, num_classes: int) -> list[float]:
    """``n / (k * n_c)`` per class ``c`` over the labelled samples (label >= 0), as scikit-learn's "balanced":
    every class then weighs the same in the loss; a class absent from ``labels`` gets weight 1.

    Example: ``balanced_class_weights(np.array([0, 0, 0, 1]), 2) == [2/3, 2.0]``.
    """
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    counts = np.bincount(labels, minlength=num_classes).astype(float)
    return [len(labels) / (num_classes * c) if c else 1.0 for c in counts]


@keras.saving.register_keras_serializable(package="omnifuse")
class MaskedAccuracy(keras.metrics.Metric):
    """Accuracy over the samples that carry a label for this task."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        valid = ops.cast(y_true >= 0, "float32")
        hit = ops.cast(ops.equal(ops.cast(ops.argmax(y_pred, axis=-1), "int32"), y_true), "float32")
        self.correct.assign_add(ops.sum(hit * valid))
        self.count.assign_add(ops.sum(valid))

    def result(self):
        return self.correct / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.correct.assign(0.0)
        self.count.assign(0.0)


@keras.saving.register_keras_serializable(package="omnifuse")
class ScaledSoftmax(layers.Layer):
    """``softmax(scale * logits)``: the output of a head whose logits are scaled (``model.head_scale``)."""

    def __init__(self, scale=1.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = float(scale)

    def call(self, logits):
        return ops.softmax(logits * self.scale, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="omnifuse")
class TemperatureScale(layers.Layer):
    """``softmax(log(probs) / temperature)``: a head's probabilities calibrated by the temperature fitted on the
    validation split (:mod:`omnifuse.evaluation.calibration`); exported models end with it."""

    def __init__(self, temperature=1.0, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.temperature = float(temperature)

    def call(self, probs):
        logits = ops.log(ops.maximum(ops.cast(probs, "float32"), 1e-12)) / self.temperature
        return ops.softmax(logits, axis=-1)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}


def with_temperatures(model: keras.Model, temperatures: dict[str, float]) -> keras.Model:
    """``model`` (taking and returning dicts) with each task output in ``temperatures`` temperature-scaled; the
    other outputs (modality weights) as they are. The same inputs, by name, dtype and shape."""
    inputs = {t.name: keras.Input(shape=t.shape[1:], dtype=t.dtype, name=t.name) for t in model.inputs}
    out = model(inputs)
    scaled = {
        k: TemperatureScale(temperatures[k], name=k)(v) if k in temperatures else v for k, v in out.items()
    }
    return keras.Model(inputs, scaled, name=f"{model.name}_calibrated")


def head(model_cfg, classes: int, name: str):
    """The output layer of one task: a float32 dense layer and softmax named ``name`` (the task), or with
    ``model.head_scale`` != 1 a dense layer ``{name}_logits`` followed by :class:`ScaledSoftmax` named ``name``."""
    if model_cfg.head_scale == 1.0:
        return layers.Dense(classes, "softmax", use_bias=model_cfg.head_bias, name=name, dtype="float32")
    dense = layers.Dense(classes, use_bias=model_cfg.head_bias, name=f"{name}_logits", dtype="float32")
    scaled = ScaledSoftmax(model_cfg.head_scale, name=name, dtype="float32")
    return lambda h: scaled(dense(h))
