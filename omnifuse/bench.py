"""Benchmarks: ``omnifuse bench NAME`` trains a preset (or each entry of a suite) over seeds, each run in a fresh
process, optionally alternating with a reference run; it writes one JSON record per run and regenerates the table.

Records: ``<results>/<name>/<timestamp>-<label>-seed<k>.json``. Tables (:mod:`omnifuse.bench_report`): the region of
``<results>/../RESULTS.md`` between ``<!-- bench:begin -->`` and ``<!-- bench:end -->`` and the README's summary,
rebuilt from every record under ``<results>`` (but ``<results>/<name>/superseded/``, where the records of a preset
whose recipe has since changed are kept); the rest of those files is hand-written and kept as it is.

What the times mean (the same for omnifuse and the plain-Keras reference scripts, which use :class:`EpochRecorder`
too): an epoch's ``train_seconds`` is the span of ``fit``'s epoch; the test set is evaluated after it, timed apart
(``eval_seconds``); ``time_to_accuracy`` is the cumulative training time at the end of the first epoch whose test
accuracy reached the threshold (``null`` if none did); ``first_step_seconds`` (graph tracing and the first batch) and
``step_seconds`` (the median later step) are recorded apart. ``wall_seconds`` is the whole run after the imports
(data loading, training, evaluation), ``process_seconds`` the whole process as the harness saw it.

>>> run_bench("cifar10-fast", seeds=3, compare="cifar10_cnn")   # as `omnifuse bench cifar10-fast --seeds 3 ...`
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse.bench_report import (  # noqa: F401  (re-exported: the tables are part of the bench API)
    BEGIN,
    END,
    POOLED,
    README_BEGIN,
    README_END,
    SUPERSEDED,
    compare_lines,
    final_accuracy,
    load_records,
    render_robustness,
    render_summary,
    render_table,
    update_results,
)
from omnifuse.errors import OmnifuseError
from omnifuse.rundir import atomic_write_json

# A suite is a named list of runs (label, preset, overrides) benchmarked together; add one with one line.
FSDD_SPEAKERS = (
    "george",
    "jackson",
    "lucas",
    "nicolas",
    "theo",
    "yweweler",
)  # the 6 speakers of FSDD's 2024 snapshot
FUSIONS = ("concat", "attention", "gated", "tensor", "cross_attention", "late")
# the ResNet of the step-overhead suite, on 6,000 CIFAR-10 images, as benchmarks/reference/resnet_torch.py builds it
STEP_RESNET = [
    "model.image.encoder=resnet",
    "model.image.resnet.widths=[64, 128, 256]",
    "model.image.resnet.blocks=1",
    "model.image.resnet.dense_units=256",
    "model.image.resnet.dropout=0.0",
    "model.fusion_dim=256",
    "data.limit_train=6000",
    "data.val_fraction=0.0",
    "train.epochs=2",
    "train.batch_size=128",
    "train.optimizer=adam",
    "train.learning_rate=1e-3",
    "train.schedule=constant",
    "train.early_stopping=0",
]
# cifar10-fast's recipe before 2026-11-30, as overrides of the preset: a 256-unit ReLU projection and a linear head
# with bias, lr 0.2 with momentum 0.9, weight decay 0.005, lookahead every 5 steps, BN biases at the common rate,
# float32
CIFAR_FAST_V1 = [
    "model.fusion_dim=256",
    "model.head_bias=true",
    "model.head_scale=1.0",
    "model.image.fastnet.bias_lr_scale=1.0",
    "train.momentum=0.9",
    "train.learning_rate=0.2",
    "train.weight_decay=0.005",
    "train.lookahead_every=5",
    "train.precision=float32",
]
SUITES: dict[str, list[tuple[str, str, list[str]]]] = {
    "cifar10": [("cnn", "cifar10-cnn", []), ("fast", "cifar10-fast", []), ("94", "cifar10-94", [])],
    # leave-one-speaker-out: each run tests on one speaker never heard in training
    "fsdd-loso": [(f"loso-{s}", "fsdd", [f"data.split=loso:{s}"]) for s in FSDD_SPEAKERS],
    # stratified 5-fold cross-validation: each run tests on one fold (fold suites are listed in bench_report.POOLED)
    "brain-mri-cv": [(f"fold{k}", "brain-mri", [f"data.fold={k}"]) for k in range(5)],
    # each single modality, every fusion, and attention fusion trained with modality dropout or with corruption
    # augmentation (per-subset and corruption accuracies land in each record under "robustness")
    "av-digits-fusions": [
        ("image-only", "av-digits", ["data.modalities=['image']"]),
        ("audio-only", "av-digits", ["data.modalities=['audio']"]),
        *[(fusion, "av-digits", [f"model.fusion={fusion}"]) for fusion in FUSIONS],
        ("attention-dropout", "av-digits", ["model.fusion=attention", "train.modality_dropout=0.5"]),
        ("attention-noise", "av-digits", ["model.fusion=attention", "train.modality_noise=0.5"]),
        # more single-modality samples: each modality dropped with p = 0.7 - 0.7**2 / 2 = 0.455, both kept in 9%
        ("attention-dropout70", "av-digits", ["model.fusion=attention", "train.modality_dropout=0.7"]),
        # modality dropout plus each modality's own auxiliary head, so no encoder leans on the other
        (
            "attention-dropout-unimodal",
            "av-digits",
            ["model.fusion=attention", "train.modality_dropout=0.5", "train.unimodal_loss=0.5"],
        ),
        # projections at unit scale, so only the weights can turn a modality down; with corruption augmentation
        (
            "attention-norm-noise",
            "av-digits",
            ["model.fusion=attention", "model.fusion_normalize=true", "train.modality_noise=0.5"],
        ),
    ],
    # the training step's speed against a plain PyTorch loop (benchmarks/reference/resnet_torch.py trains the same
    # network on the same 6,000 images with the same batch, augmentation and optimizer):
    #   omnifuse bench step-overhead --compare resnet_torch
    # "v2": measured since a one-modality model runs its encoder without the modality-skip conditional (the
    # records labelled "resnet" measured the step with it); "-xla" with train.jit_compile
    "step-overhead": [
        ("resnet-v2", "cifar10-cnn", STEP_RESNET),
        ("resnet-v2-xla", "cifar10-cnn", [*STEP_RESNET, "train.jit_compile=true"]),
    ],
    # cifar10-fast's recipe before 2026-11-30 ("v1"), alone and with the changes tried on it one by one; the preset
    # itself is v1 with all of them ("airbench-hyp", which measured 91.95 +- 0.04% here over 3 seeds)
    "cifar10-fast-variants": [
        ("v1", "cifar10-fast", CIFAR_FAST_V1),
        # the layers computing in bfloat16 (variables, heads float32): the same recipe, faster steps on CPUs with
        # AMX or AVX512-BF16
        ("bfloat16", "cifar10-fast", [*CIFAR_FAST_V1, "train.precision=bfloat16"]),
        # BN biases learning 64 times faster (airbench's bias_scaler), in bfloat16
        (
            "bias64",
            "cifar10-fast",
            [*CIFAR_FAST_V1, "train.precision=bfloat16", "model.image.fastnet.bias_lr_scale=64"],
        ),
        # airbench94's parametrisation translated to batches of 256 (its lr 11.5, momentum 0.85, wd 0.0153 per
        # 1024 images and summed loss): a bias-free linear head right on the features with logits times 1/9, BN
        # biases at 64x the learning rate, the same step and weight-decay sizes per image, and lookahead syncs
        # every 20 steps (every 5,120 images, as its every 5 steps of 1,024), in bfloat16 as measured; the preset since
        # 2026-11-30 (whose precision is "auto")
        ("airbench-hyp", "cifar10-fast", ["train.precision=bfloat16"]),
    ],
    # imdb-bigru with lookahead weight averaging (it lifted PneumoniaMNIST's test accuracy), and with more dropout
    "imdb-bigru-variants": [
        # each position also reads a learned embedding of its word pair (500,000 hashed buckets), with dropout 0.5
        (
            "bigrams",
            "imdb-bigru",
            ["model.text.rnn.dropout=0.5", "model.text.rnn.bigram_buckets=500000"],
        ),
        ("lookahead", "imdb-bigru", ["train.lookahead=0.9"]),
        ("dropout-lookahead", "imdb-bigru", ["train.lookahead=0.9", "model.text.rnn.dropout=0.5"]),
        # two epochs, as the best single run so far (89.76%), with the averaging ramped over those two
        (
            "dropout-lookahead-2ep",
            "imdb-bigru",
            ["train.lookahead=0.9", "model.text.rnn.dropout=0.5", "train.epochs=2"],
        ),
        # max and mean over time, with whole words dropped in training, or with more dropout
        (
            "maxmean-worddrop",
            "imdb-bigru",
            ["model.text.rnn.pooling=maxmean", "model.text.rnn.word_dropout=0.2"],
        ),
        ("maxmean-dropout", "imdb-bigru", ["model.text.rnn.pooling=maxmean", "model.text.rnn.dropout=0.5"]),
        # the best single run's settings (dropout 0.5, 2 epochs) on all 25,000 training reviews, no hold-out
        (
            "dropout-2ep-full",
            "imdb-bigru",
            ["model.text.rnn.dropout=0.5", "train.epochs=2", "data.val_fraction=0.0"],
        ),
        # dropout 0.5 with decoupled weight decay, mostly on the 3.8 M embedding weights the net overfits with
        (
            "dropout-adamw",
            "imdb-bigru",
            ["model.text.rnn.dropout=0.5", "train.optimizer=adamw", "train.weight_decay=0.05"],
        ),
        # dropout 0.5 with a wider front end: 256-dimensional embeddings, 128 convolution filters
        (
            "dropout-wide",
            "imdb-bigru",
            ["model.text.rnn.dropout=0.5", "model.text.rnn.embed_dim=256", "model.text.rnn.conv_filters=128"],
        ),
        # the wider front end reading 100,000 words instead of 30,000 (rarer sentiment words get their own vector)
        (
            "dropout-wide-vocab100k",
            "imdb-bigru",
            [
                "model.text.rnn.dropout=0.5",
                "model.text.rnn.embed_dim=256",
                "model.text.rnn.conv_filters=128",
                "model.text.vocab_size=100000",
            ],
        ),
        # the convolution pooling 2 words per recurrent step instead of 4 (400 steps for 800 tokens)
        ("dropout-pool2", "imdb-bigru", ["model.text.rnn.dropout=0.5", "model.text.rnn.conv_pool=2"]),
    ],
    # imdb-bigru-ensemble with five members (the preset's own number since it was measured so: its records), and
    # with the three of the preset's first recipe (its records in results/imdb-bigru-ensemble/superseded/)
    "imdb-bigru-ensemble-variants": [
        ("members5", "imdb-bigru-ensemble", ["model.members=5"]),
        ("members3", "imdb-bigru-ensemble", ["model.members=3"]),
        # the preset with batches of random reviews, padded to 800 tokens (as every run before data.length_buckets)
        ("random-batches", "imdb-bigru-ensemble", ["data.length_buckets=0"]),
    ],
    # imdb-ensemble with batches of random reviews, padded to 800 tokens (as every run before data.length_buckets)
    "imdb-ensemble-variants": [("random-batches", "imdb-ensemble", ["data.length_buckets=0"])],
    # imdb-nbsvm keeping the 3 million most frequent 1-3-grams instead of 1 million
    "imdb-nbsvm-variants": [("vocab3m", "imdb-nbsvm", ["model.text.nb.vocab_size=3000000"])],
    # PneumoniaMNIST variants beside the preset (records in their own rows): the test set has 62.5% pneumonia,
    # train and val 74%, so class weighting moves the decision threshold the paper's ACC is taken at
    "pneumonia-variants": [
        ("augment", "pneumonia", ["model.image.augment=true"]),
        ("augment-balanced", "pneumonia", ["model.image.augment=true", "train.class_weight=balanced"]),
        # plus lookahead weight averaging: the kept epoch's weights are a slow average of the recent ones
        (
            "augment-balanced-lookahead",
            "pneumonia",
            ["model.image.augment=true", "train.class_weight=balanced", "train.lookahead=0.9"],
        ),
    ],
}
DEFAULT_THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94)
REFERENCE_DIR = Path("benchmarks") / "reference"
FINAL_METRICS = ("accuracy", "macro_f1", "roc_auc")


@dataclass(frozen=True)
class Entry:
    """One kind of run: an omnifuse preset (or .toml) with overrides, or a reference script."""

    label: str
    kind: str  # "omnifuse" | "reference"
    target: str  # preset name or .toml path; or the script's path
    overrides: tuple[str, ...] = ()


# ------------------------------------------------------------------------------------------ what to run


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def bench_name(name: str) -> str:
    """The folder name of a benchmark: the preset or suite name (``SUITE:LABELS`` is its suite's), or a config
    file's stem."""
    if name.endswith((".toml", ".py")):
        return Path(name).stem
    return name.partition(":")[0] if name.partition(":")[0] in SUITES else name


def resolve(name: str) -> list[Entry]:
    """The runs that NAME stands for: a suite's entries (``SUITE:LABEL,LABEL`` for some of them), or one preset /
    .toml config."""
    from omnifuse.config import presets

    suite, _, labels = name.partition(":")
    if labels and suite in SUITES:
        wanted = [label.strip() for label in labels.split(",") if label.strip()]
        entries = {e.label: e for e in resolve(suite)}
        unknown = [label for label in wanted if label not in entries]
        if unknown or not wanted:
            raise OmnifuseError(
                f"Expected labels of suite {suite!r} after the colon. Received: {labels!r}. "
                f"Labels: {', '.join(entries)}"
            )
        return [entries[label] for label in wanted]
    if name in SUITES:
        return [Entry(label, "omnifuse", preset, tuple(o)) for label, preset, o in SUITES[name]]
    if name in presets() or (name.endswith(".toml") and Path(name).is_file()):
        return [Entry(bench_name(name), "omnifuse", name)]
    raise OmnifuseError(
        f"Expected a preset, a .toml config, a suite or 'serve'. Received: {name!r}. "
        f"Presets: {', '.join(presets())}. Suites: {', '.join(sorted(SUITES))}"
    )


def reference_scripts() -> list[Path]:
    """The plain-Keras reference scripts (``benchmarks/reference/*.py`` here or beside the package)."""
    for root in (Path.cwd(), _repo_root()):
        folder = root / REFERENCE_DIR
        if folder.is_dir():
            return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    return []


def resolve_reference(ref: str) -> list[Entry]:
    """A reference: a script (``cifar10_cnn``, ``cifar10_cnn.py`` or a path to a .py file), a preset, a suite, or
    one entry of a suite as ``SUITE:LABEL``."""
    scripts = {p.stem: p for p in reference_scripts()}
    path = Path(ref)
    if path.suffix == ".py" and path.is_file():
        return [Entry(f"keras-{path.stem}", "reference", str(path.resolve()))]
    if ref.removesuffix(".py") in scripts:
        script = scripts[ref.removesuffix(".py")]
        return [Entry(f"keras-{script.stem}", "reference", str(script))]
    suite, _, label = ref.partition(":")
    if label and suite in SUITES:
        chosen = [e for e in resolve(suite) if e.label == label]
        if not chosen:
            labels = ", ".join(e.label for e in resolve(suite))
            raise OmnifuseError(
                f"Expected a label of suite {suite!r} in --compare. Received: {label!r}. Labels: {labels}"
            )
        return chosen
    try:
        return resolve(ref)
    except OmnifuseError:
        raise OmnifuseError(
            f"Expected --compare to name a reference script, a .py file, a preset or a suite. Received: {ref!r}. "
            f"Reference scripts: {', '.join(scripts) or '(none found)'}"
        ) from None


def parse_thresholds(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        values = ()
    if not values or any(not 0 < v <= 1 for v in values):
        raise OmnifuseError(
            f"Expected --thresholds as accuracies in (0, 1], e.g. 0.80,0.85,0.88. Received: {text!r}"
        )
    return tuple(sorted(values))


# ------------------------------------------------------------------------------------------ measuring one run


def _version(*names: str) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(_repo_root()), *args], capture_output=True, text=True, timeout=20, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _machine() -> dict[str, Any]:
    """The CPU model and the cores this process may use (and the machine has)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count()
    return {"cpu": _cpu_model(), "cores": cores, "cpu_count": os.cpu_count()}


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
        "hardware": _machine(),
        "os": platform.platform(),
        "versions": versions,
        "backend": backend,
        "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


class EpochRecorder(keras.callbacks.Callback):
    """A Keras callback: after every epoch, the test accuracy per task (timed apart from training); per step, times.

    ``test_inputs``: what ``model.predict`` takes (arrays, a dict, or a tf.data stream of inputs);
    ``test_labels``: task -> int labels in the same order (-1 = no label for that task). A model with one output
    (not a dict) is scored on the single task given; one sigmoid unit counts as binary (p > 0.5 = class 1).
    """

    def __init__(
        self, test_inputs, test_labels: dict[str, np.ndarray], batch_size: int = 256, verbose: bool = True
    ):
        super().__init__()
        self.test_inputs = test_inputs
        self.test_labels = {k: np.asarray(v).reshape(-1) for k, v in test_labels.items()}
        self.batch_size = batch_size
        self.verbose = verbose
        self.epochs: list[dict[str, Any]] = []
        self.step_times: list[float] = []
        self.cumulative = 0.0
        # the record's commit and start are those of the code this process runs, taken before it trains (a
        # commit made while a long run trains must not be named as its code)
        self.environment = environment()

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
        accuracy, members = self._accuracies()
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
        if self.verbose:
            shown = ", ".join(f"{t} {100 * a:.2f}%" for t, a in accuracy.items())
            print(f"[bench] epoch {epoch + 1}: test {shown}; training {self.cumulative:.1f} s", flush=True)

    def test_accuracy(self) -> dict[str, float]:
        return self._accuracies()[0]

    def _accuracies(self) -> tuple[dict[str, float], dict[str, list[float]]]:
        """Per task the test accuracy, and for an ensemble per task each member's (else an empty dict)."""
        from omnifuse.metrics import member_accuracy, task_accuracy

        is_stream = not isinstance(self.test_inputs, (np.ndarray, dict, list, tuple))
        kwargs = {} if is_stream else {"batch_size": self.batch_size}
        out = self.model.predict(self.test_inputs, verbose=0, **kwargs)
        if not isinstance(out, dict):
            out = {next(iter(self.test_labels)): out}
        found = task_accuracy(out, self.test_labels)
        accuracy = {task: float("nan") if value is None else value for task, value in found.items()}
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
        "final": {task: {k: m.get(k) for k in FINAL_METRICS} for task, m in final.items()},
        "wall_seconds": round(wall_seconds, 3),
        **extra,
    }


def reference_parser(doc: str, epochs: int, batch_size: int, limit_train: int = 0) -> argparse.ArgumentParser:
    """The command line every reference script takes: what the harness passes (``--seed``, ``--json``,
    ``--data-dir``, ``--epochs``) plus ``--batch-size`` and ``--limit-train``; a script adds its own options."""
    parser = argparse.ArgumentParser(description=doc.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--json", default=None, help="write the benchmark record here")
    parser.add_argument("--batch-size", type=int, default=batch_size)
    parser.add_argument(
        "--limit-train", type=int, default=limit_train, help="train on N samples only (0: all)"
    )
    return parser


def finish_reference(
    args, recorder: EpochRecorder, task: str, final: dict[str, Any], started: float, params: int
) -> None:
    """What a reference script does at its end: print the test accuracy and, with ``--json``, write its record
    (``args``: the script's parsed arguments, with ``seed``, ``batch_size`` and ``json``; ``started``: its
    ``time.perf_counter()`` at the start)."""
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
        )
        write_json(args.json, record)


def write_json(path: str | Path, record: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, record, default=_plain)


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"Not JSON serialisable: {value!r}")


def _test_stream(prepared, batch_size: int):
    """Every test split as one stream of model inputs, and per task the labels in the same order."""
    from omnifuse import pipeline

    # each split's samples shortest text first (accuracy does not depend on the order): a recurrent text encoder
    # then runs as many steps as each batch's longest text
    tests = []
    for part in prepared.parts:
        texts = pipeline.text_inputs(part.test.inputs, prepared.modalities)
        tests.append(part.test.take(pipeline.length_order(texts)) if texts else part.test)
    ds, _ = pipeline.stream(prepared, tests, batch_size=batch_size)
    labels = {
        task: np.concatenate(
            [np.asarray(s.labels.get(task, np.full(len(s), -1)), dtype=np.int64) for s in tests if len(s)]
        )
        for task in prepared.tasks
    }
    return ds.map(lambda x, y: x), labels


def run_one(
    target: str,
    seed: int,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    runs_root: str | Path = Path("runs") / "bench",
) -> dict[str, Any]:
    """Train and evaluate ``target`` (a preset or .toml) with ``train.seed = seed`` in this process; the record."""
    start = time.perf_counter()
    from omnifuse import pipeline
    from omnifuse.config import load_config
    from omnifuse.evaluation import evaluate
    from omnifuse.precision import check_precision
    from omnifuse.training import load_datasets, train

    cfg = load_config(target, ["train.verbose=2", *overrides, f"train.seed={seed}"])
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    inputs, labels = _test_stream(prepared, max(256, cfg.train.batch_size))
    del prepared
    recorder = EpochRecorder(inputs, labels)
    run_dir = train(cfg, runs_root=runs_root, data_dir=data_dir, callbacks=[recorder])
    metrics = evaluate(run_dir, data_dir=data_dir)
    return record_run(
        recorder,
        kind="omnifuse",
        seed=seed,
        config=cfg.to_dict(),
        batch_size=cfg.train.batch_size,
        final=metrics["tasks"],
        wall_seconds=time.perf_counter() - start,
        run_dir=str(run_dir),
        precision=check_precision(cfg.train.precision),  # what "auto" became on this machine
        **({"robustness": metrics["robustness"]} if metrics.get("robustness") else {}),
    )


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


# ------------------------------------------------------------------------------------------ the harness


def _stamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def _command(entry: Entry, seed: int, out: Path, data_dir, ref_epochs, runs_root) -> list[str]:
    if entry.kind == "reference":
        cmd = [sys.executable, entry.target, "--seed", str(seed), "--json", str(out)]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        if ref_epochs:
            cmd += ["--epochs", str(ref_epochs)]
        return cmd + list(entry.overrides)  # a reference's extra arguments
    cmd = [
        sys.executable,
        "-m",
        "omnifuse.bench",
        "--one",
        entry.target,
        "--seed",
        str(seed),
        "--out",
        str(out),
    ]
    cmd += ["--runs-root", str(runs_root)]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    for item in entry.overrides:
        cmd += ["--set", item]
    return cmd


def _run_entry(
    entry: Entry, seed: int, folder: Path, meta: dict[str, Any], options: dict[str, Any], echo
) -> dict:
    out = folder / f"{_stamp()}-{entry.label}-seed{seed}.json"
    cmd = _command(entry, seed, out, options["data_dir"], options["ref_epochs"], options["runs_root"])
    echo(f"[bench] {meta['name']}: {entry.label}, seed {seed} ({entry.kind})")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise OmnifuseError(f"Benchmark run failed (exit code {proc.returncode}): {' '.join(cmd)}")
    record = json.loads(out.read_text(encoding="utf-8"))
    record.setdefault("hardware", _machine())  # a script that writes no header still ran on this machine
    record.update(
        name=meta["name"],
        label=entry.label,
        role=meta["role"],
        references=meta["references"],
        invocation=meta["invocation"],
        target=entry.target if entry.kind == "omnifuse" else Path(entry.target).name,
        overrides=list(entry.overrides),
        thresholds=list(options["thresholds"]),
        time_to_accuracy=time_to_accuracy(record.get("epochs", []), options["thresholds"]),
        process_seconds=round(seconds, 3),
    )
    write_json(out, record)
    return record


def _with_args(label: str, args: Sequence[str]) -> str:
    """A reference's label with its extra arguments: ``keras-resnet_torch+channels-last``."""
    return "+".join([label, *(a.lstrip("-").replace("=", "-") for a in args)])


def run_bench(
    name: str,
    seeds: int = 1,
    compare: str | None = None,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    results: str | Path = Path("benchmarks") / "results",
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    ref_epochs: int | None = None,
    ref_args: Sequence[str] = (),
    runs_root: str | Path = Path("runs") / "bench",
    echo: Callable[[str], None] = print,
    first_seed: int = 0,
) -> list[dict[str, Any]]:
    """Run NAME's entries for seeds first_seed..first_seed+seeds-1 (each run a fresh process), alternating with
    ``compare``'s runs;
    write the records, regenerate the results table, print the comparison; return this invocation's records.

    ``overrides`` apply to every omnifuse run of the invocation (NAME's, and a preset given as ``compare``).
    ``ref_args`` are passed on to a reference script, and its label names them (``keras-resnet_torch+channels-last``).
    """
    if seeds < 1:
        raise OmnifuseError(f"Expected --seeds of at least 1. Received: {seeds}")
    # runs on another Keras backend than TensorFlow (KERAS_BACKEND=jax) get their own label, so their records are
    # never averaged with TensorFlow's
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    suffix = "" if backend == "tensorflow" else f"+{backend}"
    entries = [Entry(e.label + suffix, e.kind, e.target, (*e.overrides, *overrides)) for e in resolve(name)]
    refs = []
    if ref_args and not compare:
        raise OmnifuseError("--ref-arg needs --compare naming a reference script.")
    if compare:
        refs = [
            Entry(r.label + suffix, r.kind, r.target, (*r.overrides, *overrides))
            if r.kind == "omnifuse"
            else Entry(_with_args(r.label, ref_args), r.kind, r.target, tuple(ref_args))
            for r in resolve_reference(compare)
        ]
        if ref_args and not any(r.kind == "reference" for r in refs):
            raise OmnifuseError(f"--ref-arg is for a reference script; --compare {compare!r} names none.")
        clash = {e.label for e in entries} & {r.label for r in refs}
        if clash:
            refs = [Entry(f"ref-{r.label}", r.kind, r.target, r.overrides) for r in refs]
    results = Path(results)
    folder = results / bench_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    invocation = _stamp()
    options = {
        "data_dir": data_dir,
        "ref_epochs": ref_epochs,
        "runs_root": Path(runs_root) / bench_name(name),
        "thresholds": tuple(thresholds),
    }
    ref_labels = [r.label for r in refs]
    main = {"name": bench_name(name), "role": "main", "references": ref_labels, "invocation": invocation}
    reference = {**main, "role": "reference", "references": []}
    records = []
    if first_seed < 0:
        raise OmnifuseError(f"Expected --first-seed of at least 0. Received: {first_seed}")
    for seed in range(first_seed, first_seed + seeds):
        for entry in entries:
            records.append(_run_entry(entry, seed, folder, main, options, echo))
        for ref in refs:
            records.append(_run_entry(ref, seed, folder, reference, options, echo))
    path = update_results(results)
    for line in compare_lines(records):
        echo(line)
    echo(f"[bench] {len(records)} record(s) in {folder}; table regenerated in {path}")
    return records


def run_serve(
    run_dir: str | Path | None,
    options: Sequence[str] = (),
    results: str | Path = Path("benchmarks") / "results",
    echo: Callable[[str], None] = print,
) -> dict[str, Any]:
    """``omnifuse bench serve --run RUN_DIR [--set requests=100 ...]``: the serving benchmark of
    ``omnifuse.serving.bench.run(run_dir, **options)``, its record written to ``<results>/serve/`` with the usual
    header (commit, hardware, versions). The training table leaves these records out."""
    from omnifuse.config import apply_overrides

    if run_dir is None:
        raise OmnifuseError("Expected --run RUN_DIR (a trained run to serve) for `omnifuse bench serve`.")
    keys = [item.split("=", 1)[0].strip() for item in options]
    kwargs = apply_overrides(dict.fromkeys(keys), list(options))
    try:
        module = importlib.import_module("omnifuse.serving.bench")
    except ModuleNotFoundError as exc:
        if exc.name not in ("omnifuse.serving", "omnifuse.serving.bench"):
            raise
        raise OmnifuseError(
            "Expected the serving benchmark module omnifuse.serving.bench for `omnifuse bench serve`. "
            "Received: no such module in this installation"
        ) from None
    started = environment()
    record = module.run(run_dir, **kwargs)
    record = {
        **started,
        **record,
        "name": "serve",
        "label": Path(run_dir).name,
        "kind": "serve",
        "options": kwargs,
    }
    out = Path(results) / "serve" / f"{_stamp()}-{Path(run_dir).name}.json"
    write_json(out, record)
    echo(f"[bench] serving record: {out}")
    return record


# ------------------------------------------------------------------------------------------ python -m omnifuse.bench


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m omnifuse.bench",
        description="One benchmark run in this process (--one), or regenerate the table (--table RESULTS_DIR).",
    )
    parser.add_argument("--one", metavar="PRESET", help="preset or .toml to train and evaluate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="where to write the JSON record")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--data-dir")
    parser.add_argument("--runs-root", default=str(Path("runs") / "bench"))
    parser.add_argument(
        "--table", metavar="RESULTS_DIR", help="regenerate RESULTS_DIR/../RESULTS.md and exit"
    )
    args = parser.parse_args(argv)
    try:
        if args.table:
            print(update_results(args.table))
            return 0
        if not args.one or not args.out:
            parser.error("--one PRESET and --out FILE are required (or --table RESULTS_DIR)")
        record = run_one(args.one, args.seed, args.overrides, args.data_dir, args.runs_root)
        write_json(args.out, record)
    except OmnifuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
