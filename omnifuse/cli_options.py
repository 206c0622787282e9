"""What the command line's modules share: the options several commands take, and the console they print on."""

from __future__ import annotations

from typing import Annotated

import typer

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
