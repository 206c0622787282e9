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
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse import pipeline
from omnifuse.config import Config, from_dict, read_toml
from omnifuse.errors import OmnifuseError
from omnifuse.models import WEIGHTS_OUTPUT, build_model, compile_model

CHECKPOINTS = "checkpoints"


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


def load_datasets(cfg: Config, data_dir: str | None):
    from omnifuse.data.catalog import load_dataset

    return [load_dataset(name, data_dir or cfg.data.data_dir or None) for name in cfg.data.sets]


def train(
    config: Config,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    resume: str | Path | None = None,
) -> Path:
    """Train ``config`` into a new run directory (or continue ``resume``); return the run directory.

    >>> run = train(load_config("cifar10-cnn", ["train.epochs=1"]))
    """
    if resume is not None:
        run_dir = Path(resume)
        cfg = read_run_config(run_dir)
        meta = read_meta(run_dir)
    else:
        cfg = config
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

    start = time.perf_counter()
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    meta.update(
        modalities=prepared.modalities,
        tasks=prepared.tasks,
        image_shape=list(prepared.image_shape) if prepared.image_shape else None,
        sets=[p.name for p in prepared.parts],
        sources=prepared.sources,
        samples={
            p.name: {"train": len(p.train), "val": len(p.val), "test": len(p.test)} for p in prepared.parts
        },
    )
    meta.setdefault("progress", progress)
    data_seconds = time.perf_counter() - start

    last = run_dir / CHECKPOINTS / "last.keras"
    if resume is not None and last.is_file():
        model = keras.saving.load_model(last)
        steps = None
    else:
        texts = None
        if "text" in prepared.modalities.values():
            texts = [s for p in prepared.parts for s in p.train.inputs.get("text", [])]
        model = build_model(
            cfg, prepared.modalities, prepared.tasks, texts, prepared.image_shape or (32, 32, 3)
        )
    with_weights = WEIGHTS_OUTPUT in model.output_names
    train_ds, steps = pipeline.stream(
        prepared,
        [p.train for p in prepared.parts],
        t.batch_size,
        True,
        t.seed + initial_epoch,
        with_weights,
        True,
    )
    val_ds, _ = pipeline.stream(
        prepared, [p.val for p in prepared.parts], t.batch_size, False, 0, with_weights
    )
    has_val = any(len(p.val) for p in prepared.parts)
    if not model.compiled:
        compile_model(model, cfg, prepared.tasks, steps)
    meta["progress"]["setup_seconds"] = round(data_seconds + time.perf_counter() - start, 3)
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))

    early = None
    if t.early_stopping and has_val:
        early = _ResumableEarlyStopping(progress, monitor="val_loss", patience=t.early_stopping)
    callbacks = [_EpochTimer()]
    if early is not None:
        callbacks.append(early)
    callbacks += [
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=initial_epoch > 0),
        _RunCheckpoint(run_dir, meta, early),
    ]
    if initial_epoch < t.epochs and not progress.get("stopped_early"):
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
    best = run_dir / CHECKPOINTS / "best.keras"
    if best.is_file():
        model = keras.saving.load_model(best)
    atomic_save_model(model, run_dir / "model.keras")
    meta["progress"]["finished"] = True
    atomic_write_text(run_dir / "meta.json", json.dumps(meta, indent=2))
    return run_dir
