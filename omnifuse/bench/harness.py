"""Running a benchmark: ``omnifuse bench NAME`` trains a preset (or each entry of a suite) over seeds, each run in a
fresh process (``python -m omnifuse.bench --one ...``), alternating with a reference's runs seed by seed; it writes
one JSON record per run (:mod:`omnifuse.bench.recorder`) and regenerates the tables (:mod:`omnifuse.bench.report`).

Records: ``<results>/<name>/<timestamp>-<label>-seed<k>.json``.

>>> run_bench("cifar10-fast", seeds=3, compare="cifar10_cnn")   # as `omnifuse bench cifar10-fast --seeds 3 ...`
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import omnifuse
from omnifuse import quiet
from omnifuse.bench.recorder import (
    EpochRecorder,
    check_test_every,
    environment,
    machine,
    record_run,
    stamp,
    time_to_accuracy,
    write_json,
)
from omnifuse.bench.report import compare_lines, update_results
from omnifuse.bench.suites import Entry, bench_name, resolve, resolve_reference
from omnifuse.errors import OmnifuseError

DEFAULT_THRESHOLDS = (0.80, 0.85, 0.88, 0.90, 0.92, 0.93, 0.94)


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


# ------------------------------------------------------------------------------------------ one run, in its process


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
    pretrain: bool = False,
    test_every: int = 1,
) -> dict[str, Any]:
    """Train and evaluate ``target`` (a preset or .toml) with ``train.seed = seed`` in this process; the record.
    ``pretrain``: first pretrain the config's encoder (``omnifuse pretrain``) and train from it; the record's
    ``pretrain`` holds that part's time apart. ``test_every``: see :class:`EpochRecorder`."""
    start = time.perf_counter()
    from omnifuse import pipeline
    from omnifuse.config import load_config
    from omnifuse.data.catalog import load_datasets
    from omnifuse.evaluation import evaluate
    from omnifuse.precision import check_precision
    from omnifuse.training import train

    cfg = load_config(target, ["train.verbose=2", *overrides, f"train.seed={seed}"])
    pretrained = _pretrain(cfg, data_dir, runs_root) if pretrain else {}
    if pretrained:
        cfg = cfg.replace({f"model.{pretrained['kind']}.init": pretrained["run_dir"]})
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    test_batch = max(256, cfg.train.batch_size)
    inputs, labels = _test_stream(prepared, test_batch)
    del prepared
    recorder = EpochRecorder(inputs, labels, test_every=test_every)
    recorder.make_test = lambda fitted: _test_stream(fitted, test_batch)
    run_dir = train(cfg, runs_root=runs_root, data_dir=data_dir, callbacks=[recorder])
    # the record keeps the metrics (and robustness curves), not the report's explained worst samples, which cost
    # more than the rest of a small run's evaluation (`omnifuse evaluate RUN` adds them when wanted)
    metrics = evaluate(run_dir, data_dir=data_dir, worst_samples=False)
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
        **({"pretrain": pretrained} if pretrained else {}),
    )


def _pretrain(cfg, data_dir: str | None, runs_root: str | Path) -> dict[str, Any]:
    """``omnifuse pretrain`` of ``cfg`` into a new folder of ``runs_root``; what the record says of it."""
    from omnifuse.pretrain.run import pretrain
    from omnifuse.rundir import free_run_dir, read_meta

    start = time.perf_counter()
    run = pretrain(cfg, run_dir=free_run_dir(runs_root, f"{cfg.name}-pretrained"), data_dir=data_dir)
    meta = read_meta(run)
    return {
        "run_dir": str(run),
        "kind": meta["pretrain"]["kind"],
        "samples": meta["pretrain"]["samples"],
        "epochs": meta["progress"]["epochs_done"],
        "loss": meta["progress"].get("loss"),
        "train_seconds": meta["progress"].get("pretrain_seconds"),
        "wall_seconds": round(time.perf_counter() - start, 3),
    }


# ------------------------------------------------------------------------------------------ the harness


def _command(
    entry: Entry, seed: int, out: Path, data_dir, ref_epochs, runs_root, test_every: int = 1
) -> list[str]:
    if entry.kind == "reference":
        cmd = [sys.executable, entry.target, "--seed", str(seed), "--json", str(out)]
        if data_dir:
            cmd += ["--data-dir", str(data_dir)]
        if ref_epochs:
            cmd += ["--epochs", format(ref_epochs, "g")]  # 2.0 -> "2" for a script counting whole epochs
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
    if entry.pretrain:
        cmd.append("--pretrain")
    if test_every != 1:
        cmd += ["--test-every", str(test_every)]
    if data_dir:
        cmd += ["--data-dir", str(data_dir)]
    for item in entry.overrides:
        cmd += ["--set", item]
    return cmd


def _run_entry(
    entry: Entry, seed: int, folder: Path, meta: dict[str, Any], options: dict[str, Any], echo
) -> dict:
    out = folder / f"{stamp()}-{entry.label}-seed{seed}.json"
    cmd = _command(
        entry,
        seed,
        out,
        options["data_dir"],
        options["ref_epochs"],
        options["runs_root"],
        options.get("test_every", 1),
    )
    echo(f"[bench] {meta['name']}: {entry.label}, seed {seed} ({entry.kind})")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != 0 or not out.is_file():
        raise OmnifuseError(f"Benchmark run failed (exit code {proc.returncode}): {' '.join(cmd)}")
    record = json.loads(out.read_text(encoding="utf-8"))
    record.setdefault("hardware", machine())  # a script that writes no header still ran on this machine
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


def run_progress(done: int, total: int, seconds: float) -> str:
    """``[bench] run 3 of 6, 4.2 min so far, about 4.2 min left``: the left time from the runs done so far."""
    line = f"[bench] run {done + 1} of {total}"
    if done:
        line += f", {seconds / 60:.1f} min so far, about {seconds / done * (total - done) / 60:.1f} min left"
    return line


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
    ref_epochs: float | None = None,
    ref_args: Sequence[str] = (),
    runs_root: str | Path = Path("runs") / "bench",
    echo: Callable[[str], None] = print,
    first_seed: int = 0,
    test_every: int = 1,
) -> list[dict[str, Any]]:
    """Run NAME's entries for seeds first_seed..first_seed+seeds-1 (each run a fresh process), alternating with
    ``compare``'s runs; write the records, regenerate the tables, print the comparison; return this invocation's
    records.

    ``overrides`` apply to every omnifuse run of the invocation (NAME's, and a preset given as ``compare``).
    ``ref_args`` are passed on to a reference script, and its label names them (``keras-resnet_torch+channels-last``).
    ``test_every``: omnifuse's runs score the test set after every that many epochs and the last (0: the last only;
    a reference script scores as it does).
    """
    if seeds < 1:
        raise OmnifuseError(f"Expected --seeds of at least 1. Received: {seeds}")
    if first_seed < 0:
        raise OmnifuseError(f"Expected --first-seed of at least 0. Received: {first_seed}")
    check_test_every(test_every)  # here too: a bad value fails before any run starts
    from omnifuse.bench.loop import load_labelling, run_labelling

    if name in load_labelling():  # a [loops.NAME] or [audits.NAME]: heads on frozen features, in this process
        if compare or ref_args:
            raise OmnifuseError(f"--compare is not for {name!r}: its strategies run side by side already.")
        return run_labelling(name, seeds, data_dir, results, echo, first_seed, overrides)
    # runs on another Keras backend than TensorFlow (KERAS_BACKEND=jax) get their own label, so their records are
    # never averaged with TensorFlow's
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    suffix = "" if backend == "tensorflow" else f"+{backend}"
    entries = [
        Entry(e.label + suffix, e.kind, e.target, (*e.overrides, *overrides), e.pretrain)
        for e in resolve(name)
    ]
    refs = []
    if ref_args and not compare:
        raise OmnifuseError("--ref-arg needs --compare naming a reference script.")
    if compare:
        refs = [
            Entry(r.label + suffix, r.kind, r.target, (*r.overrides, *overrides), r.pretrain)
            if r.kind == "omnifuse"
            else Entry(_with_args(r.label, ref_args), r.kind, r.target, tuple(ref_args))
            for r in resolve_reference(compare)
        ]
        if ref_args and not any(r.kind == "reference" for r in refs):
            raise OmnifuseError(f"--ref-arg is for a reference script; --compare {compare!r} names none.")
        clash = {e.label for e in entries} & {r.label for r in refs}
        if clash:
            refs = [Entry(f"ref-{r.label}", r.kind, r.target, r.overrides, r.pretrain) for r in refs]
    results = Path(results)
    folder = results / bench_name(name)
    folder.mkdir(parents=True, exist_ok=True)
    options = {
        "data_dir": data_dir,
        "ref_epochs": ref_epochs,
        "runs_root": Path(runs_root) / bench_name(name),
        "thresholds": tuple(thresholds),
        "test_every": test_every,
    }
    ref_labels = [r.label for r in refs]
    main = {"name": bench_name(name), "role": "main", "references": ref_labels, "invocation": stamp()}
    reference = {**main, "role": "reference", "references": []}
    records: list[dict] = []
    total, start = seeds * (len(entries) + len(refs)), time.perf_counter()
    # seed by seed, the entries then their references: a machine slowing down over the invocation slows both
    for seed in range(first_seed, first_seed + seeds):
        for entry, role in [(e, main) for e in entries] + [(r, reference) for r in refs]:
            echo(run_progress(len(records), total, time.perf_counter() - start))
            records.append(_run_entry(entry, seed, folder, role, options, echo))
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
    out = Path(results) / "serve" / f"{stamp()}-{Path(run_dir).name}.json"
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
        "--pretrain", action="store_true", help="omnifuse pretrain the config first, train from it"
    )
    parser.add_argument(
        "--test-every", type=int, default=1, help="score the test set every N epochs (0: last)"
    )
    parser.add_argument(
        "--table", metavar="RESULTS_DIR", help="regenerate RESULTS_DIR/../RESULTS.md and exit"
    )
    args = parser.parse_args(argv)
    # TensorFlow's start-up lines hidden, unless the `omnifuse --verbose bench` that started this asked for them
    quiet.setup(False, omnifuse.USER_TF_LOG_LEVEL)
    try:
        if args.table:
            print(update_results(args.table))
            return 0
        if not args.one or not args.out:
            parser.error("--one PRESET and --out FILE are required (or --table RESULTS_DIR)")
        record = run_one(
            args.one, args.seed, args.overrides, args.data_dir, args.runs_root, args.pretrain, args.test_every
        )
        write_json(args.out, record)
    except OmnifuseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
