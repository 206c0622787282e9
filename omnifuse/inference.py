"""Running a Keras model for inference on a few batches or many: eagerly where tracing a graph would cost more than
it saves, through Keras's traced predict function where it pays.

Imports nothing from omnifuse, so every layer of the package (training, evaluation, ensembles, the predictor) can
use it."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # keras loads TensorFlow: not at import (the command line answers mistakes before that)
    import keras


def open_batch_specs(model: keras.Model) -> Any:
    """``model``'s inputs as TensorFlow specs with the batch dimension left open, in the structure of
    ``model.input``: for a function traced once for every batch size (serving's warm-up, exports)."""
    import keras
    import tensorflow as tf

    return keras.tree.map_structure(
        lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype, name=t.name), model.input
    )


def call_eagerly(model: keras.Model, x) -> Any:
    """``model``'s inference outputs for ``x`` (an array, or a dict or list of them; strings as string tensors) as
    NumPy, computed eagerly: for a handful of samples ``predict_on_batch`` would first trace a graph of the whole
    model, which for a pretrained encoder costs seconds."""
    import keras
    import tensorflow as tf

    def tensor(value):  # every array a tensor (Keras refuses a mix of tensors and arrays)
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":  # texts: str or UTF-8 bytes
            flat = [v if isinstance(v, bytes) else str(v).encode() for v in value.ravel()]
            return tf.constant(np.array(flat, object).reshape(value.shape), tf.string)
        return tf.constant(value) if isinstance(value, np.ndarray) else value

    outputs = model(tf.nest.map_structure(tensor, x), training=False)
    return tf.nest.map_structure(keras.ops.convert_to_numpy, outputs)


EAGER_BATCHES = 8  # batches an Inference computes eagerly before it traces Keras's predict function


class Inference:
    """``model``'s inference outputs batch by batch, as NumPy: the first ``eager`` batches computed eagerly
    (:func:`call_eagerly`), the later ones through Keras's traced predict function (``predict_on_batch``).

    Tracing a model into a graph costs seconds (more with a pretrained encoder) that a few batches never earn back:
    a validation split, a test set of a few hundred samples, a one-off command-line prediction. A long prediction
    (a full test set, a server's stream of requests) pays the trace once, after its first ``eager`` batches, and
    runs the graph from then on. Keep one per model for a whole job, so the count carries over.

    >>> run = Inference(model)
    >>> outputs = [run(x) for x in batches]
    """

    def __init__(self, model: keras.Model, eager: int = EAGER_BATCHES):
        self.model, self.eager, self.calls = model, eager, 0

    def __call__(self, x) -> Any:
        self.calls += 1
        if self.calls <= self.eager:
            return call_eagerly(self.model, x)
        return self.model.predict_on_batch(x)

    def trace_now(self, every_batch_size: bool = False) -> None:
        """Run every later batch through the traced predict function (a server, which answers many).

        ``every_batch_size``: trace that function now, once for every batch size (the inputs' first dimension left
        open, :func:`open_batch_specs`); else TensorFlow traces it for the first two batch sizes it sees."""
        self.calls = max(self.calls, self.eager)
        if not every_batch_size:
            return
        self.model.make_predict_function()
        trace = getattr(self.model.predict_function, "get_concrete_function", None)
        if trace is not None:  # None: a model run eagerly (run_eagerly), which traces nothing
            trace([(open_batch_specs(self.model),)])  # as predict_on_batch calls it

    def over(
        self, feed: dict[str, np.ndarray], batch_size: int, advance: Callable[[], Any] | None = None
    ) -> Any:
        """The outputs for ``feed`` (input name -> arrays of equal length), run in batches of ``batch_size``
        samples, in sample order (see :meth:`many`)."""
        n = len(next(iter(feed.values())))
        batches = ({k: v[i : i + batch_size] for k, v in feed.items()} for i in range(0, n, batch_size))
        return self.many(batches, advance)

    def many(self, batches: Iterable, advance: Callable[[], Any] | None = None) -> Any:
        """The outputs for every batch of ``batches``, concatenated along the samples (a structure of arrays like
        one batch's); ``advance``, if given, is called after each batch (a progress bar's)."""
        import tensorflow as tf

        parts = []
        for x in batches:
            parts.append(self(x))
            if advance is not None:
                advance()
        return tf.nest.map_structure(lambda *p: np.concatenate([np.asarray(a) for a in p]), *parts)
