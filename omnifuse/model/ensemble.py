"""Ensembles (``model.members`` > 1): each member's config, and the layer that averages the members' outputs."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from omnifuse.config import Config
from omnifuse.errors import OmnifuseError
from omnifuse.inference import Inference
from omnifuse.names import member_index, member_outputs


def member_configs(cfg: Config) -> list[Config]:
    """The config of each ensemble member: ``cfg`` with that member's ``model.member_overrides`` applied (the
    overrides may name ``model.*`` keys only, and not the ensemble's own)."""
    m = cfg.model
    overrides = m.member_overrides
    if overrides and len(overrides) != m.members:
        raise OmnifuseError(
            f"Expected one list of overrides per member in model.member_overrides ({m.members}). "
            f"Received: {len(overrides)} lists"
        )
    out = []
    for i, items in enumerate(overrides or [()] * m.members):
        for item in items:
            key = item.split("=", 1)[0].strip()
            if not key.startswith("model.") or key.startswith("model.member"):
                raise OmnifuseError(
                    f"Expected model.member_overrides[{i}] to set model.* keys other than the ensemble's own "
                    f"(members share the data and the training). Received: {item!r}"
                )
        out.append(cfg.replace(list(items)) if items else cfg)
    return out


@keras.saving.register_keras_serializable(package="omnifuse")
class MemberMean(layers.Layer):
    """The ensemble's output: ``sum_k w_k * x_k`` over its members' outputs, with weights ``w`` on the simplex
    (equal at the start; :func:`omnifuse.training.fit_member_weights` fits them on held-out data). The weights are
    a non-trainable variable, so a saved model keeps them."""

    def build(self, input_shape):
        self.member_weights = self.add_weight(
            shape=(len(input_shape),),
            initializer=keras.initializers.Constant(1.0 / len(input_shape)),
            trainable=False,
            name="member_weights",
        )

    def call(self, inputs):
        stacked = ops.stack([ops.cast(x, self.compute_dtype) for x in inputs], axis=0)
        shape = (-1,) + (1,) * (len(stacked.shape) - 1)
        return ops.sum(
            stacked * ops.reshape(ops.cast(self.member_weights, self.compute_dtype), shape), axis=0
        )

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def fit_member_weights(model: keras.Model, stream, tasks: list[str]) -> list[float]:
    """Fit an ensemble's member weights (every :class:`MemberMean` of ``model``) on ``stream``, held-out ``(x, y)``
    batches: the weights on the simplex whose weighted mean of the members' probabilities has the least log-loss
    over every task's labelled samples (L-BFGS on the weights' softmax logits, from equal weights). Returns them."""
    from scipy.optimize import minimize
    from scipy.special import softmax

    members = member_outputs(model.output_names, tasks)
    probs: dict[str, list[np.ndarray]] = {name: [] for name in members}
    labels: dict[str, list[np.ndarray]] = {task: [] for task in tasks}
    run = Inference(model)
    for x, y in stream:
        out = run(x)
        for name in members:
            probs[name].append(np.asarray(out[name], np.float64))
        for task in tasks:
            labels[task].append(np.asarray(y[task]).reshape(-1))
    true_class = []  # per task, (members, labelled samples): each member's probability of the true class
    for task in tasks:
        found = np.concatenate(labels[task])
        keep = np.flatnonzero(found >= 0)
        names = sorted((n for n, t in members.items() if t == task), key=member_index)
        true_class.append(np.stack([np.concatenate(probs[n])[keep, found[keep]] for n in names]))
    count = max(1, sum(p.shape[1] for p in true_class))

    def log_loss(logits):
        w = softmax(logits)
        return -sum(np.log(np.maximum(w @ p, 1e-12)).sum() for p in true_class) / count

    weights = softmax(minimize(log_loss, np.zeros(true_class[0].shape[0]), method="L-BFGS-B").x)
    for layer in model.layers:
        if isinstance(layer, MemberMean):
            layer.member_weights.assign(weights.astype(np.float32))
    return [round(float(w), 6) for w in weights]
