"""Optimizers whose update skips the variables a batch did not reach (``train.lazy_updates``, on by default).

A multimodal model trained on the union of data sets sees batches from one set at a time: a CIFAR-10 batch carries
no text, so the text branch's gradient is exactly zero in that step. Keras's Adam and momentum SGD still move such a
variable, by its stale momentum, in every step: with 7 image batches to each text batch, Adam's momentum (decay 0.9)
moved the text branch about 4.7 times as far between its own batches as in them, and its test accuracy after one
pass over IMDb was 73% in the joint model against 87.9% for the text model alone on the same schedule. The lazy
variants leave a variable and its optimizer state as they were in a step where the variable's gradient is exactly
zero, as TensorFlow's LazyAdam does for the rows of an embedding a batch does not use. For a variable that every
batch reaches they are the same optimizer. (The step counter, and with it Adam's bias correction, still counts every
step; weight decay, where an optimizer has it, still applies in every step.)
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops


def _reached(gradient):
    """Whether any entry of ``gradient`` is non-zero (a sparse gradient: any of its values)."""
    values = getattr(gradient, "values", gradient)  # tf.IndexedSlices of an embedding lookup
    if keras.backend.backend() == "tensorflow":  # TensorFlow's ops: without Keras's dtype promotion per call
        import tensorflow as tf

        return tf.reduce_any(tf.not_equal(values, tf.zeros((), values.dtype)))
    return ops.any(ops.not_equal(values, 0))


def _eager() -> bool:
    """Whether this step runs eagerly (values are known in Python) on TensorFlow."""
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return tf.executing_eagerly()


def _tensor(variable):
    """A Keras variable's value as a tensor (JAX's ops take no variables); TensorFlow's own variables as they are."""
    return variable.value if isinstance(variable, keras.Variable) else variable


def _direct(gradient, amsgrad: bool) -> bool:
    """Whether :class:`_AdamStep` updates a variable itself: in a step run eagerly on TensorFlow, in one process
    (a tf.distribute strategy's variables keep Keras's own update), with a dense gradient (Keras squares a sparse
    one's slices before it sums those of the same row), without AMSGrad. (In a graph Keras's ops cost only while
    it is traced.)"""
    if amsgrad or hasattr(gradient, "indices") or not _eager():
        return False
    import tensorflow as tf

    return not tf.distribute.has_strategy()


class _AdamStep:
    """Mixin: in a step run eagerly (``train.eager``), Keras's Adam update of one variable, the same arithmetic in
    the same order (the same bits), as TensorFlow ops called directly, with the step's scalars (beta_1 ** t, ...)
    made once per step instead of once per variable. Keras's ``update_step`` runs some 30 ops per variable through
    its dtype-promoting op layer, each costing its Python dispatch when run eagerly: a small multimodal model's 27
    variables cost about half the CPU time to update (LazyAdam: 0.11 -> 0.05 CPU s a step)."""

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._scalars = {}  # dtype -> this step's scalars, for its update_step calls
        try:
            super()._backend_update_step(grads, trainable_variables, learning_rate)
        finally:
            self._scalars = None

    def _step_scalars(self, dtype) -> tuple:
        """sqrt(1 - beta_2 ** t) and 1 - beta_1 ** t, as Keras's Adam computes them (t = iterations + 1)."""
        import tensorflow as tf

        cache = getattr(self, "_scalars", None)
        if cache is not None and dtype in cache:
            return cache[dtype]
        step = tf.cast(_tensor(self.iterations) + 1, dtype)
        beta_1_power = tf.pow(tf.cast(self.beta_1, dtype), step)
        beta_2_power = tf.pow(tf.cast(self.beta_2, dtype), step)
        found = (tf.sqrt(1 - beta_2_power), 1 - beta_1_power)
        if cache is not None:
            cache[dtype] = found
        return found

    def update_step(self, gradient, variable, learning_rate):
        if not _direct(gradient, self.amsgrad):
            return super().update_step(gradient, variable, learning_rate)
        import tensorflow as tf

        dtype = variable.dtype
        lr = tf.cast(learning_rate, dtype)
        gradient = tf.cast(gradient, dtype)
        root, bias = self._step_scalars(dtype)
        i = self._get_variable_index(variable)
        m, v = _tensor(self._momentums[i]), _tensor(self._velocities[i])
        alpha = lr * root / bias
        m.assign_add((gradient - m) * tf.constant(1 - self.beta_1, dtype))
        v.assign_add((tf.square(gradient) - v) * tf.constant(1 - self.beta_2, dtype))
        variable.assign_sub((m * alpha) / (tf.sqrt(v) + tf.constant(self.epsilon, dtype)))


class _RateScaled:
    """Mixin: each variable's learning rate times the multiplier of the first path prefix it starts with.

    ``lr_multipliers`` maps variable path prefixes (a layer's path, e.g. ``"image_branch/image_encoder/"``) to a
    factor: a pretrained encoder fine-tuned at a tenth of the head's rate gets ``0.1``. (Scaling the gradients
    instead would do nothing with Adam, whose steps do not depend on the gradient's scale.)
    """

    def __init__(self, *args, lr_multipliers=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = {str(k): float(v) for k, v in (lr_multipliers or {}).items()}

    def _multiplier(self, path: str) -> float:
        for prefix, factor in self.lr_multipliers.items():
            if path.startswith(prefix):
                return factor
        return 1.0

    def build(self, variables):
        super().build(variables)
        # update_step may receive the backend's variable (TensorFlow's, without Keras's path): look up by key
        self._factors = {self._var_key(v): self._multiplier(v.path) for v in variables}

    def update_step(self, gradient, variable, learning_rate):
        factor = getattr(self, "_factors", {}).get(self._var_key(variable), 1.0)
        if factor != 1.0:
            learning_rate = ops.cast(learning_rate, variable.dtype) * factor
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        return {**super().get_config(), "lr_multipliers": dict(self.lr_multipliers)}


class _Lazy:
    """Mixin: ``update_step`` of the optimizer it precedes, undone for a variable whose gradient is all zeros."""

    def _state(self, variable) -> list:
        raise NotImplementedError

    def update_step(self, gradient, variable, learning_rate):
        reached = _reached(gradient)
        if _eager():  # a step run as Python calls (train.eager): decide here, no copies to put back
            if bool(reached):
                super().update_step(gradient, variable, learning_rate)
            return
        held = [variable, *self._state(variable)]
        before = [
            ops.copy(_tensor(v)) for v in held
        ]  # a copy: a plain read may share the buffer the update writes
        super().update_step(gradient, variable, learning_rate)
        for v, old in zip(held, before):
            v.assign(ops.where(reached, _tensor(v), old))


@keras.saving.register_keras_serializable(package="omnifuse")
class LazyAdam(_Lazy, _RateScaled, _AdamStep, keras.optimizers.Adam):
    def _state(self, variable) -> list:
        i = self._get_variable_index(variable)
        state = [self._momentums[i], self._velocities[i]]
        return state + ([self._velocity_hats[i]] if self.amsgrad else [])


@keras.saving.register_keras_serializable(package="omnifuse")
class LazyAdamW(_Lazy, _RateScaled, _AdamStep, keras.optimizers.AdamW):
    _state = LazyAdam._state


@keras.saving.register_keras_serializable(package="omnifuse")
class LazySGD(_Lazy, _RateScaled, keras.optimizers.SGD):
    def _state(self, variable) -> list:
        return [self.momentums[self._get_variable_index(variable)]] if self.momentum != 0 else []


@keras.saving.register_keras_serializable(package="omnifuse")
class ScaledAdam(_RateScaled, _AdamStep, keras.optimizers.Adam):
    """Adam with per-layer learning-rate multipliers (``lr_multipliers``)."""


@keras.saving.register_keras_serializable(package="omnifuse")
class ScaledAdamW(_RateScaled, _AdamStep, keras.optimizers.AdamW):
    """AdamW with per-layer learning-rate multipliers (``lr_multipliers``)."""


@keras.saving.register_keras_serializable(package="omnifuse")
class ScaledSGD(_RateScaled, keras.optimizers.SGD):
    """SGD with per-layer learning-rate multipliers (``lr_multipliers``)."""


# Newton-Schulz iteration towards the nearest semi-orthogonal matrix: a quintic whose coefficients maximise the slope
# at zero (Jordan et al. 2024, "Muon"); it leaves the singular values spread around 1 rather than at 1, which trains
# as well and needs few iterations
NEWTON_SCHULZ = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix, steps: int = 3):
    """An approximately semi-orthogonal matrix with the singular vectors of ``matrix`` (2-D): U V^T of its SVD, the
    singular values pulled into about [0.5, 1.5] by ``steps`` Newton-Schulz iterations (float32)."""
    a, b, c = NEWTON_SCHULZ
    x = ops.cast(matrix, "float32")
    wide = x.shape[0] <= x.shape[1]
    if not wide:
        x = ops.transpose(x)
    x = x / (ops.sqrt(ops.sum(ops.square(x))) + 1e-7)  # the largest singular value at most 1
    for _ in range(steps):
        gram = ops.matmul(x, ops.transpose(x))
        x = a * x + ops.matmul(b * gram + c * ops.matmul(gram, gram), x)
    return x if wide else ops.transpose(x)


class _MuonStep:
    """Mixin before :class:`keras.optimizers.SGD`: every trainable convolution kernel (4-D) outside the
    ``muon_exclude`` path prefixes takes Muon's step, the rest SGD's.

    Muon (Jordan et al. 2024, the optimizer of airbench's fastest CIFAR-10 trainer) keeps a Nesterov momentum of the
    kernel's gradient, reads it as a matrix (fan-in x filters) and steps along its orthogonalised version
    (:func:`orthogonalize`), so every direction of the update moves by about the same amount. The kernel is first
    rescaled to a Frobenius norm of sqrt(filters) (each filter about unit length: with batch norm after the
    convolution its scale is free, and fixing it keeps the step's relative size at ``muon_scale * learning_rate``),
    which stands in for weight decay on these kernels. Keras 3's own ``Muon`` orthogonalises 2-D kernels only and
    steps convolution kernels with AdamW. ``muon_scale``: Muon's rate as a multiple of the schedule's (the SGD
    variables') rate; ``muon_momentum``: its momentum (the SGD variables keep ``momentum``). Pretrained encoders
    belong in ``muon_exclude``: the renormalisation would rescale their weights.
    """

    def __init__(self, *args, muon_scale=1.0, muon_momentum=0.6, muon_exclude=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.muon_scale = float(muon_scale)
        self.muon_momentum = float(muon_momentum)
        self.muon_exclude = tuple(str(p) for p in muon_exclude)

    def build(self, variables):
        if self.momentum == 0:
            raise ValueError(
                "Muon keeps a momentum per kernel: expected momentum > 0 for the SGD variables too"
            )
        super().build(variables)
        self._muon_keys = {
            self._var_key(v)
            for v in variables
            if len(v.shape) == 4 and v.trainable and not v.path.startswith(self.muon_exclude)
        }

    def _is_muon(self, variable) -> bool:
        return self._var_key(variable) in getattr(self, "_muon_keys", ())

    def _use_weight_decay(self, variable):
        return not self._is_muon(variable) and super()._use_weight_decay(variable)

    def update_step(self, gradient, variable, learning_rate):
        if not self._is_muon(variable):
            return super().update_step(gradient, variable, learning_rate)
        kh, kw, cin, cout = variable.shape
        m = self.momentums[self._get_variable_index(variable)]
        mu = ops.cast(self.muon_momentum, variable.dtype)
        gradient = ops.cast(gradient, variable.dtype)
        self.assign(m, ops.add(ops.multiply(m, mu), gradient))
        direction = ops.add(gradient, ops.multiply(m, mu))  # Nesterov
        update = ops.reshape(orthogonalize(ops.reshape(direction, (kh * kw * cin, cout))), variable.shape)
        w = _tensor(variable)
        w = w * ops.cast(np.sqrt(cout), w.dtype) / (ops.sqrt(ops.sum(ops.square(w))) + 1e-12)
        rate = ops.cast(learning_rate, variable.dtype) * ops.cast(self.muon_scale, variable.dtype)
        self.assign(variable, w - rate * ops.cast(update, w.dtype))

    def get_config(self):
        return {
            **super().get_config(),
            "muon_scale": self.muon_scale,
            "muon_momentum": self.muon_momentum,
            "muon_exclude": list(self.muon_exclude),
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class MuonSGD(_RateScaled, _MuonStep, keras.optimizers.SGD):
    """Muon for the convolution kernels, Nesterov SGD for the rest (``train.optimizer = "muon"``)."""


@keras.saving.register_keras_serializable(package="omnifuse")
class LazyMuonSGD(_Lazy, _RateScaled, _MuonStep, keras.optimizers.SGD):
    """:class:`MuonSGD` that leaves a variable no gradient reached in a step (and its momentum) as it was."""

    _state = LazySGD._state
