"""Progress where work takes a while: bars with ETA on a terminal, nothing (or one plain line per epoch) elsewhere."""

import io

import numpy as np
import pytest
from rich.console import Console

from omnifuse import progress
from omnifuse.bench.harness import run_progress


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_epoch_line_is_plain_text_with_every_metric():
    logs = {"loss": np.float32(0.68374), "val_accuracy": 0.5, "epoch_seconds": 3.0, "note": "x"}
    assert (
        progress.epoch_line(2, 30, logs, 12.44) == "epoch 3/30 - 12.4 s - loss 0.6837 - val_accuracy 0.5000"
    )


def test_keras_bar_only_on_a_terminal(monkeypatch):
    monkeypatch.setattr("sys.stdout", io.StringIO())
    assert progress.fit_verbose(1) == 0 and len(progress.epoch_lines(5, 1)) == 1
    assert progress.epoch_lines(5, 0) == []  # verbose 0: silent, as asked
    monkeypatch.setattr("sys.stdout", _Tty())
    assert progress.fit_verbose(1) == 1 and progress.epoch_lines(5, 1) == []


def test_steps_draw_a_bar_with_eta_on_a_terminal_and_nothing_elsewhere(monkeypatch):
    monkeypatch.setattr("sys.stderr", io.StringIO())
    with progress.Steps("evaluating", 3) as steps:
        steps.advance(3)
    assert progress.sys.stderr.getvalue() == ""
    drawn = io.StringIO()
    monkeypatch.setattr(progress, "interactive", lambda: True)
    monkeypatch.setattr(progress, "Console", lambda **_: Console(file=drawn, force_terminal=True, width=100))
    with progress.Steps("evaluating pets", 4) as steps:
        steps.advance(2)
        steps._bar.refresh()
    shown = drawn.getvalue()
    assert "evaluating pets" in shown and "2/4" in shown and "ETA" in shown


def test_evaluation_passes_report_their_batches(monkeypatch):
    keras = pytest.importorskip("keras")
    seen = []

    class Recorder(progress.Steps):
        def __enter__(self):
            seen.append([self.description, self.total, 0])
            return self

        def advance(self, n=1):
            seen[-1][2] += n

    monkeypatch.setattr(progress, "Steps", Recorder)
    from omnifuse.evaluation import _predict
    from omnifuse.inference import Inference

    inputs = keras.Input((3,), name="x")
    model = keras.Model({"x": inputs}, keras.layers.Dense(2)(inputs))
    out = _predict(Inference(model, eager=2), {"x": np.zeros((10, 3), "float32")}, 4, "test set of pets")
    assert seen == [["test set of pets", 3, 3]]
    assert out.shape == (10, 2)  # two batches eager, the third through the traced predict function


def test_bench_runs_say_how_far_along_and_how_long_is_left():
    assert run_progress(0, 6, 0.0) == "[bench] run 1 of 6"
    assert run_progress(2, 6, 240.0) == "[bench] run 3 of 6, 4.0 min so far, about 8.0 min left"


def test_a_console_that_is_not_a_terminal_does_not_wrap_paths(monkeypatch):
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    path = "/a/very/long/folder/name/that/goes/on/" * 5 + "run"
    progress.console().print(f"Run directory: [bold]{path}[/bold]")
    assert out.getvalue() == f"Run directory: {path}\n"
