"""Training: model.fit with callbacks, and the run directory it fills.

``runs/<name>/``: ``config.toml`` (the full resolved config), ``meta.json`` (modalities, tasks, data sources,
progress), ``metrics.csv`` (one row per epoch), ``checkpoints/last.keras`` and ``checkpoints/best.keras`` (model and
optimizer state, written after every epoch), and at the end ``model.keras`` (the best epoch by validation loss).
Every file is written to a temporary name and renamed, so a kill never leaves a half-written file; ``resume`` picks
up after the last completed epoch.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse import distributed, pipeline
from omnifuse.config import Config, from_dict, read_toml
from omnifuse.data.catalog import load_datasets  # noqa: F401  (moved; evaluation and bench import it from here)
from omnifuse.errors import OmnifuseError
from omnifuse.metrics_log import reconcile_metrics
from omnifuse.models import (
    WEIGHTS_OUTPUT,
    MemberMean,
    auxiliary_outputs,
    balanced_class_weights,
    build_model,
    compile_model,
    member_index,
    member_outputs,
)
from omnifuse.precision import load_model

CHECKPOINTS = "checkpoints"

# Keras warns when a finite validation stream ends (it always does: one pass per epoch is the intent), and about a
# shuffle flag that tf.data input ignores (the pipeline shuffles itself).
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def atomic_save_model(model: keras.Model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.keras")
    model.save(tmp)
    os.replace(tmp, path)


def read_meta(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / "meta.json"
    if not path.is_file():
        raise OmnifuseError(f"Expected a run directory with meta.json. Received: '{run_dir}' (no meta.json)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_run_config(run_dir: Path) -> Config:
    path = Path(run_dir) / "config.toml"
    if not path.is_file():
        raise OmnifuseError(f"Expected a run directory with config.toml. Received: '{run_dir}'")
    return from_dict(read_toml(path), str(path))


def new_run_dir(root: Path, name: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}-{n}"
    path.mkdir()
    return path


class _EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time to the logs (so metrics.csv records it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = round(time.perf_counter() - self._start, 3)


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's early stopping, with its patience counter carried over a resume."""

    def __init__(self, state: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self._state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if "best" in self._state:
            self.best = self._state["best"]
            self.wait = self._state.get("wait", 0)


class _Lookahead(keras.callbacks.Callback):
    """Lookahead with a ramped average: every ``every`` steps, slow = d * slow + (1 - d) * weights, then the weights
    restart from slow; d = decay * (step / total)^3, so early training runs free. The last epoch ends on slow."""

    def __init__(self, decay: float, every: int, total_steps: int, initial_step: int = 0):
        super().__init__()
        self.decay, self.every, self.total = decay, max(1, every), max(1, total_steps)
        self.step = initial_step

    def on_train_begin(self, logs=None):
        self.vars = [v for v in self.model.weights if "float" in str(v.dtype)]
        self.slow = [keras.ops.convert_to_numpy(v).astype(np.float32) for v in self.vars]

    def _restart_from_slow(self):
        for v, s in zip(self.vars, self.slow):
            v.assign(s)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            d = self.decay * min(1.0, self.step / self.total) ** 3
            for v, s in zip(self.vars, self.slow):
                s *= d
                s += (1.0 - d) * keras.ops.convert_to_numpy(v)
            self._restart_from_slow()

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.params.get("epochs", 0):
            self._restart_from_slow()


class _RunCheckpoint(keras.callbacks.Callback):
    """After each epoch: last.keras, best.keras when the validation loss improved, and the progress in meta.json."""

    def __init__(self, run_dir: Path, meta: dict[str, Any], early: _ResumableEarlyStopping | None):
        super().__init__()
        self.run_dir = run_dir
        self.meta = meta
        self.early = early

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        folder = self.run_dir / CHECKPOINTS
        folder.mkdir(exist_ok=True)
        progress = self.meta.setdefault("progress", {})
        loss = logs.get("val_loss", logs.get("loss"))
        if loss is not None and np.isfinite(loss) and loss < progress.get("best", np.inf):
            atomic_save_model(self.model, folder / "best.keras")
            progress.update(best=float(loss), best_epoch=epoch + 1)
        atomic_save_model(self.model, folder / "last.keras")
        progress["epochs_done"] = epoch + 1
        if self.early is not None:
            progress["wait"] = int(self.early.wait)
        progress["train_seconds"] = round(
            progress.get("train_seconds", 0.0) + logs.get("epoch_seconds", 0.0), 3
        )
        atomic_write_text(self.run_dir / "meta.json", json.dumps(self.meta, indent=2))


def _class_weights(cfg: Config, prepared: pipeline.Prepared) -> dict[str, list[float]] | None:
    """Per task, the loss weight of each class (``train.class_weight``), from the training labels."""
    if cfg.train.class_weight == "none":
        return None
    out = {}
    for task, classes in prepared.tasks.items():
        labels = [p.train.labels[task] for p in prepared.parts if task in p.train.labels]
        out[task] = balanced_class_weights(np.concatenate(labels), len(classes))
    return out


def _numbers_rows(prepared: pipeline.Prepared) -> dict[str, np.ndarray]:
    """Per numbers modality, the training rows that have it: the tabular encoder is normalised with them."""
    rows = {}
    for name, spec in prepared.numbers.items():
        chunks = [np.zeros((0, len(spec["features"])), np.float32)]
        for p in prepared.parts:
            if name in p.train.inputs:
                present = p.train.masks.get(name, np.ones(len(p.train), np.float32)) > 0
                chunks.append(p.train.inputs[name][present])
        rows[name] = np.concatenate(chunks).astype(np.float32)
    return rows


def _training_texts(prepared: pipeline.Prepared) -> tuple[list[str], tuple[str, np.ndarray] | None]:
    """Every training text (one vocabulary for every text modality: a CSV may have several text columns), and
    (task, class index per text, -1 for none) for the first task that labels any of them, or None."""
    named = [m for m, kind in prepared.modalities.items() if kind == "text"]
    texts, labels = [], {task: [] for task in prepared.tasks}
    for p in prepared.parts:
        for m in named:
            if m not in p.train.inputs:
                continue
            found = list(p.train.inputs[m])
            texts += found
            for task, rows in labels.items():
                rows.append(np.asarray(p.train.labels.get(task, np.full(len(found), -1)), "int64"))
    for task, rows in labels.items():
        column = np.concatenate(rows) if rows else np.zeros(0, "int64")
        if (column >= 0).any():
            return texts, (task, column)
    return texts, None


def _image_sample(prepared: pipeline.Prepared, seed: int, size: int = 5000) -> np.ndarray | None:
    """Up to ``size`` training images (those present), drawn with ``seed``: data-initialised encoders adapt to them."""
    rng, chunks = np.random.default_rng(seed), []
    for name, kind in prepared.modalities.items():
        for p in prepared.parts:
            if kind == "image" and name in p.train.inputs:
                present = np.flatnonzero(p.train.masks.get(name, np.ones(len(p.train), np.float32)) > 0)
                chunks.append(p.train.inputs[name][np.sort(rng.permutation(present)[:size])])
    if not chunks:
        return None
    images = np.concatenate(chunks)
    return images[np.sort(rng.permutation(len(images))[:size])]


def fit_member_weights(model: keras.Model, stream, tasks: list[str]) -> list[float]:
    """Fit an ensemble's member weights (every :class:`MemberMean` of ``model``) on ``stream``, held-out ``(x, y)``
    batches: the weights on the simplex whose weighted mean of the members' probabilities has the least log-loss
    over every task's labelled samples (L-BFGS on the weights' softmax logits, from equal weights). Returns them."""
    from scipy.optimize import minimize
    from scipy.special import softmax

    members = member_outputs(model.output_names, tasks)
    probs: dict[str, list[np.ndarray]] = {name: [] for name in members}
    labels: dict[str, list[np.ndarray]] = {task: [] for task in tasks}
    for x, y in stream:
        out = model.predict_on_batch(x)
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


def train(
    config: Config,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    resume: str | Path | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> Path:
    """Train ``config`` into a new run directory (or continue ``resume``); return the run directory.

    >>> run = train(load_config("cifar10-cnn", ["train.epochs=1"]))
    """
    dist = None  # one process; else a tf.distribute strategy and this process's part in it
    prepared = None
    if resume is not None:
        run_dir = Path(resume)
        cfg = read_run_config(run_dir)
        meta = read_meta(run_dir)
        distributed.check_resume(cfg.train)
        dist = distributed.setup(cfg.train)
    elif config.train.distribution == "multi_worker":
        # set up before anything runs TensorFlow; the chief writes the run, the other workers a temporary folder
        cfg = config
        dist = distributed.setup(cfg.train)
        run_dir, meta = dist.open_run(cfg, run_dir, runs_root)
    else:
        cfg = config
        dist = distributed.setup(cfg.train)
        # load the data before making the run directory: a data error (a bad CSV row, a missing file) then leaves
        # no half-made run behind, and the user's next try gets the same run name
        start = time.perf_counter()
        prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
        if run_dir is None:
            run_dir = new_run_dir(Path(runs_root), cfg.name)
        else:
            run_dir = Path(run_dir)
            if (run_dir / "meta.json").exists():
                raise OmnifuseError(
                    f"Run directory '{run_dir}' already holds a run; use --resume to continue it."
                )
            run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.toml", cfg.to_toml())
        meta = {}
    t = cfg.train
    progress = meta.get("progress", {})
    initial_epoch = int(progress.get("epochs_done", 0))
    keras.utils.set_random_seed(t.seed + initial_epoch)

    if prepared is None:
        start = time.perf_counter()
        prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    meta.update(
        modalities=prepared.modalities,
        tasks=prepared.tasks,
        image_shape=list(prepared.image_shape) if prepared.image_shape else None,
        audio={"sample_rate": cfg.data.sample_rate, "num_samples": cfg.data.num_samples},
        sets=[p.name for p in prepared.parts],
        sources=prepared.sources,
        numbers=prepared.numbers,
        skipped_rows=prepared.skipped_rows,
        samples={
            p.name: {"train": len(p.train), "val": len(p.val), "test": len(p.test)} for p in prepared.parts
        },
    )
    meta.setdefault("progress", progress)
    data_seconds = time.perf_counter() - start

    last = run_dir / CHECKPOINTS / "last.keras"
    if resume is not None and last.is_file():
        with distributed.scope(dist):  # a strategy's variables are made (and loaded) under its scope
            model = load_model(last)
        steps = None
    else:
        texts = text_labels = None
        if "text" in prepared.modalities.values():
            texts, text_labels = _training_texts(prepared)
        with distributed.scope(dist):
            model = build_model(
                cfg,
                prepared.modalities,
                prepared.tasks,
                texts,
                prepared.image_shape or (32, 32, 3),
                numbers=_numbers_rows(prepared),
                images=_image_sample(prepared, t.seed),
                text_labels=text_labels,
            )
    with_weights = WEIGHTS_OUTPUT in model.output_names
    auxiliary = auxiliary_outputs(model.output_names, prepared.tasks)
    train_ds, steps = pipeline.stream(
        prepared,
        [p.train for p in prepared.parts],
        t.batch_size,
        True,
        t.seed + initial_epoch,
        with_weights,
        True,
        fractions=tuple(cfg.data.epoch_fraction),
        modality_dropout=t.modality_dropout,
        modality_noise=t.modality_noise,
        auxiliary=auxiliary,
        length_buckets=cfg.data.length_buckets,
    )
    has_val = any(len(p.val) for p in prepared.parts)  # data.val_fraction = 0: train on all of train
    fit_weights = cfg.model.fit_member_weights and cfg.model.members > 1
    if fit_weights and not has_val:
        raise OmnifuseError(
            "Expected a validation split (data.val_fraction > 0) to fit the members' weights on, with "
            "model.fit_member_weights = true. Received: no validation samples"
        )
    val_ds = None
    if has_val:
        val_ds, _ = pipeline.stream(
            prepared,
            [p.val for p in prepared.parts],
            t.batch_size,
            False,
            0,
            with_weights,
            auxiliary=auxiliary,
        )
    if not model.compiled:
        with distributed.scope(dist):
            compile_model(model, cfg, prepared.tasks, steps, _class_weights(cfg, prepared))
    if dist is not None:
        train_ds = dist.shard(train_ds)
        val_ds = dist.shard(val_ds) if val_ds is not None else None
        dist.prepare(model, train_ds.element_spec)
        meta["distribution"] = dist.describe()
    meta["progress"]["setup_seconds"] = round(data_seconds + time.perf_counter() - start, 3)
    meta["progress"]["steps_per_epoch"] = int(steps)
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))

    early = None
    if t.early_stopping and has_val:
        early = _ResumableEarlyStopping(progress, monitor="val_loss", patience=t.early_stopping)
    extra = list(callbacks or [])
    callbacks = [_EpochTimer()]
    if t.lookahead:
        callbacks.append(_Lookahead(t.lookahead, t.lookahead_every, t.epochs * steps, initial_epoch * steps))
    callbacks += extra  # after the lookahead, so that they see the weights training ends on
    if early is not None:
        callbacks.append(early)
    reconcile_metrics(run_dir / "metrics.csv", initial_epoch)  # rows past the last checkpoint (a kill) go
    callbacks += [
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=initial_epoch > 0),
        _RunCheckpoint(run_dir, meta, early),
    ]
    if dist is not None:  # replicas agree before the run's callbacks save anything; the backup comes last
        first, then = dist.callbacks(model, meta["progress"])
        callbacks = first + callbacks + then
    if initial_epoch < t.epochs and not progress.get("stopped_early"):
        with distributed.scope(dist):
            model.fit(
                train_ds,
                steps_per_epoch=steps,
                epochs=t.epochs,
                initial_epoch=initial_epoch,
                validation_data=val_ds if has_val else None,
                callbacks=callbacks,
                verbose=t.verbose,
            )
        if early is not None and early.stopped_epoch:
            meta["progress"]["stopped_early"] = True
    if dist is not None:
        dist.record(model, meta)
    best = run_dir / CHECKPOINTS / "best.keras"
    if best.is_file():
        model = load_model(best)
    if fit_weights:
        meta["member_weights"] = fit_member_weights(model, val_ds, list(prepared.tasks))
    atomic_save_model(model, run_dir / "model.keras")
    meta["progress"]["finished"] = True
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))
    return run_dir if dist is None else dist.close(run_dir)
