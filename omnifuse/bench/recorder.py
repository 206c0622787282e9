"""The JSON record of one benchmark run: commit, hardware, versions, seed, per-epoch test accuracy and timings.

What the times mean (the same for omnifuse and the plain-Keras reference scripts, which use :class:`EpochRecorder`
too): an epoch's ``train_seconds`` is the span of ``fit``'s epoch; the test set is evaluated after it, timed apart
(``eval_seconds``); ``time_to_accuracy`` is the cumulative training time at the end of the first epoch whose test
accuracy reached the threshold (``null`` if none did); ``first_step_seconds`` (graph tracing and the first batch) and
``step_seconds`` (the median later step) are recorded apart. ``wall_seconds`` is the whole run after the imports
(data loading, training, evaluation), ``process_seconds`` the whole process as the harness saw it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.hardware import machine  # noqa: F401  (re-exported: the harness and references use it)
from omnifuse.rundir import atomic_write_text

FINAL_METRICS = ("accuracy", "macro_f1", "roc_auc")
# what a record keeps of a task's test-split calibration (omnifuse/evaluation/calibration.py): the run's temperature
# and the expected calibration error and log-likelihood before and after it
CALIBRATION_KEYS = ("temperature", "ece_before", "ece_after", "nll_before", "nll_after")


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (a temporary file beside it, then a rename): a reader never sees half
    a record or half a table, and an interrupted run leaves the old file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)
    return path


def write_json(path: str | Path, record: dict[str, Any]) -> Path:
    """A record as indented JSON, written atomically (NumPy scalars become plain numbers)."""
    return write_text(path, json.dumps(record, indent=2, default=_plain) + "\n")


def replace_region(path: Path, begin: str, end: str, body: str, new_file: str | None) -> bool:
    """Write ``body`` between the markers of ``path`` (atomically); False if the file or its markers are missing
    and ``new_file`` is None (else the file is created from ``new_file``, or the region appended)."""
    if path.is_file():
        text = path.read_text(encoding="utf-8")
    elif new_file is not None:
        text = new_file
    else:
        return False
    block = f"{begin}\n{body}\n{end}"
    i = text.find(begin)
    j = text.find(end, i + len(begin)) if i >= 0 else -1
    if i >= 0 and j >= 0:
        text = text[:i] + block + text[j + len(end) :]
    elif new_file is not None:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    else:
        return False
    write_text(path, text)
    return True


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Not JSON serialisable: {value!r}")


def stamp() -> str:
    """The UTC time as records name their files and invocations: ``20261129T065602Z``."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


# ------------------------------------------------------------------------------------------ the header


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _git(*args: str) -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def environment() -> dict[str, Any]:
    """Commit, hardware, OS and versions, as a record's header."""
    # dirty = tracked source changes; the files the harness itself rewrites (the tables, the records) do not count
    status = _git(
        "status",
        "--porcelain",
        "--untracked-files=no",
        "--",
        ".",
        ":!benchmarks/RESULTS.md",
        ":!README.md",
        ":!benchmarks/results",
    )
    versions = {
        "python": platform.python_version(),
        "keras": keras.__version__,
        "tensorflow": _version("tensorflow", "tensorflow-cpu"),
        "numpy": np.__version__,
    }
    backend = keras.backend.backend()
    for name in ("jax", "torch"):
        if backend == name or name in sys.modules:
            versions[name] = _version(name)
    return {
        "commit": {"sha": _git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)},
        "hardware": machine(),
        "os": platform.platform(),
        "versions": versions,
        "backend": backend,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


# ------------------------------------------------------------------------------------------ the epochs


def check_test_every(test_every: int) -> int:
    """``--test-every`` as given, or the error saying what it takes."""
    if test_every < 0:
        raise OmnifuseError(
            f"Expected --test-every of at least 0 (0: the last epoch only). Received: {test_every}"
        )
    return test_every


class EpochRecorder(keras.callbacks.Callback):
    """A Keras callback: after every epoch, the test accuracy per task (timed apart from training); per step, times.

    ``test_inputs``: what ``model.predict`` takes (arrays, a dict, or a tf.data stream of inputs);
    ``test_labels``: task -> int labels in the same order (-1 = no label for that task). A model with one output
    (not a dict) is scored on the single task given; one sigmoid unit counts as binary (p > 0.5 = class 1).
    ``test_every``: score after every that many epochs and after the last (0: after the last only); an epoch not
    scored records an empty ``test_accuracy``, so a time to accuracy counts from the epochs that were.
    """

    def __init__(
        self,
        test_inputs,
        test_labels: dict[str, np.ndarray],
        batch_size: int = 256,
        verbose: bool = True,
        test_every: int = 1,
    ):
        super().__init__()
        self.test_every = check_test_every(test_every)
        self.test_inputs = test_inputs
        self.test_labels = {k: np.asarray(v).reshape(-1) for k, v in test_labels.items()}
        # (Prepared) -> (inputs, labels): how to score the test set on the data training streams, when training
        # fits a model's head on cached features of frozen encoders (omnifuse/features.py)
        self.make_test = None
        self.batch_size = batch_size
        self.verbose = verbose
        self.epochs: list[dict[str, Any]] = []
        self.step_times: list[float] = []
        self.cumulative = 0.0
        # the record's commit and start are those of the code this process runs, taken before it trains (a
        # commit made while a long run trains must not be named as its code)
        self.environment = environment()

    def use_prepared(self, prepared) -> None:
        """Training fits on ``prepared`` (frozen encoders' features in place of their inputs): score on it too."""
        if self.make_test is not None:
            self.test_inputs, labels = self.make_test(prepared)
            self.test_labels = {k: np.asarray(v).reshape(-1) for k, v in labels.items()}

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_train_batch_begin(self, batch, logs=None):
        self._step_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        self.step_times.append(time.perf_counter() - self._step_start)

    def on_epoch_end(self, epoch, logs=None):
        train_seconds = time.perf_counter() - self._epoch_start
        self.cumulative += train_seconds
        start = time.perf_counter()
        last = epoch + 1 >= (self.params or {}).get("epochs", epoch + 1)
        scored = last or (self.test_every and (epoch + 1) % self.test_every == 0)
        accuracy, members = self._accuracies() if scored else ({}, {})
        row = {
            "epoch": epoch + 1,
            "train_seconds": round(train_seconds, 3),
            "cumulative_seconds": round(self.cumulative, 3),
            "eval_seconds": round(time.perf_counter() - start, 3),
            "test_accuracy": accuracy,
        }
        if members:  # an ensemble (model.members > 1): each member's own test accuracy, beside the ensemble's
            row["member_accuracy"] = members
        self.epochs.append(row)
        if self.verbose and scored:
            shown = ", ".join(f"{t} {100 * a:.2f}%" for t, a in accuracy.items())
            print(f"[bench] epoch {epoch + 1}: test {shown}; training {self.cumulative:.1f} s", flush=True)

    def test_accuracy(self) -> dict[str, float]:
        return self._accuracies()[0]

    def _accuracies(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Per task the test accuracy, and for an ensemble per task each member's (else an empty dict)."""
        from omnifuse.evaluation import member_accuracy

        is_stream = not isinstance(self.test_inputs, (np.ndarray, dict, list, tuple))
        kwargs = {} if is_stream else {"batch_size": self.batch_size}
        out = self.model.predict(self.test_inputs, verbose=0, **kwargs)
        if not isinstance(out, dict):
            out = {next(iter(self.test_labels)): out}
        accuracy = {}
        for task, labels in self.test_labels.items():
            probs, keep = np.asarray(out[task]), labels >= 0
            pred = (probs[:, 0] > 0.5).astype(int) if probs.shape[-1] == 1 else probs.argmax(axis=-1)
            accuracy[task] = float(np.mean(pred[keep] == labels[keep])) if keep.any() else float("nan")
        return accuracy, member_accuracy(out, self.test_labels)

    def summary(self, batch_size: int) -> dict[str, Any]:
        steady = self.step_times[1:]
        step = statistics.median(steady) if steady else None
        return {
            "epochs": self.epochs,
            "train_seconds": round(self.cumulative, 3),
            "steps": len(self.step_times),
            "first_step_seconds": round(self.step_times[0], 4) if self.step_times else None,
            "step_seconds": None if step is None else round(step, 4),
            "batch_size": batch_size,
            "samples_per_second": None if not step else round(batch_size / step, 1),
        }


def time_to_accuracy(epochs: list[dict[str, Any]], thresholds: Sequence[float]) -> dict[str, dict[str, Any]]:
    """Per task and threshold: cumulative training seconds when the test accuracy first reached it, else None."""
    tasks = list(dict.fromkeys(t for e in epochs for t in e["test_accuracy"]))
    return {
        task: {
            format(thr, "g"): next(
                (e["cumulative_seconds"] for e in epochs if e["test_accuracy"].get(task, -1.0) >= thr), None
            )
            for thr in thresholds
        }
        for task in tasks
    }


# ------------------------------------------------------------------------------------------ the record


def record_run(
    recorder: EpochRecorder,
    *,
    kind: str,
    seed: int,
    config: dict[str, Any],
    batch_size: int,
    final: dict[str, dict[str, Any]],
    wall_seconds: float,
    **extra: Any,
) -> dict[str, Any]:
    """The JSON record of one finished run (the harness adds the benchmark's name, label and thresholds)."""
    return {
        **recorder.environment,
        "kind": kind,
        "seed": seed,
        "config": config,
        **recorder.summary(batch_size),
        "final": {task: _final(m) for task, m in final.items()},
        "wall_seconds": round(wall_seconds, 3),
        **extra,
    }


def _final(metrics: dict[str, Any]) -> dict[str, Any]:
    """A task's final test metrics as a record keeps them, with its calibration where the evaluation gave one."""
    out = {k: metrics.get(k) for k in FINAL_METRICS}
    found = metrics.get("calibration")
    if isinstance(found, dict):
        out["calibration"] = {k: found.get(k) for k in CALIBRATION_KEYS}
    return out


def reference_parser(
    doc: str, epochs: float, batch_size: int, limit_train: int = 0
) -> argparse.ArgumentParser:
    """The command line every reference script takes: what the harness passes (``--seed``, ``--json``,
    ``--data-dir``, ``--epochs``) plus ``--batch-size`` and ``--limit-train``; a script adds its own options."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    # a float default (airbench's 9.9) takes fractions of an epoch
    parser.add_argument("--epochs", type=type(epochs), default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="write the benchmark record here")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument(
        "--limit-train", type=int, default=limit_train, help="train on N samples only (0: all)"
    )
    return parser


def finish_reference(
    args,
    recorder: EpochRecorder,
    task: str,
    final: dict[str, Any],
    started: float,
    params: int,
    **extra: Any,
) -> None:
    """What a reference script does at its end: print the test accuracy and, with ``--json``, write its record
    (``args``: the script's parsed arguments, with ``seed``, ``batch_size`` and ``json``; ``started``: its
    ``time.perf_counter()`` at the start; ``extra``: more fields of the record)."""
    print(f"test accuracy {100 * final['accuracy']:.2f}%")
    if args.json:
        record = record_run(
            recorder,
            kind="reference",
            seed=args.seed,
            config=vars(args),
            batch_size=args.batch_size,
            final={task: final},
            wall_seconds=time.perf_counter() - started,
            params=int(params),
            **extra,
        )
        write_json(args.json, record)
