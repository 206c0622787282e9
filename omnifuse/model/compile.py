"""Compiling a built model: optimizer (with its learning-rate schedule), masked losses and accuracy per output."""

from __future__ import annotations

from collections.abc import Iterable

import keras

from omnifuse.config import Config
from omnifuse.errors import OmnifuseError
from omnifuse.keras_compat import all_layers
from omnifuse.model.heads import MaskedAccuracy, MaskedSparseCrossentropy
from omnifuse.names import mask_name, member_outputs, unimodal_outputs
from omnifuse.optimizers import (
    LazyAdam,
    LazyAdamW,
    LazyMuonSGD,
    LazySGD,
    MuonSGD,
    ScaledAdam,
    ScaledAdamW,
    ScaledSGD,
)
from omnifuse.registry import lookup


def _batches_can_miss_variables(model: keras.Model, tasks: list[str]) -> bool:
    """Whether a training batch can leave some variable without gradient: a batch from one of several data sets
    lacks the other sets' modalities and tasks. With one modality and one task every batch reaches every variable,
    and the lazy optimizers would only copy each variable and its state in every step for nothing (for a
    100,000-word embedding of 256 dimensions, 25.6 M weights three times over)."""
    names = {x.name for x in model.inputs}
    modalities = [name for name in names if mask_name(name) in names]
    return len(tasks) > 1 or len(modalities) > 1


@keras.saving.register_keras_serializable(package="omnifuse")
class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from ``start * peak`` to ``peak`` over ``warmup_steps``, then linear decay to ``end * peak``
    at ``total_steps`` (and held there after it): airbench's schedule."""

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, start: float, end: float):
        self.peak, self.total_steps, self.warmup_steps = float(peak), int(total_steps), int(warmup_steps)
        self.start, self.end = float(start), float(end)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        warm = float(max(1, self.warmup_steps))
        rest = float(max(1, self.total_steps - self.warmup_steps))
        up = self.start + (1.0 - self.start) * step / warm
        down = 1.0 - (1.0 - self.end) * keras.ops.minimum((step - warm) / rest, 1.0)
        return self.peak * keras.ops.where(step < warm, up, down)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "start": self.start,
            "end": self.end,
        }


def learning_rate_schedule(t, total_steps: int):
    """``train.schedule`` over ``total_steps``: the constant rate, or a Keras schedule (cosine decay; one-cycle as
    a warm-up from a tenth of the rate over ``train.warmup_fraction`` of the steps, then cosine decay; triangle, see
    :class:`Triangle`)."""
    if t.schedule == "constant":
        return t.learning_rate
    if t.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(t.learning_rate, decay_steps=total_steps)
    if t.schedule == "onecycle":
        warm = max(1, int(total_steps * t.warmup_fraction))
        return keras.optimizers.schedules.CosineDecay(
            t.learning_rate / 10,
            decay_steps=max(1, total_steps - warm),
            warmup_target=t.learning_rate,
            warmup_steps=warm,
        )
    if t.schedule == "triangle":
        warm = max(1, int(total_steps * t.warmup_fraction))
        return Triangle(t.learning_rate, total_steps, warm, t.triangle_start, t.triangle_end)
    raise OmnifuseError(f"Unknown train.schedule {t.schedule!r}. Valid: constant, cosine, onecycle, triangle")


def make_optimizer(
    t, lr, lazy: bool, multipliers: dict[str, float] | None = None, pretrained: tuple[str, ...] = ()
) -> keras.optimizers.Optimizer:
    """``train.optimizer`` at learning rate (or schedule) ``lr``; ``lazy``: the variants that leave a variable
    without gradient in a batch (and its optimizer state) untouched (see omnifuse/optimizers.py); ``multipliers``:
    variable path prefix -> learning-rate factor (a fine-tuned pretrained encoder's slower rate); ``pretrained``:
    the path prefixes of pretrained encoders' variables, which Muon leaves to SGD (its renormalisation would rescale
    their weights; a model's multipliers are a subset of them)."""
    if t.optimizer == "muon" and t.learning_rate <= 0:
        raise OmnifuseError(
            "train.optimizer = 'muon' scales the kernels' rate (train.muon_learning_rate) with the schedule of "
            f"train.learning_rate: expected train.learning_rate > 0. Received: {t.learning_rate!r}"
        )
    if lazy:
        adam, adamw, sgd, muon = LazyAdam, LazyAdamW, LazySGD, LazyMuonSGD
    elif multipliers:
        adam, adamw, sgd, muon = ScaledAdam, ScaledAdamW, ScaledSGD, MuonSGD
    else:
        adam, adamw, sgd, muon = keras.optimizers.Adam, keras.optimizers.AdamW, keras.optimizers.SGD, MuonSGD
    extra = {"lr_multipliers": multipliers} if multipliers else {}
    optimizers = {
        "adam": lambda: adam(lr, **extra),
        "adamw": lambda: adamw(lr, weight_decay=t.weight_decay, **extra),
        "sgd": lambda: sgd(
            lr, momentum=t.momentum, nesterov=True, weight_decay=t.weight_decay or None, **extra
        ),
        "muon": lambda: muon(
            lr,
            momentum=t.momentum,
            nesterov=True,
            weight_decay=t.weight_decay or None,
            muon_scale=t.muon_learning_rate / t.learning_rate,
            muon_momentum=t.muon_momentum,
            muon_exclude=pretrained,
            **extra,
        ),
    }
    return lookup(optimizers, t.optimizer, "optimizer")()


def pretrained_multipliers(model: keras.Model, scale: float) -> dict[str, float]:
    """Path prefix -> ``scale`` for every pretrained encoder of ``model`` that trains (fine-tuned or last_k, or
    started from ``model.<kind>.init``). The prefix ends at the encoder's name in its variables' paths: one built
    before its branch was called (to load a checkpoint into) has paths without the branch's name."""
    if scale == 1.0:
        return {}
    return dict.fromkeys(pretrained_prefixes(model), float(scale))


def pretrained_prefixes(model: keras.Model) -> tuple[str, ...]:
    """The variable path prefixes of every pretrained encoder of ``model`` that trains (see
    :func:`pretrained_multipliers`)."""
    out = {}
    for layer in all_layers(model):
        encoder = getattr(layer, "encoder", None)
        if not getattr(encoder, "pretrained", False):
            continue
        for variable in encoder.trainable_weights:
            before, name, _ = variable.path.partition(f"{encoder.name}/")
            out[before + name if name else variable.path] = None
    return tuple(out)


EAGER_STEPS = 12  # train.eager = "auto": a training of at most this many steps in all runs them eagerly


def runs_eagerly(t, steps_per_epoch: int, initial_epoch: int = 0) -> bool:
    """Whether ``train.eager`` has the training steps run as Python calls instead of a traced graph: "auto" for a
    training of at most ``EAGER_STEPS`` steps left (from ``initial_epoch`` on), where tracing the step costs more
    than running it eagerly; never for XLA or a distributed training (a strategy replicates a traced step)."""
    if t.jit_compile or t.distribution != "none" or t.eager == "never":
        return False
    return t.eager == "always" or (t.epochs - initial_epoch) * max(1, steps_per_epoch) <= EAGER_STEPS


def compile_model(
    model: keras.Model,
    cfg: Config,
    tasks: Iterable[str],
    steps_per_epoch: int,
    class_weights: dict[str, list[float]] | None = None,
) -> None:
    """Attach optimizer (with the configured schedule), masked losses and metrics."""
    tasks = list(tasks)
    t = cfg.train
    lazy = t.lazy_updates and _batches_can_miss_variables(model, tasks)
    schedule = learning_rate_schedule(t, max(1, t.epochs * steps_per_epoch))
    optimizer = make_optimizer(
        t, schedule, lazy, pretrained_multipliers(model, t.pretrained_lr_scale), pretrained_prefixes(model)
    )
    members = member_outputs(model.output_names, tasks)
    # an ensemble trains each member on its own loss; its task outputs (the members' mean) only report accuracy
    trained = members or {task: task for task in tasks}
    losses = {
        name: MaskedSparseCrossentropy(t.label_smoothing, (class_weights or {}).get(task))
        for name, task in trained.items()
    }
    weights = dict.fromkeys(losses, 1.0)
    for name, (task, _) in unimodal_outputs(model.output_names, tasks).items():
        losses[name] = MaskedSparseCrossentropy(t.label_smoothing, (class_weights or {}).get(task))
        weights[name] = float(t.unimodal_loss)
    if t.jit_compile:
        blocking = sorted({type(layer).__name__ for layer in all_layers(model) if not layer.supports_jit})
        if blocking:
            raise OmnifuseError(
                f"train.jit_compile = true, but XLA cannot compile these layers of the model: {', '.join(blocking)}. "
                "Set train.jit_compile = false (Keras would otherwise drop it silently)."
            )
    model.compile(
        optimizer=optimizer,
        loss=losses,
        loss_weights=weights,
        metrics={
            name: [MaskedAccuracy()] if name in tasks or name in members else None
            for name in model.output_names
        },
        jit_compile=t.jit_compile,
    )  # (train.eager is set on the model by the training, not saved with it: a loaded model predicts traced)
