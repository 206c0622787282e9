"""What the command line's modules share: the options several commands take, and the console they print on."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.progress import console as _console

console = _console()

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


def check_run(run_dir: Path) -> None:
    """A mistyped run directory is answered before TensorFlow loads, with the closest run beside it."""
    if (run_dir / "meta.json").is_file():
        return
    parent = run_dir.parent
    runs = [p.name for p in parent.iterdir() if (p / "meta.json").is_file()] if parent.is_dir() else []
    near = did_you_mean(run_dir.name, runs)
    if near:
        near = f" Did you mean '{parent / near.split(chr(39))[1]}'?"
    state = "no meta.json" if run_dir.is_dir() else "does not exist"
    raise OmnifuseError(f"Expected a run directory with meta.json. Received: '{run_dir}' ({state}).{near}")
