"""``omnifuse label next`` and ``omnifuse label audit``: the command line of :mod:`omnifuse.label`.

Arguments are checked before Keras is imported, so a mistake is reported at once (exit code 2, no traceback).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.errors import OmnifuseError
from omnifuse.progress import console as _console

label_app = typer.Typer(no_args_is_help=True, help="What to label next, and which labels look wrong.")
console = _console()  # no wrapping of paths when output is not a terminal


@label_app.command("next")
def next_command(
    run_dir: Annotated[Path, typer.Argument(help="A trained run directory")],
    pool: Annotated[Path, typer.Option(help="Unlabelled samples: a CSV or a folder, as for --data")],
    budget: Annotated[int, typer.Option(help="How many samples to list")],
    out: Annotated[
        Path, typer.Option(help="The CSV to write (a queue for `omnifuse serve --label-queue`)")
    ] = Path("next.csv"),
    strategy: Annotated[
        str,
        typer.Option(
            help="random | margin | entropy | kcenter | hybrid | typiclust | typiclust_hybrid[:K] | badge | disagreement"
        ),
    ] = "margin",
    task: Annotated[
        str | None, typer.Option(help="The task whose probabilities count (default: the first)")
    ] = None,
    labelled: Annotated[
        Path | None,
        typer.Option(help="kcenter, typiclust, typiclust_hybrid: samples already labelled (CSV or folder)"),
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of random, of hybrid's and typiclust's clustering and of badge's draws")
    ] = 0,
):
    """Rank an unlabelled pool and write the BUDGET samples worth labelling first."""
    from omnifuse.label.next import parse_strategy

    parse_strategy(strategy)
    if budget < 1:
        raise OmnifuseError(f"Expected --budget of at least 1. Received: {budget}")
    for name, path in (("--pool", pool), ("--labelled", labelled)):
        if path is not None and not path.exists():
            raise OmnifuseError(
                f"Expected {name} to be a CSV file or a folder. Received: '{path}', which does not exist"
            )
    if not (run_dir / "model.keras").is_file():
        raise OmnifuseError(f"Expected a finished run directory with model.keras. Received: '{run_dir}'")
    from omnifuse.label.next import write_next

    ranked = write_next(run_dir, pool, budget, out, strategy, task=task, labelled=labelled, seed=seed)
    console.print(f"[green]Ranked.[/green] {len(ranked)} sample(s) by {strategy} in [bold]{out}[/bold]")
    console.print(f"Next: omnifuse serve {run_dir} --label-queue {out} --labels-out labels.csv")


@label_app.command("audit")
def audit_command(
    data: Annotated[Path, typer.Argument(help="Labelled data: a CSV file or a folder root/<class>/<files>")],
    label: Annotated[str | None, typer.Option(help="The label column of the CSV")] = None,
    folds: Annotated[int, typer.Option(help="Cross-fitting folds: this many models are trained")] = 5,
    config: Annotated[
        str | None, typer.Option(help="Preset or config .toml for the fold models (default: table)")
    ] = None,
    run: Annotated[Path | None, typer.Option(help="Train the fold models with this run's config")] = None,
    set_: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a config key of the fold models")
    ] = None,
    out: Annotated[Path, typer.Option(help="Folder for issues.csv, duplicates.csv and report.md")] = Path(
        "audit"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the folds and the models")] = 0,
    method: Annotated[
        str,
        typer.Option(
            help="prune_by_noise_rate: as many rows as the calibrated joint estimates are wrong (cleanlab's "
            "default rule); off_diagonal: rows off the confident joint's diagonal (fewer, surer flags, fewer found)"
        ),
    ] = "prune_by_noise_rate",
):
    """Flag likely label errors (out-of-fold confident learning) and duplicate samples in labelled data."""
    if not data.exists():
        raise OmnifuseError(
            f"Expected DATA to be a CSV file or a folder. Received: '{data}', which does not exist"
        )
    if data.is_file() and not label:
        raise OmnifuseError(f"Expected --label naming the label column of '{data}'")
    if folds < 2:
        raise OmnifuseError(f"Expected --folds of at least 2. Received: {folds}")
    if config is not None and run is not None:
        raise OmnifuseError("Expected one of --config or --run for the fold models. Received: both")
    if run is not None and not (run / "config.toml").is_file():
        raise OmnifuseError(f"Expected a run directory with config.toml. Received: '{run}'")
    if config is not None:
        from omnifuse.config import load_config

        load_config(config, set_ or [])  # a mistake in it is reported before any model trains
    from omnifuse.label.audit import METHODS, audit

    if method not in METHODS:
        raise OmnifuseError(f"Expected --method {' or '.join(METHODS)}. Received: {method!r}")
    result = audit(
        data,
        label or "",
        folds,
        config=config,
        run=run,
        overrides=set_ or [],
        out=out,
        seed=seed,
        method=method,
    )
    leaks = sum(g["leak"] for g in result["duplicates"])
    console.print(
        f"[green]Audited.[/green] {len(result['issues'])} likely label error(s), "
        f"{len(result['duplicates'])} duplicate group(s) ({leaks} across splits). Report: [bold]{out / 'report.md'}[/bold]"
    )
