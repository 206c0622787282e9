"""Training: model.fit with callbacks, and the run directory it fills.

``runs/<name>/``: ``config.toml`` (the full resolved config), ``meta.json`` (modalities, tasks, data sources,
progress), ``metrics.csv`` (one row per epoch), ``checkpoints/last.keras`` and ``checkpoints/best.keras`` (model and
optimizer state, written after every epoch), ``logs/`` (TensorBoard; omnifuse/tracking.py, which also logs to
MLflow where asked), and at the end ``model.keras`` (the best epoch by validation loss).
Every file is written to a temporary name and renamed, so a kill never leaves a half-written file; ``resume`` picks
up after the last completed epoch.
"""

from __future__ import annotations

import json
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras

from omnifuse import distributed, keras_compat, pipeline, semi, tracking, training_split
from omnifuse.callbacks import (  # noqa: F401  (also imported from here)
    CHECKPOINTS,
    EpochToLayers,
    _EpochTimer,
    _Lookahead,
    _ResumableEarlyStopping,
    _RunCheckpoint,
    atomic_save_model,
)
from omnifuse.config import Config, read_run_config
from omnifuse.data import modalities_per_task
from omnifuse.data.catalog import load_datasets
from omnifuse.data.schema import write_schema
from omnifuse.errors import OmnifuseError
from omnifuse.evaluation import calibration
from omnifuse.hardware import machine
from omnifuse.metrics_log import reconcile_metrics
from omnifuse.model.builder import build_model
from omnifuse.model.compile import compile_model, runs_eagerly
from omnifuse.model.ensemble import fit_member_weights  # noqa: F401  (also imported from here)
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, auxiliary_outputs
from omnifuse.pretrain import checkpoint
from omnifuse.progress import epoch_lines, fit_verbose
from omnifuse.rundir import atomic_write, atomic_write_text, new_run_dir, read_meta

# Keras warns when a finite validation stream ends (it always does: one pass per epoch is the intent), and about a
# shuffle flag that tf.data input ignores (the pipeline shuffles itself).
warnings.filterwarnings("ignore", message="Your input ran out of data")
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


@dataclass
class _Run:
    """One training run as it is set up: its config, directory, meta (progress included), data and strategy."""

    cfg: Config
    run_dir: Path
    meta: dict[str, Any]
    dist: distributed.Distribution | None  # None: one process
    resumed: bool
    prepared: pipeline.Prepared | None = None
    # what training streams: ``prepared``, or a copy holding frozen encoders' features (omnifuse/features.py)
    fit_prepared: pipeline.Prepared | None = None
    start: float = 0.0  # when loading the data began
    data_seconds: float = 0.0

    @property
    def progress(self) -> dict[str, Any]:
        return self.meta.setdefault("progress", {})

    @property
    def initial_epoch(self) -> int:
        return int(self.meta.get("progress", {}).get("epochs_done", 0))


@dataclass
class _Streams:
    train: Any  # tf.data.Dataset
    steps: int  # training batches per epoch
    val: Any | None  # None without validation samples (data.val_fraction = 0)


def _open(config, run_dir, runs_root, data_dir, resume) -> _Run:
    """The run directory and meta to train into: the one to ``resume``, a multi-worker run's (the chief writes
    it, the other workers a temporary folder), or a new one, made only once the data has loaded."""
    if resume is not None:
        run_dir = Path(resume)
        cfg = read_run_config(run_dir)
        meta = read_meta(run_dir)
        distributed.check_resume(cfg.train)
        return _Run(cfg, run_dir, meta, distributed.setup(cfg.train), resumed=True)
    cfg = config
    if cfg.train.distribution == "multi_worker":
        # set up before anything runs TensorFlow
        dist = distributed.setup(cfg.train)
        run_dir, meta = dist.open_run(cfg, run_dir, runs_root)
        return _Run(cfg, run_dir, meta, dist, resumed=False)
    dist = distributed.setup(cfg.train)
    # load the data before making the run directory: a data error (a bad CSV row, a missing file) then leaves no
    # half-made run behind, and the user's next try gets the same run name
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
    write_schema(run_dir, cfg.data)
    return _Run(cfg, run_dir, {}, dist, resumed=False, prepared=prepared, start=start)


def _load_data(run: _Run, data_dir: str | None) -> None:
    """Load the data (unless opening the run did) and record what it is in the meta."""
    cfg = run.cfg
    progress = run.meta.get("progress", {})
    if run.prepared is None:
        run.start = time.perf_counter()
        run.prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    prepared = run.prepared
    run.meta.update(
        modalities=prepared.modalities,
        tasks=prepared.tasks,
        image_shape=list(prepared.image_shape) if prepared.image_shape else None,
        audio={"sample_rate": cfg.data.sample_rate, "num_samples": cfg.data.num_samples},
        sets=[p.name for p in prepared.parts],
        task_modalities=modalities_per_task([p.train for p in prepared.parts]),
        sources=prepared.sources,
        numbers=prepared.numbers,
        skipped_rows=prepared.skipped_rows,
        tables=prepared.tables,
        samples={
            p.name: {"train": len(p.train), "val": len(p.val), "test": len(p.test)} for p in prepared.parts
        },
    )
    run.meta.setdefault("progress", progress)
    run.data_seconds = time.perf_counter() - run.start


def _build(run: _Run, prepared: pipeline.Prepared | None = None) -> keras.Model:
    """The model: the last checkpoint's when resuming (optimizer state included), else a new one (for
    ``prepared``, default the run's data)."""
    last = run.run_dir / CHECKPOINTS / "last.keras"
    if prepared is None and run.resumed and last.is_file():
        with distributed.scope(run.dist):  # a strategy's variables are made (and loaded) under its scope
            return load_model(last)
    prepared, t = prepared or run.prepared, run.cfg.train
    texts = text_labels = None
    if "text" in prepared.modalities.values():
        texts, text_labels = training_split.training_texts(prepared)
    with distributed.scope(run.dist):
        return build_model(
            run.cfg,
            prepared.modalities,
            prepared.tasks,
            texts,
            prepared.image_shape or (32, 32, 3),
            numbers=training_split.numbers_rows(prepared),
            images=training_split.image_sample(prepared, t.seed),
            text_labels=text_labels,
        )


def _streams(run: _Run, model: keras.Model) -> _Streams:
    """The training stream (endless, corrupted and dropped out as configured) and the validation pass."""
    cfg, prepared, t = run.cfg, run.fit_prepared or run.prepared, run.cfg.train
    with_weights = WEIGHTS_OUTPUT in model.output_names
    auxiliary = auxiliary_outputs(model.output_names, prepared.tasks)
    train_ds, steps = pipeline.stream(
        prepared,
        [p.train for p in prepared.parts],
        batch_size=t.batch_size,
        shuffle=True,
        seed=t.seed + run.initial_epoch,
        with_weights=with_weights,
        repeat=True,
        fractions=tuple(cfg.data.epoch_fraction),
        modality_dropout=t.modality_dropout,
        modality_noise=t.modality_noise,
        auxiliary=auxiliary,
        length_buckets=cfg.data.length_buckets,
    )
    has_val = any(len(p.val) for p in prepared.parts)  # data.val_fraction = 0: train on all of train
    if _fits_member_weights(cfg) and not has_val:
        raise OmnifuseError(
            "Expected a validation split (data.val_fraction > 0) to fit the members' weights on, with "
            "model.fit_member_weights = true. Received: no validation samples"
        )
    val_ds = None
    if has_val:
        val_ds, _ = pipeline.stream(
            prepared,
            [p.val for p in prepared.parts],
            batch_size=t.batch_size,
            with_weights=with_weights,
            auxiliary=auxiliary,
        )
    return _Streams(train_ds, steps, val_ds)


def _fits_member_weights(cfg: Config) -> bool:
    return cfg.model.fit_member_weights and cfg.model.members > 1


def _compile(run: _Run, model: keras.Model, streams: _Streams) -> None:
    """Compile a new model (a resumed one keeps its optimizer), place it on the strategy, and record the set-up."""
    dist = run.dist
    if not model.compiled:
        with distributed.scope(dist):
            compile_model(
                model,
                run.cfg,
                run.prepared.tasks,
                streams.steps,
                training_split.class_weights(run.cfg, run.prepared),
            )
    # train.eager, also for a resumed model (which keeps its optimizer, not how it was compiled)
    model.run_eagerly = runs_eagerly(run.cfg.train, streams.steps, run.initial_epoch)
    if dist is None:
        keras_compat.build_before_fit(model, streams.train.element_spec)
    else:
        streams.train = dist.shard(streams.train)
        streams.val = dist.shard(streams.val) if streams.val is not None else None
        dist.prepare(model, streams.train.element_spec)
        run.meta["distribution"] = dist.describe()
    run.progress["setup_seconds"] = round(run.data_seconds + time.perf_counter() - run.start, 3)
    run.progress["steps_per_epoch"] = int(streams.steps)
    atomic_write_text(run.run_dir / "meta.json", json.dumps(run.meta, indent=2))


def _callbacks(
    run: _Run,
    model: keras.Model,
    steps: int,
    extra: list[keras.callbacks.Callback],
    has_val: bool,
    saved: keras.Model | None = None,
) -> tuple[list[keras.callbacks.Callback], _ResumableEarlyStopping | None]:
    """The run's callbacks in the order they must run, and its early stopping (None when off)."""
    t, progress, initial_epoch = run.cfg.train, run.progress, run.initial_epoch
    early = None
    if t.early_stopping and has_val:
        early = _ResumableEarlyStopping(progress, monitor="val_loss", patience=t.early_stopping)
    callbacks: list[keras.callbacks.Callback] = [_EpochTimer(), EpochToLayers()]
    if t.lookahead:
        callbacks.append(_Lookahead(t.lookahead, t.lookahead_every, t.epochs * steps, initial_epoch * steps))
    callbacks += extra  # after the lookahead, so that they see the weights training ends on
    if run.dist is None or run.dist.chief:  # TensorBoard, MLflow: one writer, the process that writes the run
        callbacks += tracking.callbacks(
            run.cfg, run.run_dir, run.meta, run.fit_prepared or run.prepared, model
        )
        atomic_write_text(run.run_dir / "meta.json", json.dumps(run.meta, indent=2))  # the MLflow run's id
    if early is not None:
        callbacks.append(early)
    reconcile_metrics(run.run_dir / "metrics.csv", initial_epoch)  # rows past the last checkpoint (a kill) go
    callbacks += [
        keras.callbacks.CSVLogger(str(run.run_dir / "metrics.csv"), append=initial_epoch > 0),
        _RunCheckpoint(run.run_dir, run.meta, early, saved),
        *epoch_lines(t.epochs, t.verbose),  # one plain line per epoch where Keras' bar would not do
    ]
    if run.dist is not None:  # replicas agree before the run's callbacks save anything; the backup comes last
        first, then = run.dist.callbacks(model, progress)
        callbacks = first + callbacks + then
    return callbacks, early


def _fit(
    run: _Run,
    model: keras.Model,
    streams: _Streams,
    extra: list[keras.callbacks.Callback],
    saved: keras.Model | None = None,
) -> list | None:
    """``model.fit`` from the first epoch not done yet to ``train.epochs`` (nothing when early stopping ended it);
    ``saved``: the model checkpoints hold, when ``model`` is its head on cached features. Returns that model's
    weights as best.keras holds them, where this session wrote best.keras (else None)."""
    t = run.cfg.train
    callbacks, early = _callbacks(run, model, streams.steps, extra, streams.val is not None, saved)
    if run.initial_epoch >= t.epochs or run.progress.get("stopped_early"):
        return None
    with distributed.scope(run.dist):
        model.fit(
            streams.train,
            steps_per_epoch=streams.steps,
            epochs=t.epochs,
            initial_epoch=run.initial_epoch,
            validation_data=streams.val,
            callbacks=callbacks,
            verbose=fit_verbose(t.verbose),
        )
    if early is not None and early.stopped_epoch:
        run.progress["stopped_early"] = True
    return next(c.best for c in callbacks if isinstance(c, _RunCheckpoint))


def _finish(
    run: _Run,
    model: keras.Model,
    streams: _Streams,
    fitted: keras.Model | None = None,
    best_weights: list | None = None,
) -> Path:
    """Save the best epoch's model (with the ensemble's member weights fitted, if asked) as ``model.keras`` and
    mark the run finished; the run directory. ``fitted``: the head that trained on cached frozen features, if any:
    the temperatures are fitted through it on those features, not by running the frozen encoders again.
    ``best_weights``: what :func:`_fit` returned (the weights best.keras was written with in this session)."""
    if run.dist is not None:
        run.dist.record(model, run.meta)
    best = run.run_dir / CHECKPOINTS / "best.keras"
    fit_weights = _fits_member_weights(run.cfg)
    kept = best_weights is not None and not fit_weights  # the checkpoints hold ``model`` (see _train)
    if best.is_file() and run.dist is None and kept:
        # the best epoch's weights as best.keras was written with them: not read back (Keras walks the whole model
        # to load a file); member weights fitted are saved with the optimizer's state, which the file restores
        model.set_weights(best_weights)
    elif best.is_file() and run.dist is None:
        model.load_weights(best)  # the best epoch's weights, into the model trained: no second build of it
    elif best.is_file() and fit_weights:  # distributed: else model.keras is best.keras, nothing to load
        model = load_model(best)  # out of the strategy's distributed variables
    if fit_weights:
        run.meta["member_weights"] = fit_member_weights(model, streams.val, list(run.prepared.tasks))
    # one temperature per task, fitted on the validation split (distributed: at evaluation)
    if run.dist is None:
        scorer, data = model, run.prepared
        if fitted is not None and run.fit_prepared is not None:
            from omnifuse.features import copy_weights

            copy_weights(model, fitted)  # the saved (best) weights: the same answers on the cached features
            scorer, data = fitted, run.fit_prepared
        held = calibration.held_out(scorer, data, run.cfg.train.batch_size)
        run.meta[calibration.KEY] = None if held is None else calibration.fit(*held)
        if held is not None and held[0] and (run.run_dir / tracking.LOGS).is_dir():
            tracking.log_confusion(run.run_dir, run.prepared.tasks, held, run.progress.get("epochs_done", 0))
    run.meta["hardware"] = machine()  # the model card names it
    # model.keras: best.keras as it is (serializing it again costs), unless member weights were fitted into it
    save = (lambda tmp: shutil.copyfile(best, tmp)) if best.is_file() and not fit_weights else model.save
    atomic_write(run.run_dir / "model.keras", save)
    run.progress["finished"] = True
    atomic_write_text(run.run_dir / "meta.json", json.dumps(run.meta, indent=2))
    if run.dist is None or run.dist.chief:
        tracking.finish(run.run_dir, run.meta)
    return run.run_dir if run.dist is None else run.dist.close(run.run_dir)


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
    if config is not None:
        tracking.check(config)
        checkpoint.check_inits(config)  # model.<kind>.init: before a run directory is made
    run = _open(config, run_dir, runs_root, data_dir, resume)
    tracking.check(run.cfg)
    try:
        return _train(run, data_dir, list(callbacks or []))
    except BaseException:
        tracking.failed(run.meta)
        raise


def _train(run: _Run, data_dir: str | None, callbacks: list[keras.callbacks.Callback]) -> Path:
    keras.utils.set_random_seed(run.cfg.train.seed + run.initial_epoch)
    _load_data(run, data_dir)
    model = _build(run)
    fitted = _frozen_features(run, model, callbacks)
    streams = _streams(run, fitted)
    semi.record(run.prepared, run.meta)  # unlabelled samples: train.semi_supervised (omnifuse/semi.py)
    extra = list(callbacks or []) + semi.attach(run.cfg, run.prepared, fitted, streams, run.initial_epoch)
    _compile(run, fitted, streams)
    best_weights = _fit(run, fitted, streams, extra, saved=model if fitted is not model else None)
    if fitted is not model:
        from omnifuse.features import copy_weights

        copy_weights(fitted, model)
    return _finish(run, model, streams, fitted if fitted is not model else None, best_weights)


def _frozen_features(run: _Run, model: keras.Model, extra: list[keras.callbacks.Callback]) -> keras.Model:
    """The model to fit: ``model``, or, where frozen pretrained encoders' features can be computed once
    (``train.cache_features``), ``model`` from those encoders' outputs on, with ``run.fit_prepared`` holding the
    features. Callbacks with a ``use_prepared`` method are handed that copy (the bench scores its test set on it)."""
    from omnifuse import features

    if not run.cfg.train.cache_features or run.dist is not None or semi.active(run.cfg):
        return model  # (semi-supervised training streams raw unlabelled samples)
    branches = features.plan(model, sorted(run.prepared.modalities))
    if not branches:
        return model
    start = time.perf_counter()
    run.fit_prepared = features.with_features(
        model, run.prepared, branches, batch_size=run.cfg.train.batch_size
    )
    run.progress["feature_seconds"] = round(time.perf_counter() - start, 3)
    run.meta["cached_features"] = sorted(branches)
    for callback in extra:
        if hasattr(callback, "use_prepared"):
            callback.use_prepared(run.fit_prepared)
    head = _build(run, run.fit_prepared)
    features.copy_weights(model, head)  # the same start (and a resumed run's trained layers)
    return head
