"""The ``omnifuse`` command line: train, pretrain, evaluate, predict, data, presets, demo.

User mistakes (a bad file, key or value) print one clear message and exit with code 2, without a traceback.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

import omnifuse
from omnifuse import lean, quiet
from omnifuse.cli_data import data_app, print_schema, weights_app
from omnifuse.cli_options import CalibrationOpt, DataDirOpt, SetOpt, check_run, console
from omnifuse.cli_pretrain import pretrain
from omnifuse.cli_serve import bench, export_model, launch, serve
from omnifuse.errors import OmnifuseError
from omnifuse.label.commands import label_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multimodal classifiers on Keras 3.")
app.add_typer(data_app, name="data")
app.add_typer(weights_app, name="weights")
app.add_typer(label_app, name="label")


@app.callback()
def _options(
    ctx: typer.Context,
    verbose: Annotated[
        bool,
        typer.Option("--verbose", "-v", help="Show TensorFlow's start-up and log lines (hidden by default)"),
    ] = False,
):
    """Multimodal classifiers on Keras 3."""
    # before any command imports TensorFlow: its start-up lines are printed while it loads
    quiet.setup(verbose, omnifuse.USER_TF_LOG_LEVEL)
    lean.setup()  # and without the integrations Keras imports that omnifuse does not use
    if ctx.invoked_subcommand not in ("label", "data"):
        # train prints the schema with its notes on ids before loading; evaluating (or serving) a run loads the same
        # CSV again, and its notes were said when it trained
        table_log = logging.getLogger("omnifuse.data.table")
        table_log.addFilter(_not_an_id_note)
        ctx.call_on_close(lambda: table_log.removeFilter(_not_an_id_note))


def _not_an_id_note(record: logging.LogRecord) -> bool:
    return "looks like an id" not in record.getMessage()


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
    if resume is not None:
        check_run(resume)
    from omnifuse.tracking_config import overrides as track_overrides

    tracked = track_overrides(track, track_uri, tensorboard)
    if tracked and resume is not None:
        raise OmnifuseError(
            "--track, --track-uri and --tensorboard apply to a new run; a resumed run keeps its own."
        )
    if tracked:
        cfg = cfg.replace(tracked)
    _show_schema(cfg)
    # imported once the config checks out: a mistake in it is reported without waiting for TensorFlow
    from omnifuse.training import train as run_training

    out = run_training(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir, resume=resume)
    console.print(f"[green]Trained.[/green] Run directory: [bold]{out}[/bold]")
    console.print(f"Next: omnifuse evaluate {out}")


def _show_schema(cfg) -> None:
    """Print the schema of the user's own data (--data, or data.csv / data.folder) before anything is trained,
    with a note for each id left out (the loader's warnings saying the same are filtered in ``_options``)."""
    if cfg is None or "table" not in cfg.data.sets or not (cfg.data.csv or cfg.data.folder):
        return
    from omnifuse.data.schema import infer_schema

    found = infer_schema(cfg.data.csv, cfg.data.folder, cfg.data.label, dict(cfg.data.kinds))
    print_schema(found)


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
    worst: Annotated[
        bool,
        typer.Option(
            "--worst/--no-worst",
            help="The most confidently misclassified test samples per class, explained (at most 3 a class, 30 a task)",
        ),
    ] = True,
):
    """Evaluate a run on its test sets: accuracy, macro-F1, ROC-AUC, confusion matrices, report.md."""
    check_run(run_dir)
    from omnifuse.evaluation import evaluate as run_evaluation

    _print_results(run_evaluation(run_dir, data_dir=data_dir, robustness=robustness, worst_samples=worst))


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
    check_run(run_dir)
    if data is not None:
        from omnifuse.predictor import load

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
        from omnifuse.data.decode import check_text

        # bytes of another encoding, or no word at all: answered before TensorFlow loads
        inputs["text"] = check_text(text, "--text")
    for item in fields or []:
        if "=" not in item:
            raise OmnifuseError(f"Expected --input NAME=VALUE (e.g. -i age=31). Received: {item!r}")
        key, value = item.split("=", 1)
        inputs[key.strip()] = value
    from omnifuse.predictor import load

    predictor = load(run_dir, calibrated=calibrated)
    feed = predictor.encode(**inputs)
    answer = predictor.predict_feed(feed)[0]
    if explain:
        answer["explanation"] = predictor.explain_feed(feed)[0]
    if as_json:
        typer.echo(json.dumps(answer, indent=2))
        return
    for task, res in answer["tasks"].items():
        if not res["answerable"]:
            console.print(f"[bold]{task}[/bold]: [dim]not answered ({escape(res['reason'])})[/dim]")
            continue
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


for _command in (pretrain, bench, serve, launch):
    app.command()(_command)
app.command("export")(export_model)


def main() -> None:
    # --verbose is the program's option; it is taken anywhere on the line (omnifuse train x --verbose) too
    if "--verbose" in sys.argv[2:]:
        sys.argv.remove("--verbose")
        sys.argv.insert(1, "--verbose")
    try:
        app()
    except OmnifuseError as exc:
        # soft_wrap: a long path must stay on one line (users copy it); escape: a message may hold [brackets]
        Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {escape(str(exc))}", highlight=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
