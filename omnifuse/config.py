"""Configuration: frozen dataclasses, TOML files, dotted overrides.

A config is data. Every section is a frozen dataclass whose defaults sit here or beside the code that uses them;
a TOML file or a ``--set train.epochs=3`` override may only name keys that exist, and a value of the wrong type is
an error that names the key, what was expected and what was received. A key whose valid values are a fixed set is
typed ``typing.Literal`` and checked when the config is built (from TOML, overrides, or ``Config(...)`` in Python),
before any model is: the error names the key, the value received and the valid values.

The encoders' names and their option sections (``model.image.cnn``, ``model.text.rnn`` ...) come from each kind's
table (``omnifuse.encoders.<kind>.CONFIGS``), the data set names from ``omnifuse.data.catalog``: adding an encoder or
a data set does not touch this file. Reading and checking a config imports neither Keras nor TensorFlow.

>>> cfg = load_config("cifar10-cnn", ["train.epochs=3"])
>>> cfg.train.epochs
3
"""

from __future__ import annotations

import dataclasses
import sys
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from omnifuse.data import catalog
from omnifuse.data.splits import VAL_FRACTION
from omnifuse.encoders import sections
from omnifuse.encoders.sections import Joined
from omnifuse.errors import OmnifuseError, did_you_mean, near_key
from omnifuse.pretrain_config import PretrainConfig
from omnifuse.rundir import CONFIG
from omnifuse.tracking_config import TrackConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


DataSetName = typing.Literal[tuple(catalog.NAMES)]
# a CSV column's kind (omnifuse.data.table.KINDS)
ColumnKind = typing.Literal["image", "text", "audio", "number", "category", "ignore", "group"]
# omnifuse.registry.FUSIONS
Fusion = typing.Literal["concat", "attention", "gated", "tensor", "cross_attention", "late"]


@dataclass(frozen=True)
class DataConfig:
    sets: tuple[DataSetName, ...] = ("cifar10",)  # data sets trained together in one model
    data_dir: str = ""  # searched before $OMNIFUSE_DATA and the user cache
    epoch_fraction: tuple[float, ...] = ()  # per set: share of a pass seen per epoch (default 1.0 each)
    val_fraction: float = VAL_FRACTION  # held out of train (stratified, seeded) where a set has no val split
    # > 0: training batches of a set with texts hold texts of similar length (this many buckets, cut at quantiles of
    # the training texts' word counts), so a recurrent text encoder runs as many steps as the batch's longest text
    # instead of model.text.sequence_length; 0 = batches of random texts
    length_buckets: int = 0
    # hold out whole groups where a set names them (IMDb: films), as its test set does
    group_holdout: bool = True
    limit_train: int = 0  # per data set; 0 = all (quick experiments, tests)
    limit_test: int = 0  # per data set; 0 = all
    split: str = "official"  # fsdd / av_digits: "official" or "loso:<speaker>" (leave one speaker out)
    folds: int = 5  # data sets without an official split (brain_mri): stratified k-fold cross-validation ...
    fold: int = 0  # ... and the fold held out as test in this run
    image_size: int = 128  # side in pixels that folder data sets of mixed sizes are resized to (brain_mri)
    sample_rate: int = 8000  # audio: every waveform is resampled to this rate (Hz) ...
    num_samples: int = 8000  # ... and centre-padded or cropped to this many samples
    degrade: typing.Literal["noise+occlude", "noise", "occlude", "none"] = "noise+occlude"  # av_digits images
    noise_std: float = 150.0  # av_digits: Gaussian noise on the images, 0-255 pixel units
    # av_digits: Gaussian noise on the recordings, std / the recording's RMS (1 = 0 dB SNR)
    audio_noise: float = 0.0
    # table: the user's CSV (image/audio paths relative to its folder, texts, numbers, categories) ...
    csv: str = ""
    folder: str = ""  # ... or a folder root/<class>/<stem>.{png,txt,wav,...}
    label: str = ""  # table: the label column (a folder's task is named "class" unless this is set)
    # table: column -> image|text|audio|number|category|ignore|group (rows sharing a group stay in one split)
    kinds: dict[str, ColumnKind] = field(default_factory=dict)
    # table: skip (and count) rows with a missing/undecodable file or an empty label
    skip_bad_rows: bool = False
    # table: let CSV paths and folder files (after symlinks) point outside the CSV's folder or the data folder
    allow_outside_paths: bool = False
    # table: share held out as test (stratified, seeded) when there is no split column
    test_fraction: float = 0.2
    # keep only these modalities (e.g. ["audio"]: an audio-only model); () = all
    modalities: tuple[str, ...] = ()
    # unlabelled samples (docs/unlabelled.md): "" none; "unsup" the set's own (IMDb's train/unsup; the samples that
    # labels_per_class / labeled_where unlabel); or a CSV / .txt folder. Copies of test samples are dropped
    unlabeled: str = ""
    # > 0: keep this many labels per class (seeded choice); the rest unlabelled or left out
    labels_per_class: int = 0
    labeled_where: str = ""  # "<extra>=<v>[,<v>]": keep labels only there (fsdd: "speaker=jackson"), as above

    def __post_init__(self):
        if self.split != "official" and not (
            self.split.startswith("loso:") and len(self.split) > len("loso:")
        ):
            raise OmnifuseError(
                "Expected 'official' or 'loso:<speaker>' for config key 'data.split'. "
                f"Received: {self.split!r}"
            )


@dataclass(frozen=True)
class ModelConfig:
    fusion: Fusion = "attention"  # how the modalities' features are combined (omnifuse/fusion/)
    # 0 = no projection: concat passes the encoders' features to the heads as they are; attention passes a modality
    # of the widest width as it is and projects only narrower ones to that width
    fusion_dim: int = 128
    fusion_dropout: float = 0.0  # the fusion layer's dropout (omnifuse/fusion/)
    # attention fusion: each modality's projection scaled to unit variance before weighting, so the weights alone
    # decide each modality's share of the fused vector (see omnifuse/fusion/attention.py)
    fusion_normalize: bool = False
    head_hidden: int = 0  # 0 = a linear head on the fused vector
    head_dropout: float = 0.0  # before each task's output layer (after head_hidden's layer, if any)
    head_bias: bool = True  # the output layer's bias
    # the logits times this before the softmax: a small scale slows the output layer's learning and shrinks the
    # gradients it sends down (airbench: 1/9, with a bias-free head right on the encoder's features)
    head_scale: float = 1.0
    # > 1: an ensemble of this many copies of the model, each initialised apart and trained with its own loss on the
    # same batches (a deep ensemble in one Keras model); the task outputs and modality weights are their means
    members: int = 1
    # per member, dotted model.* overrides that make it differ from the others (one list per member, [] for none),
    # e.g. [["model.text.encoder=nb"], [], [], []]: an NBSVM beside three recurrent nets
    member_overrides: tuple[tuple[str, ...], ...] = ()
    # after training, the members' weights in the mean fitted on the validation split (the least log-loss);
    # otherwise every member counts the same
    fit_member_weights: bool = False
    image: sections.ImageConfig = field(default_factory=lambda: sections.ImageConfig())  # the image encoder
    text: sections.TextConfig = field(default_factory=lambda: sections.TextConfig())  # the text encoder(s)
    audio: sections.AudioConfig = field(default_factory=lambda: sections.AudioConfig())  # the audio encoder
    # the encoder of a table's numbers and categories
    tabular: sections.TabularConfig = field(default_factory=lambda: sections.TabularConfig())


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10  # passes over the training data (data.epoch_fraction: of each set)
    batch_size: int = 128  # samples per training step
    # sgd: with Nesterov momentum; muon: Muon (orthogonalised Nesterov momentum steps, each kernel's norm held fixed)
    # for the convolution kernels of encoders trained from scratch, Nesterov SGD for the rest (omnifuse/optimizers.py)
    optimizer: typing.Literal["adam", "adamw", "sgd", "muon"] = "adam"
    learning_rate: float = 1e-3  # peak learning rate of the schedule
    # the learning rate over the steps
    # onecycle: from a tenth of the rate up, then cosine decay to 0; triangle (airbench's): linearly from
    # triangle_start to 1 times the rate, then linearly down to triangle_end times it at the last step
    schedule: typing.Literal["constant", "cosine", "onecycle", "triangle"] = "constant"
    warmup_fraction: float = 0.2  # onecycle, triangle: share of steps spent rising
    triangle_start: float = 0.2  # triangle: the first step's rate, as a fraction of learning_rate
    triangle_end: float = 0.07  # triangle: the last step's rate, as a fraction of learning_rate
    weight_decay: float = 0.0  # adamw, sgd: decoupled weight decay
    label_smoothing: float = 0.0  # the targets' share spread evenly over the other classes
    # "balanced": each class's loss weighted by n / (k * n_class) over its task's training labels (for imbalanced
    # classes, or a test set whose class mix differs from train's); "none": every sample counts the same
    class_weight: typing.Literal["none", "balanced"] = "none"
    momentum: float = 0.9  # sgd, muon: the Nesterov momentum of SGD's variables
    # muon: the convolution kernels' peak rate (the schedule's shape applies); each step moves a kernel by about this
    # fraction of its norm
    muon_learning_rate: float = 0.24
    muon_momentum: float = 0.6  # muon: the convolution kernels' Nesterov momentum
    # a variable whose gradient is exactly zero in a step (its modality absent from the whole batch) keeps its value
    # and optimizer state, instead of moving by stale momentum (see omnifuse/optimizers.py); applies to models with
    # more than one modality or task (in the others every batch reaches every variable)
    lazy_updates: bool = True
    # > 0 (models with 2+ modalities): each modality also gets its own linear head per task on its encoder's
    # features, trained with this weight on the samples where that modality is present (unimodal auxiliary losses,
    # as in Gradient Blending, Wang et al. 2020), so no encoder leans on the others; prediction uses the fused head
    unimodal_loss: float = 0.0
    # lookahead > 0: every lookahead_every steps the weights restart from a slow average whose decay ramps up
    # as (step/total)^3 to `lookahead`; training ends on the average
    lookahead: float = 0.0
    lookahead_every: int = 5  # lookahead > 0: steps between restarts from the average
    seed: int = 0  # weights' initialisation, shuffling, hold-outs
    early_stopping: int = 3  # patience in epochs on the validation loss; 0 = off
    jit_compile: bool = False  # XLA-compile the training step
    # "auto": a training (or a pretraining) of at most 12 steps in all (a smoke run: data.limit_train, one epoch)
    # runs its steps eagerly, as Python calls, since tracing the training step into a graph costs more than those
    # steps (a tiny two-modality run: 5.0 -> 1.4 CPU seconds); longer ones trace it once. "always": eagerly whatever
    # the length (to step through an encoder of your own in a debugger; several times slower per step); "never":
    # always traced. A distributed or jit_compile training is always traced
    eager: typing.Literal["auto", "always", "never"] = "auto"
    # a pretrained encoder that trains (mode finetune or last_k, or one started from model.<kind>.init) learns at
    # this fraction of train.learning_rate
    pretrained_lr_scale: float = 0.1
    # frozen pretrained encoders (mode frozen, no augmentation before them): their features are computed once per
    # data set (and cached on disk), and training runs the rest of the model on them (omnifuse/features.py)
    cache_features: bool = True
    # "bfloat16": layers compute in bfloat16, variables stay float32 (Keras mixed_bfloat16; fast on CPUs with AMX or
    # AVX512-BF16); the heads and the numerically delicate parts stay float32 (omnifuse/precision.py)
    # "auto": bfloat16 on a GPU, and on a CPU that computes it natively (AVX512-BF16 or AMX) where a short measurement,
    # taken once per machine and cached, finds it faster; else float32 (emulated bfloat16 made cifar10-fast's step
    # 11x slower on an AVX2-only CPU; native bfloat16 made cifar10-94's 1.71x slower on a Xeon without AMX)
    precision: typing.Literal["float32", "bfloat16", "auto"] = "float32"
    verbose: typing.Literal[0, 1, 2] = 1  # Keras progress bar: 0 silent, 1 bar, 2 one line per epoch
    # per training sample with >= 2 modalities: drop each present one with this probability (never all of them)
    modality_dropout: float = 0.0
    # per training sample with >= 2 modalities: corrupt each present one with this probability, at a random level up
    # to the robustness evaluation's strongest (noise for images/audio/numbers, token dropout for text)
    modality_noise: float = 0.0
    # use data.unlabeled (omnifuse/semi.py): pseudo_label = confident predictions as targets, refreshed each
    # epoch; consistency = those targets (from clean inputs) on strongly corrupted copies, FixMatch-style
    semi_supervised: typing.Literal["none", "pseudo_label", "consistency"] = "none"
    pseudo_label_threshold: float = 0.95  # least top probability for an unlabelled sample to get a target
    # the unlabelled loss (a mean over each step's unlabelled samples) times this
    unlabeled_weight: float = 1.0
    unlabeled_ratio: int = 7  # unlabelled samples per labelled one in each step (FixMatch's mu)
    # none | mirrored (local devices) | multi_worker (omnifuse/distributed.py)
    distribution: typing.Literal["none", "mirrored", "multi_worker"] = "none"
    workers: tuple[str, ...] = ()  # multi_worker: host:port of every worker (else $TF_CONFIG) ...
    worker_index: int = 0  # ... and this process's place in that list


@dataclass(frozen=True)
class Config:
    name: str = "run"  # the run directory's name (runs/<name>); a preset's or file's name by default
    data: DataConfig = field(default_factory=DataConfig)  # what is trained on
    model: ModelConfig = field(default_factory=ModelConfig)  # encoders, fusion, heads
    train: TrainConfig = field(default_factory=TrainConfig)  # how it is trained
    track: TrackConfig = field(default_factory=TrackConfig)  # experiment tracking: TensorBoard, MLflow
    # self-supervised pretraining of an encoder (omnifuse pretrain; docs/pretraining.md)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self):
        # a Config built in Python (or by dataclasses.replace) gets the checks a TOML file gets
        _check_choices(self, "")

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))

    def to_toml(self) -> str:
        import tomli_w

        return tomli_w.dumps(self.to_dict())

    def replace(self, overrides: list[str] | dict[str, Any]) -> Config:
        """A copy with dotted overrides applied: ``["train.epochs=3"]`` or ``{"train.epochs": 3}``."""
        return from_dict(apply_overrides(self.to_dict(), overrides))


def __getattr__(name: str) -> Any:
    # ImageConfig, TextConfig, AudioConfig, TabularConfig: the current ones (see omnifuse/encoders/sections.py)
    if name in sections.SECTIONS:
        return getattr(sections, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check ``value`` against the annotation ``tp``; return it in the dataclass's own form."""
    origin = typing.get_origin(tp)
    where = f" in {source}" if source else ""
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise OmnifuseError(f"Expected a table for config key '{key}'{where}. Received: {value!r}")
        return _build(tp, value, key, source)
    if origin is typing.Literal:
        _check_choice(value, typing.get_args(tp), key, where)
        return value
    if origin is typing.Annotated:
        base, *marks = typing.get_args(tp)
        value = _coerce(value, base, key, source)
        for mark in marks:
            if isinstance(mark, Joined):
                for part in value.split(mark.sep):
                    _check_choice(
                        part, mark.choices, key, where, f" (or several joined by {mark.sep!r})", value
                    )
        return value
    if origin is tuple:
        item_tp = typing.get_args(tp)[0]
        if not isinstance(value, (list, tuple)):
            raise OmnifuseError(
                f"Expected a list of {_type_name(item_tp)} for config key '{key}'{where}. Received: {value!r}"
            )
        return tuple(_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        value_tp = typing.get_args(tp)[1]
        if not isinstance(value, dict):
            raise OmnifuseError(
                f"Expected a table of {_type_name(value_tp)} values for config key '{key}'{where}. "
                f"Received: {value!r}"
            )
        return {str(k): _coerce(v, value_tp, f"{key}.{k}", source) for k, v in value.items()}
    ok = (
        (tp is bool and isinstance(value, bool))
        or (tp is int and isinstance(value, int) and not isinstance(value, bool))
        or (tp is float and isinstance(value, (int, float)) and not isinstance(value, bool))
        or (tp is str and isinstance(value, str))
    )
    if not ok:
        raise OmnifuseError(
            f"Expected {_type_name(tp)} for config key '{key}'{where}. "
            f"Received: {value!r} ({type(value).__name__})"
        )
    return float(value) if tp is float else value


def _check_choice(
    value: Any, allowed: tuple, key: str, where: str, more: str = "", whole: Any = None
) -> None:
    # type too: True == 1 and 1.0 == 1, but neither is the verbosity 1
    if not any(value == a and type(value) is type(a) for a in allowed):
        part_of = f" in {whole!r}" if whole is not None and whole != value else ""
        raise OmnifuseError(
            f"Expected one of {', '.join(repr(a) for a in allowed)}{more} for config key '{key}'{where}. "
            f"Received: {value!r}{part_of}"
            + (f".{hint}" if (hint := did_you_mean(value, allowed) if isinstance(value, str) else "") else "")
        )


def _check_choices(obj: Any, prefix: str) -> None:
    """Check every fixed-choice key of the dataclass ``obj`` and of the sections under it."""
    hints = typing.get_type_hints(type(obj), include_extras=True)
    for f in dataclasses.fields(obj):
        key, value, tp = f"{prefix}.{f.name}" if prefix else f.name, getattr(obj, f.name), hints[f.name]
        if dataclasses.is_dataclass(value):
            _check_choices(value, key)
        elif _has_choices(tp):
            _coerce(value, tp, key, "")


def _has_choices(tp: Any) -> bool:
    origin = typing.get_origin(tp)
    if origin in (typing.Literal, typing.Annotated):
        return True
    return any(_has_choices(arg) for arg in typing.get_args(tp)) if origin in (tuple, dict) else False


def _build(cls: type, values: dict[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls, include_extras=True)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        key = f"{prefix}.{unknown[0]}" if prefix else unknown[0]
        where = f" in {source}" if source else ""
        raise OmnifuseError(
            f"Unknown config key '{key}'{where}.{near_key(key.split('.'), key.count('.'), names)} Valid keys"
            f"{' under ' + repr(prefix) if prefix else ''}: {', '.join(names)}"
        )
    kwargs = {}
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        kwargs[name] = _coerce(value, hints[name], key, source)
    return cls(**kwargs)


def from_dict(values: dict[str, Any], source: str = "") -> Config:
    """Build a Config from nested dicts (as read from TOML), checking every key and type."""
    return _build(Config, values, "", source)


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # a bare word is a string: fusion=attention


def apply_overrides(values: dict[str, Any], overrides: list[str] | dict[str, Any]) -> dict[str, Any]:
    """Apply dotted overrides to nested dicts; an unknown key lists the valid ones at its level."""
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            if "=" not in item:
                raise OmnifuseError(
                    f"Expected an override of the form key=value (e.g. train.epochs=3). Received: {item!r}"
                )
            key, text = item.split("=", 1)
            items.append((key.strip(), _parse_value(text.strip())))
    values = _to_plain(values)
    for key, value in items:
        node = values
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if not isinstance(node, dict) or part not in node:
                level = ".".join(parts[:depth])
                valid = ", ".join(node) if isinstance(node, dict) else "(none: not a table)"
                hint = near_key(parts, depth, node) if isinstance(node, dict) else ""
                raise OmnifuseError(
                    f"Unknown config key '{key}'.{hint} Valid keys{' under ' + repr(level) if level else ''}: {valid}"
                )
            if depth == len(parts) - 1:
                node[part] = value
            else:
                node = node[part]
    return values


def presets() -> list[str]:
    """Names of the configs shipped with omnifuse."""
    folder = resources.files("omnifuse") / "configs"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OmnifuseError(f"Expected a valid TOML config file. Received: '{path}' ({exc})") from None
    except UnicodeDecodeError as exc:
        raise OmnifuseError(f"Expected a UTF-8 TOML config file. Received: '{path}' ({exc.reason})") from None


def load_config(name_or_path: str | Path, overrides: list[str] | dict[str, Any] | None = None) -> Config:
    """A preset name (``cifar10-cnn``) or a TOML file, with dotted overrides applied."""
    path = Path(name_or_path)
    if path.suffix == ".toml" or path.exists():
        if not path.is_file():
            raise OmnifuseError(
                f"Config file not found: '{path}'.{did_you_mean(path.stem, presets())} Presets: {', '.join(presets())}"
            )
        values, source = read_toml(path), str(path)
    elif str(name_or_path) in presets():
        text = (resources.files("omnifuse") / "configs" / f"{name_or_path}.toml").read_text(encoding="utf-8")
        values, source = tomllib.loads(text), f"preset '{name_or_path}'"
    else:
        raise OmnifuseError(
            f"Expected a preset name or a .toml file. Received: {str(name_or_path)!r}."
            f"{did_you_mean(name_or_path, presets())} Presets: {', '.join(presets())}"
        )
    values.setdefault("name", path.stem if path.suffix == ".toml" else str(name_or_path))
    if overrides:
        base = from_dict(values, source).to_dict()
        return from_dict(apply_overrides(base, overrides), "--set")
    return from_dict(values, source)


def read_run_config(run_dir: str | Path) -> Config:
    """A run's ``config.toml``, the full resolved config it was trained with."""
    path = Path(run_dir) / CONFIG
    if not path.is_file():
        raise OmnifuseError(f"Expected a run directory with {CONFIG}. Received: '{run_dir}'")
    return from_dict(read_toml(path), str(path))
