"""Progress for work that takes more than a few seconds, and consoles that do not wrap what they print.

On a terminal, :class:`Steps` is a rich progress bar on stderr with the time left; when stderr is not a terminal (a
log file, a pipe, a test) it prints nothing: a log gets the result lines, not a thousand redraws. Training has its
own line per epoch (:func:`epoch_line`), printed when stdout is not a terminal in place of Keras' bar, which
redraws itself with terminal escape codes even in a file.

A console that is not a terminal is given ``soft_wrap``: rich would otherwise wrap a long path at 80 columns, and
the user copying it from a log would get half of it.
"""

from __future__ import annotations

import sys
from typing import Any

from rich.console import Console


def console(stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr) that wraps lines only on a terminal."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, soft_wrap=not _isatty(stream))


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def interactive() -> bool:
    """Whether progress bars are drawn: stderr is a terminal."""
    return _isatty(sys.stderr)


class Steps:
    """A progress bar with the time left, ``total`` steps, on a terminal's stderr; nothing elsewhere.

    >>> with Steps("evaluating pets", total=12) as steps:
    ...     for batch in batches:
    ...         steps.advance()
    """

    def __init__(self, description: str, total: int | None, unit: str = "batches"):
        self.description, self.total, self.unit = description, total, unit
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> Steps:
        if interactive():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            if self.unit == "bytes":
                from rich.progress import DownloadColumn, TransferSpeedColumn

                counts = [DownloadColumn(), TransferSpeedColumn()]
            else:
                counts = [MofNCompleteColumn(), TextColumn(self.unit)]
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                *counts,
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(self.description, total=self.total)
        return self

    def advance(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, n)

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def fit_verbose(verbose: int) -> int:
    """Keras' ``verbose`` for ``model.fit``: the configured one on a terminal, else 0 (:func:`epoch_line` prints
    one plain line per epoch instead)."""
    return verbose if _isatty(sys.stdout) else 0


def epoch_line(epoch: int, epochs: int, logs: dict[str, Any], seconds: float) -> str:
    """``epoch 3/30 - 12.4 s - loss 0.6837 - accuracy 0.5625 - val_loss 0.6901 ...``: one epoch, plain text."""
    shown = []
    for key, value in logs.items():
        if key == "epoch_seconds":
            continue
        try:
            shown.append(f"{key} {float(value):.4f}")
        except (TypeError, ValueError):
            continue
    return " - ".join([f"epoch {epoch + 1}/{epochs}", f"{seconds:.1f} s", *shown])


def epoch_lines(epochs: int, verbose: int) -> list:
    """The callback printing :func:`epoch_line` after each epoch, in a list, where :func:`fit_verbose` turned
    Keras' bar off (stdout is not a terminal and ``verbose`` > 0); else an empty list."""
    if not verbose or fit_verbose(verbose):
        return []
    import time

    import keras

    class _EpochLines(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            line = epoch_line(epoch, epochs, dict(logs or {}), time.perf_counter() - self._start)
            print(line, flush=True)

    return [_EpochLines()]
