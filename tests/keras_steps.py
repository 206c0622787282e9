"""Keras's fit and predict for the tests' tiny batches, without the graph building that dominates their cost.

``fit_once`` builds the compiled model's state before ``fit`` as omnifuse's training does, so TensorFlow traces the
training step once (Keras alone traces it twice: once creating the optimizer's variables, once without).
``outputs`` calls the model eagerly: for a handful of samples that is ten times cheaper than ``predict``, which
traces a graph first, and it computes the same function.
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from omnifuse import keras_compat
from omnifuse.inference import call_eagerly


def _spec(value) -> tf.TensorSpec:
    value = np.asarray(value)
    dtype = tf.string if value.dtype.kind in "OSU" else tf.as_dtype(value.dtype)
    return tf.TensorSpec((None, *value.shape[1:]), dtype)


def fit_once(model: keras.Model, x, y, **kwargs) -> keras.callbacks.History:
    """``model.fit(x, y, verbose=0, **kwargs)`` with the step traced once; ``kwargs`` default to one epoch."""
    spec = tf.nest.map_structure(_spec, (x, y))
    keras_compat.build_before_fit(model, spec)
    return model.fit(x, y, **{"epochs": 1, "verbose": 0, **kwargs})


def outputs(model: keras.Model, x):
    """``model``'s inference outputs for ``x`` (an array, or a dict or list of them) as NumPy (a dict for a dict
    of outputs), computed eagerly (``omnifuse.modelio.call_eagerly``, as the export's probes are)."""
    return call_eagerly(model, x)
