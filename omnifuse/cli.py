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
from rich.table import Table

from omnifuse.errors import OmnifuseError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Multimodal classifiers on Keras 3.")
data_app = typer.Typer(no_args_is_help=True, help="See which data sets are where, and check them.")
app.add_typer(data_app, name="data")
console = Console()

SetOpt = Annotated[
    list[str] | None, typer.Option("--set", "-s", help="Override a config key, e.g. --set train.epochs=3")
]
DataDirOpt = Annotated[str | None, typer.Option("--data-dir", help="Folder searched first for data files")]


@app.command()
def train(
    config: Annotated[str | None, typer.Argument(help="Preset name or config .toml file")] = None,
    set_: SetOpt = None,
    resume: Annotated[
        Path | None, typer.Option(help="Continue a killed run from its run directory")
    ] = None,
    run_dir: Annotated[Path | None, typer.Option(help="Write the run here (default runs/<name>)")] = None,
    runs_root: Annotated[Path, typer.Option(help="Parent folder of new run directories")] = Path("runs"),
    data_dir: DataDirOpt = None,
):
    """Train a model; every epoch is checkpointed in the run directory."""
    from omnifuse.config import load_config
    from omnifuse.training import train as run_training

    if resume is None and config is None:
        raise OmnifuseError("Expected a preset name or config file, or --resume RUN_DIR.")
    cfg = None if resume is not None else load_config(config, set_ or [])
    out = run_training(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir, resume=resume)
    console.print(f"[green]Trained.[/green] Run directory: [bold]{out}[/bold]")
    console.print(f"Next: omnifuse evaluate {out}")


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
def evaluate(run_dir: Path, data_dir: DataDirOpt = None):
    """Evaluate a run on its test sets: accuracy, macro-F1, ROC-AUC, confusion matrices, report.md."""
    from omnifuse.evaluation import evaluate as run_evaluation

    _print_results(run_evaluation(run_dir, data_dir=data_dir))


@app.command()
def predict(
    run_dir: Path,
    image: Annotated[Path | None, typer.Option(help="An image file")] = None,
    text: Annotated[str | None, typer.Option(help="A text, e.g. a review")] = None,
    text_file: Annotated[Path | None, typer.Option(help="A UTF-8 text file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON")] = False,
):
    """Predict from raw files: any subset of the model's modalities."""
    from omnifuse.predictor import load

    inputs = {}
    if image is not None:
        inputs["image"] = str(image)
    if text_file is not None:
        from omnifuse.data.decode import read_text

        inputs["text"] = read_text(text_file)
    if text is not None:
        inputs["text"] = text
    answer = load(run_dir).predict(**inputs)
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
            ok = row.get("ok")
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
    from omnifuse.evaluation import evaluate as run_evaluation
    from omnifuse.training import train as run_training

    start = time.perf_counter()
    cfg = load_config(preset, ["train.verbose=2", *(set_ or [])])
    run = run_training(cfg, runs_root=runs_root, data_dir=data_dir)
    results = run_evaluation(run, data_dir=data_dir)
    _print_results(results)
    console.print(f"Demo finished in {time.perf_counter() - start:.0f} s. Run directory: {run}")


def main() -> None:
    try:
        app()
    except OmnifuseError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, markup=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
