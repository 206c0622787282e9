"""Every use omnifuse makes of Keras's (or a TensorFlow strategy's) private attributes, in one place, each with the
behaviour it works around. A Keras upgrade that changes one of them breaks here, with a clear error, and nowhere else.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from omnifuse.errors import OmnifuseError


def all_layers(model) -> Iterator[Any]:
    """Every layer inside ``model``, nested ones included (a ModalityBranch's encoder and its sub-layers).

    ``model.layers`` lists only the top level, and Keras 3 has no public recursive walk; ``_flatten_layers`` is
    the one Keras itself uses to decide whether a model ``supports_jit`` (``keras/src/trainers/trainer.py``,
    ``model_supports_jit``), where it turns ``jit_compile`` off silently when any layer cannot be compiled by XLA.
    """
    flatten = getattr(model, "_flatten_layers", None)
    if flatten is None:
        import keras

        raise OmnifuseError(
            "Expected a Keras 3 version whose layers have _flatten_layers (omnifuse walks nested layers with it: "
            "learning-rate multipliers, the train.jit_compile check, ONNX export). Received: keras "
            f"{keras.__version__}"
        )
    return iter(flatten())


def build_before_fit(model, element_spec) -> None:
    """Build a compiled model's state (optimizer slots, loss and metric trackers) from the shapes and dtypes of
    ``element_spec`` before ``fit``, so the training step is traced once instead of twice.

    Without a distribution strategy Keras's TensorFlow trainer defers that build to the first trace of the
    training step ("defer building to when the train/test/predict function gets traced. This maximizes backwards
    compatibility", ``keras/src/backend/tensorflow/trainer.py``, ``_maybe_symbolic_build``). TensorFlow then sees
    variables created inside the ``tf.function`` on its first call and traces it a second time without them,
    which doubled the training step's graph building (measured: 2 traces of ``train_step`` per ``fit``). A model
    already built (a resumed run's) is left as it is. Only the TensorFlow trainer defers: the JAX and PyTorch
    trainers (which have no ``_distribute_strategy``) build in ``fit`` themselves, and are left to it, as is a
    Keras whose trainer no longer has these attributes (it then builds in the trace, only slower).
    """
    if getattr(model, "_distribute_strategy", "absent") is None and hasattr(model, "_symbolic_build"):
        if not _build_functional(model, element_spec):
            model._symbolic_build(data_batch=element_spec)
        watch_only_trainable(model)


def watch_only_trainable(model) -> None:
    """Have ``model``'s training step differentiate through the layers it trains only, not through frozen ones.

    Keras's TensorFlow training step records the forward pass on a ``tf.GradientTape`` that watches every
    TensorFlow variable read whose own ``trainable`` flag is set, and a frozen layer's variables keep theirs:
    ``layer.trainable = False`` (or a weight made trainable in a layer frozen before it was built) changes only
    Keras's flag, and ``tf.Variable.trainable`` cannot be changed after it is made. So the tape recorded a frozen
    pretrained backbone too, and the gradient went back through every frozen block to be thrown away: traced, a
    graph to build for nothing (MiniLM with its last block trained: 7.1 -> 4.7 CPU s for the step's first call);
    eager, the work itself (0.83 -> 0.54 CPU s a step). During each step (each trace, or each eager step) the
    TensorFlow flag (``_trainable``) of every variable of the model that is not one of its trainable weights is
    cleared, and set back after it; the weights that train, and their gradients, are the same.
    """
    if getattr(model, "_omnifuse_watch_only_trainable", False):
        return
    step = model.train_step

    def train_step(data):
        trained = {id(v) for v in model.trainable_variables}
        unwatched = []
        for variable in model.variables:
            value = getattr(variable, "_value", None)  # the tf.Variable of a Keras variable
            if id(variable) not in trained and getattr(value, "_trainable", None) is True:
                value._trainable = False
                unwatched.append(value)
        try:
            return step(data)
        finally:
            for value in unwatched:
                value._trainable = True

    model.train_step = train_step
    model._omnifuse_watch_only_trainable = True


def _build_functional(model, element_spec) -> bool:
    """``model._symbolic_build(data_batch=element_spec)`` without its trace of the model's forward pass, for a
    built functional model; False (nothing done) for any other model.

    Keras traces the whole model in a scratch graph only to learn the shapes and dtypes of its outputs
    (``backend.compute_output_spec(self, x)``), which a functional model already holds as its output
    KerasTensors: the loss and the metrics are built from those instead. Everything else is as in
    ``keras/src/trainers/trainer.py``, ``Trainer._symbolic_build``.
    """
    import keras
    from keras.src import backend, tree
    from keras.src.trainers.data_adapters import data_adapter_utils

    outputs = getattr(model, "_outputs_struct", None)
    needed = ("_compile_metrics", "_compile_loss", "compute_metrics", "_compute_loss", "_post_build")
    if outputs is None or not all(hasattr(model, name) for name in needed):
        return False
    # a layer not built yet must be one whose build makes no weights (Keras's own: Rescaling, StringLookup), or
    # its weights would be made in the traced step, after the optimizer was built without them
    if any(
        not layer.built and type(layer).build is not keras.layers.Layer.build
        for layer in model._flatten_layers()
    ):
        return False

    def symbolic(v):
        return None if v is None else backend.KerasTensor(v.shape, backend.standardize_dtype(v.dtype))

    x, y, sample_weight = data_adapter_utils.unpack_x_y_sample_weight(
        tree.map_structure(symbolic, element_spec)
    )
    y_pred = tree.map_structure(symbolic, outputs)
    if model._compile_metrics is not None and not model._compile_metrics.built:
        backend.compute_output_spec(model.compute_metrics, x, y, y_pred, sample_weight=sample_weight)
    if model._compile_loss is not None and not model._compile_loss.built:
        backend.compute_output_spec(
            model._compute_loss, x, y, y_pred, sample_weight=sample_weight, training=False
        )
    if model.optimizer is not None and not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    model._post_build()
    return True


def build_under_strategy(model, strategy, element_spec) -> None:
    """Build a compiled model's state (optimizer slots, metric variables) under ``strategy`` from the shapes and
    dtypes of ``element_spec``, and have Keras take the strategy from the enclosing scope from then on.

    Keras's TensorFlow trainer builds that state on the first ``fit`` step from a batch it averages over the replicas
    (``strategy.reduce("MEAN", ...)``), which fails for string inputs such as a text modality (the reduction casts
    to float: "Distributed training with tensorflow doesn't work with Keras 3.7 and above",
    keras-team/keras#21172; tensorflow/tensorflow#80951). ``_symbolic_build(data_batch=...)`` builds it from a
    spec instead, and with ``_distribute_strategy = None`` Keras falls back to ``tf.distribute.get_strategy()``
    (the enclosing ``strategy.scope()``) and skips its own build step; ``fit`` must then run inside that scope.
    """
    if not (hasattr(model, "_symbolic_build") and hasattr(model, "_distribute_strategy")):
        raise OmnifuseError(
            "This Keras version cannot be used with train.distribution (its trainer changed: no "
            '_symbolic_build / _distribute_strategy); use train.distribution = "none".'
        )
    with strategy.scope():
        model._symbolic_build(data_batch=element_spec)
        model._distribute_strategy = None


def reduce_scalars_without_axis(strategy) -> None:
    """Let ``strategy.reduce(op, scalar, axis=0)`` reduce the scalar across replicas (``strategy`` is patched).

    Keras 3 averages every step's logs (scalars) over the workers with ``reduce("MEAN", value, axis=0)``, which
    MultiWorkerMirroredStrategy rejects for a scalar ("Invalid reduction dimension 0 for input with 0 dimensions",
    tensorflow/tensorflow#72388). With no axis the result is the same mean over the replicas.
    """
    reduce = strategy.reduce

    def reduce_scalars(reduce_op, value, axis=None):
        local = strategy.experimental_local_results(value)
        if axis is not None and all(
            getattr(v, "shape", None) is not None and v.shape.rank == 0 for v in local
        ):
            axis = None
        return reduce(reduce_op, value, axis=axis)

    strategy.reduce = reduce_scalars


_SHARING = ("shared_objects/id_to_obj_map", "shared_objects/id_to_config_map")


@contextlib.contextmanager
def outside_object_sharing() -> Iterator[None]:
    """Build layers as if no model were being loaded: Keras' object-sharing maps (``ObjectSharingScope``, active
    while ``load_model`` deserializes) are set aside and restored after.

    ``layers.Bidirectional(rnn)`` recreates its forward and backward layers by serializing ``rnn`` and
    deserializing the configs. Inside a loading scope each serialized object is recorded by its ``id()``; when the
    new ``rnn`` happens to sit at the address of an object already recorded (freed since: CPython reuses ids), its
    config is marked shared and deserializing it returns that stale object, so the backward layer can come back as
    the forward one ("Forward layer and backward layer should have different `go_backwards` value"): a load that
    fails now and then, seen with ensembles of bidirectional GRUs. Keras keeps these maps in ``global_state``
    (``keras/src/saving/serialization_lib.py``, ``ObjectSharingScope``)."""
    from keras.src.backend.common import global_state

    saved = {key: global_state.get_global_attribute(key) for key in _SHARING}
    for key in _SHARING:
        global_state.set_global_attribute(key, None)
    try:
        yield
    finally:
        for key, value in saved.items():
            global_state.set_global_attribute(key, value)


def cache_saving_skipsets() -> None:
    """Have Keras's saving remember, per kind of object, the attribute names it skips while walking a model.

    To save or load a model, Keras walks every layer's attributes, skipping those every ``Layer`` (or ``Metric``,
    ``Optimizer``, ...) has; ``get_attr_skipset`` finds them by building a blank object of that kind and listing
    its attributes, and is meant to do so once per kind. In Keras 3.15 it stores the set under
    ``saving_attr_skipset_<kind>`` but looks it up under ``saving_attr_skiplist_<kind>``
    (``keras/src/saving/saving_lib.py``), so it builds a blank layer for every layer of every model saved or
    loaded: 3% of the test suite's CPU time, and a fifth of a small model's save. The set depends only on the
    kind, so it is cached here; a Keras without that function is left as it is.
    """
    import functools

    from keras.src.saving import saving_lib

    find = getattr(saving_lib, "get_attr_skipset", None)
    if find is None or hasattr(find, "cache_info"):
        return
    saving_lib.get_attr_skipset = functools.cache(find)
