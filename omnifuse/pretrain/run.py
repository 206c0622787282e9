"""``omnifuse pretrain``: one modality's encoder trained on its own inputs, without labels, into a run directory.

``RUN/``: ``config.toml`` (the full config), ``meta.json`` (``"pretrain"``: the modality, kind, encoder and its
options, the samples read; ``"progress"``: epochs done, seconds), ``metrics.csv`` (one row per epoch),
``encoder.npz`` (the encoder's variables after the last epoch done, see :mod:`omnifuse.pretrain.checkpoint`),
``vocabulary.json`` (text), and while it runs ``backup/`` (Keras's BackupAndRestore: the model's and optimizer's
state after each epoch). Running the same command again on an unfinished RUN continues after its last epoch; on
a finished one it does nothing.

The samples are the training split's (never validation or test) and ``data.unlabeled``'s, which
:mod:`omnifuse.data.unlabeled` has already rid of copies of test samples.
"""

from __future__ import annotations

import dataclasses
import json
import time
import warnings
from pathlib import Path

import keras
import numpy as np

from omnifuse import keras_compat, pipeline, semi
from omnifuse.callbacks import _EpochTimer
from omnifuse.config import Config, read_toml
from omnifuse.data.catalog import load_datasets
from omnifuse.errors import OmnifuseError
from omnifuse.metrics_log import reconcile_metrics
from omnifuse.model.compile import runs_eagerly
from omnifuse.pretrain import checkpoint, image, text
from omnifuse.progress import epoch_lines, fit_verbose
from omnifuse.rundir import CONFIG, META, atomic_write_text

BACKUP = "backup"
# the streams shuffle themselves (Keras warns that its shuffle flag does not apply to tf.data input)
warnings.filterwarnings("ignore", message="`shuffle=True` was passed")


def default_dir(cfg: Config, runs_root: str | Path = "runs") -> Path:
    """Where ``omnifuse pretrain CONFIG`` writes without ``--out``: ``<runs root>/<name>-pretrained``."""
    return Path(runs_root) / f"{cfg.name}-pretrained"


def _compared(values: dict) -> dict:
    """What must be the same for a rerun to continue a pretraining: the data, the encoders, pretrain, the seed."""
    model = {
        k: {kk: vv for kk, vv in v.items() if kk != "init"} if isinstance(v, dict) else v
        for k, v in values["model"].items()
    }
    return {
        "data": values["data"],
        "model": model,
        "pretrain": values["pretrain"],
        "seed": values["train"]["seed"],
    }


def _open(cfg: Config, run_dir: Path) -> dict:
    """The meta of the pretraining in ``run_dir``: a new one, or the one a rerun continues (same config)."""
    if (run_dir / META).is_file():
        meta = json.loads((run_dir / META).read_text(encoding="utf-8"))
        if "pretrain" not in meta:
            raise OmnifuseError(
                f"Expected --out to be a pretraining run or a new folder. Received: '{run_dir}'"
            )
        old = _compared(read_toml(run_dir / CONFIG))
        new = _compared(cfg.to_dict())
        if old != new:
            differ = [k for k in new if old.get(k) != new[k]]
            raise OmnifuseError(
                f"Run directory '{run_dir}' holds a pretraining of another config (its {', '.join(differ)} "
                "differ). Expected the same config to continue it, or another --out"
            )
        return meta
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / CONFIG, cfg.to_toml())
    return {}


# modality kind -> its pretraining objective: check(cfg) (its config can be pretrained), setup(cfg, samples,
# run_dir, seed) -> (vocabulary or None, encoder, model, loss, stream, steps, encoder name, input shape)
OBJECTIVES = {"text": text, "image": image}


def _modality(cfg: Config, modalities: dict[str, str]) -> tuple[str, str]:
    """The modality to pretrain (``pretrain.modality``, or the data's only text or image one) and its kind."""
    able = {m: k for m, k in modalities.items() if k in checkpoint.PRETRAINABLE}
    wanted = cfg.pretrain.modality
    if wanted:
        if wanted not in able:
            raise OmnifuseError(
                f"Expected pretrain.modality to be a text or image modality of the data. Received: {wanted!r}. "
                f"Those the data has: {', '.join(able) or 'none'}"
            )
        return wanted, able[wanted]
    if len(able) != 1:
        raise OmnifuseError(
            "Expected pretrain.modality to name the modality to pretrain. Received: '' with "
            + (
                f"{len(able)} text or image modalities ({', '.join(able)})"
                if able
                else "no text or image modality"
            )
        )
    return next(iter(able.items()))


def samples(prepared: pipeline.Prepared, name: str, limit: int, seed: int) -> np.ndarray:
    """The modality's inputs in every part's training split and unlabelled samples (those present), at most
    ``limit`` of them (a seeded choice; 0 = all)."""
    chunks = []
    for part in prepared.parts:
        for split in (part.train, part.unlabeled):
            if split is None or name not in split.inputs:
                continue
            present = split.masks.get(name, np.ones(len(split), np.float32)) > 0
            chunks.append(np.asarray(split.inputs[name])[present])
    found = np.concatenate(chunks) if chunks else np.zeros(0)
    if limit and limit < len(found):
        found = found[np.sort(np.random.default_rng(seed).permutation(len(found))[:limit])]
    if found.ndim == 3:  # grayscale images (N, H, W)
        found = found[..., None]
    return found


class _EncoderCheckpoint(keras.callbacks.Callback):
    """After each epoch: the encoder's variables into ``encoder.npz`` and the progress into ``meta.json``."""

    def __init__(self, run_dir: Path, encoder, meta: dict):
        super().__init__()
        self.run_dir, self.encoder, self.meta = run_dir, encoder, meta

    def on_epoch_end(self, epoch, logs=None):
        checkpoint.write(self.run_dir, self.encoder)
        progress = self.meta.setdefault("progress", {})
        progress["epochs_done"] = epoch + 1
        progress["pretrain_seconds"] = round(
            progress.get("pretrain_seconds", 0.0) + (logs or {}).get("epoch_seconds", 0.0), 3
        )
        if logs and "loss" in logs:
            progress["loss"] = round(float(logs["loss"]), 6)
        atomic_write_text(self.run_dir / META, json.dumps(self.meta, indent=2))


def _epochs_backed_up(run_dir: Path) -> int:
    path = run_dir / BACKUP / "training_metadata.json"
    return int(json.loads(path.read_text(encoding="utf-8"))["epoch"]) if path.is_file() else 0


def pretrain(
    cfg: Config,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    callbacks: list | None = None,
) -> Path:
    """Pretrain ``cfg``'s encoder of ``pretrain.modality`` into ``run_dir`` (default :func:`default_dir`), or
    continue the unfinished pretraining there; the run directory."""
    p = cfg.pretrain
    if p.epochs < 1 or p.batch_size < 1 or p.limit < 0:
        raise OmnifuseError(
            "Expected pretrain.epochs >= 1, pretrain.batch_size >= 1 and pretrain.limit >= 0. "
            f"Received: {p.epochs}, {p.batch_size}, {p.limit}"
        )
    run_dir = Path(run_dir) if run_dir is not None else default_dir(cfg, runs_root)
    meta = _open(cfg, run_dir)
    if meta.get("progress", {}).get("finished"):
        print(f"Already pretrained: {run_dir} ({meta['progress']['epochs_done']} epochs)")
        return run_dir
    start = time.perf_counter()
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    name, kind = _modality(cfg, prepared.modalities)
    objective = OBJECTIVES[kind]
    objective.check(cfg)
    found = samples(prepared, name, p.limit, cfg.train.seed)
    if not len(found):
        raise OmnifuseError(
            f"No samples of modality {name!r} to pretrain on (training split and data.unlabeled)."
        )
    semi.record(prepared, meta)  # the unlabelled samples read, and the copies of test samples dropped
    done = _epochs_backed_up(run_dir)
    keras.utils.set_random_seed(cfg.train.seed + done)
    section = getattr(cfg.model, kind)
    vocabulary, encoder, model, loss, stream, steps, encoder_name, shape, facts = objective.setup(
        cfg, found, run_dir, cfg.train.seed + done
    )
    meta["pretrain"] = {
        "modality": name,
        "kind": kind,
        "encoder": encoder_name,
        "options": checkpoint.encoder_options(kind, encoder_name, section),
        "input_shape": shape,
        "samples": int(len(found)),
        "vocabulary_size": None if vocabulary is None else len(vocabulary),
        "steps_per_epoch": int(steps),
        **facts,
    }
    baseline = ""
    if (
        "unigram_entropy" in facts
    ):  # the loss of word frequencies alone: the language model's must get below it
        baseline = f" (word frequencies alone: a loss of {facts['unigram_entropy']} nats)"
    meta.setdefault("progress", {})["setup_seconds"] = round(time.perf_counter() - start, 3)
    if done == 0:  # the vocabulary a rerun reads back (learned once: the same ids whatever happens later)
        checkpoint.write(run_dir, encoder, vocabulary)
    atomic_write_text(run_dir / META, json.dumps(meta, indent=2))
    print(
        f"Pretraining the {encoder_name} encoder of {name!r} ({kind}) on {len(found)} samples, {steps} steps an "
        f"epoch" + (f", from epoch {done + 1}" if done else "") + f"{baseline}: {run_dir}",
        flush=True,
    )
    schedule = keras.optimizers.schedules.CosineDecay(p.learning_rate, decay_steps=p.epochs * steps)
    model.compile(optimizer=keras.optimizers.Adam(schedule, clipnorm=1.0), loss=loss)
    reconcile_metrics(run_dir / "metrics.csv", done)
    verbose = cfg.train.verbose
    fit_callbacks = [
        _EpochTimer(),
        _EncoderCheckpoint(run_dir, encoder, meta),
        keras.callbacks.BackupAndRestore(str(run_dir / BACKUP)),
        keras.callbacks.CSVLogger(str(run_dir / "metrics.csv"), append=done > 0),
        *epoch_lines(p.epochs, verbose),
        *(callbacks or []),
    ]
    if done < p.epochs:
        # train.eager as in a training: a pretraining of at most 12 steps left runs them eagerly, untraced
        model.run_eagerly = runs_eagerly(dataclasses.replace(cfg.train, epochs=p.epochs), steps, done)
        keras_compat.build_before_fit(model, stream.element_spec)  # the step traced once, not twice
        model.fit(
            stream,
            steps_per_epoch=steps,
            epochs=p.epochs,
            callbacks=fit_callbacks,
            verbose=fit_verbose(verbose),
        )
    meta["progress"]["finished"] = True
    atomic_write_text(run_dir / META, json.dumps(meta, indent=2))
    return run_dir
