"""The benchmark harness on tiny fixtures: `omnifuse bench` end to end (records, table, comparison with a
reference run), labels of references and other backends, `bench serve` and `bench report`."""

import json
import logging
import runpy
import subprocess
import sys
import types
from pathlib import Path

import keras
import pytest
from fixtures import write_aclimdb, write_cifar10
from test_fastnet import TINY
from typer.testing import CliRunner

from omnifuse.bench import harness, recorder, report
from omnifuse.cli import app
from omnifuse.errors import OmnifuseError

# A reference that reports fixed numbers, so the comparison's ratio is known.
FAKE_REFERENCE = """
import argparse, json
p = argparse.ArgumentParser()
p.add_argument("--seed", type=int); p.add_argument("--json"); p.add_argument("--data-dir"); p.add_argument("--epochs")
a = p.parse_args()
epochs = [{"epoch": 1, "train_seconds": 40.0, "cumulative_seconds": 40.0, "eval_seconds": 1.0,
           "test_accuracy": {"cifar10": 0.04}}]
json.dump({"kind": "reference", "seed": a.seed, "epochs": epochs, "train_seconds": 40.0,
           "final": {"cifar10": {"accuracy": 0.04, "macro_f1": 0.01, "roc_auc": 0.5}}}, open(a.json, "w"))
"""

HAND_WRITTEN_HEAD = "# Results\n\nHand-written notes, with the published anchors: NBSVM 91.2%.\n\n"
HAND_WRITTEN_TAIL = "\n\n## Notes\n\nMore hand-written text | with a pipe.\n"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=40, n_test=60)
    write_aclimdb(root, n_per_class=30)
    return root


def _python_m_in_this_process(monkeypatch):
    """Run the harness's ``python -m omnifuse.bench ...`` runs in this process (as ``python -m`` runs the package's
    __main__.py, its exit code from SystemExit); other commands (the reference script) still run as processes. A
    fresh interpreter costs seconds of TensorFlow imports, and the run's record is what is tested here."""
    real = subprocess.run
    # what the run sets for itself (omnifuse.quiet), put back after the test
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    for name in ("absl", "tensorflow"):
        monkeypatch.setattr(logging.getLogger(name), "level", logging.getLogger(name).level)

    def run(cmd, **kwargs):
        if list(cmd[:3]) != [sys.executable, "-m", "omnifuse.bench"]:
            return real(cmd, **kwargs)
        with monkeypatch.context() as m:
            m.setattr(sys, "argv", ["omnifuse.bench", *cmd[3:]])
            try:
                runpy.run_module("omnifuse.bench", run_name="__main__", alter_sys=True)
                code = 0
            except SystemExit as exc:
                code = exc.code
        return subprocess.CompletedProcess(cmd, code)

    monkeypatch.setattr(harness.subprocess, "run", run)


def test_bench_command_writes_records_table_and_ratio(data_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _python_m_in_this_process(monkeypatch)
    (tmp_path / "tiny.toml").write_text(TINY)
    (tmp_path / "fake_ref.py").write_text(FAKE_REFERENCE)
    results = tmp_path / "benchmarks" / "results"
    results.parent.mkdir()
    md = results.parent / "RESULTS.md"
    md.write_text(HAND_WRITTEN_HEAD + f"{report.BEGIN}\nan old table\n{report.END}" + HAND_WRITTEN_TAIL)

    args = ["bench", "tiny.toml", "--seeds", "1", "--first-seed", "2", "--compare", "fake_ref.py"]
    args += ["--data-dir", str(data_dir)]
    args += ["--results", str(results), "--thresholds", "0.01,0.999"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output

    files = sorted((results / "tiny").glob("*.json"))
    records = {json.loads(f.read_text())["label"]: json.loads(f.read_text()) for f in files}
    assert set(records) == {"tiny", "keras-fake_ref"}
    assert all(f.name.endswith("-seed2.json") for f in files)  # --first-seed 2
    rec = records["tiny"]
    assert rec["name"] == "tiny" and rec["role"] == "main" and rec["references"] == ["keras-fake_ref"]
    assert set(rec["commit"]) == {"sha", "dirty"}
    assert rec["hardware"]["cores"] >= 1 and rec["hardware"]["cpu"]
    assert rec["versions"]["keras"] == keras.__version__ and rec["versions"]["tensorflow"]
    assert rec["backend"] == "tensorflow" and rec["os"] and rec["seed"] == 2
    # the resolved config: the file's values and the defaults it left out
    assert rec["config"]["train"]["epochs"] == 2 and rec["config"]["model"]["image"]["fastnet"]["tta"] == 1
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    first, second = rec["epochs"]
    assert second["cumulative_seconds"] == pytest.approx(
        first["train_seconds"] + second["train_seconds"], abs=2e-3
    )
    assert rec["train_seconds"] == pytest.approx(second["cumulative_seconds"], abs=2e-3)
    assert all(0.0 <= e["test_accuracy"]["cifar10"] <= 1.0 and e["eval_seconds"] >= 0 for e in rec["epochs"])
    assert rec["first_step_seconds"] > 0 and rec["step_seconds"] > 0 and rec["steps"] == 2 * 4
    assert rec["wall_seconds"] >= rec["train_seconds"] and rec["process_seconds"] >= rec["wall_seconds"]
    assert set(rec["final"]["cifar10"]) == {"accuracy", "macro_f1", "roc_auc", "calibration"}
    assert set(rec["final"]["cifar10"]["calibration"]) >= {"temperature", "ece_before", "ece_after"}
    # the run's report is written, without the explained worst samples the record does not keep
    report_dir = Path(rec["run_dir"]) / "report"
    assert (report_dir / "report.md").is_file() and not list(report_dir.glob("worst_*.png"))
    # 1% is reached at the first epoch unless the model gets every test image wrong; 99.9% is never reached
    reached = rec["time_to_accuracy"]["cifar10"]
    assert reached["0.999"] is None
    if first["test_accuracy"]["cifar10"] >= 0.01:
        assert reached["0.01"] == first["cumulative_seconds"]
    assert records["keras-fake_ref"]["time_to_accuracy"] == {"cifar10": {"0.01": 40.0, "0.999": None}}

    acc_ratio = rec["final"]["cifar10"]["accuracy"] / 0.04
    time_ratio = rec["train_seconds"] / 40.0
    expected = f"acc ×{acc_ratio:.3f}, time ×{time_ratio:.3f}"
    assert expected in result.output
    text = md.read_text()
    assert text.startswith(HAND_WRITTEN_HEAD + report.BEGIN) and text.endswith(report.END + HAND_WRITTEN_TAIL)
    assert "an old table" not in text
    row = next(line for line in text.splitlines() if line.startswith("| tiny | tiny |"))
    assert f"{expected} vs keras-fake_ref" in row
    assert "| tiny | keras-fake_ref (reference) | 1 | 4.00 |" in text


def test_reference_arguments_and_other_backends_are_named_in_the_labels(tmp_path, monkeypatch):
    (tmp_path / "tiny.toml").write_text(TINY)
    ran = []

    def fake_run(entry, seed, folder, meta, options, echo):
        command = harness._command(
            entry, seed, folder / "x.json", None, options["ref_epochs"], options["runs_root"]
        )
        ran.append((entry.label, command))
        return {"label": entry.label}

    monkeypatch.setattr(harness, "_run_entry", fake_run)
    monkeypatch.setattr(harness, "update_results", lambda results: results)
    monkeypatch.setattr(harness, "compare_lines", lambda records: [])
    args = dict(compare="resnet_torch", ref_epochs=1, results=tmp_path / "results")
    harness.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], **args)
    (main_label, main_cmd), (ref_label, ref_cmd) = ran
    assert main_label == "tiny" and "--channels-last" not in main_cmd
    assert ref_label == "keras-resnet_torch+channels-last"
    assert ref_cmd[1].endswith("resnet_torch.py") and ref_cmd[-3:] == ["--epochs", "1", "--channels-last"]
    ran.clear()  # omnifuse runs on another Keras backend are labelled apart; the reference script is not
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    harness.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], **args)
    assert [label for label, _ in ran] == ["tiny+jax", "keras-resnet_torch+channels-last"]
    monkeypatch.delenv("KERAS_BACKEND")
    with pytest.raises(OmnifuseError, match="--ref-arg needs --compare"):
        harness.run_bench(str(tmp_path / "tiny.toml"), ref_args=["--channels-last"], results=tmp_path / "r")
    with pytest.raises(OmnifuseError, match="names none"):
        harness.run_bench(
            str(tmp_path / "tiny.toml"), ref_args=["--x"], compare="cifar10-fast", results=tmp_path / "r"
        )


def test_bench_serve_runs_the_serving_benchmark_and_keeps_its_record(monkeypatch, tmp_path):
    calls = []
    module = types.ModuleType("omnifuse.serving.bench")
    module.run = lambda run_dir, **kw: calls.append((run_dir, kw)) or {"single": {"p50_ms": 12.5}}
    monkeypatch.setitem(sys.modules, "omnifuse.serving.bench", module)
    args = ["bench", "serve", "--run", "runs/av", "--set", "requests=20", "--set", "batch_sizes=[1, 8]"]
    result = CliRunner().invoke(app, [*args, "--results", str(tmp_path / "results")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert calls == [(Path("runs/av"), {"requests": 20, "batch_sizes": [1, 8]})]
    (path,) = (tmp_path / "results" / "serve").glob("*-av.json")
    record = json.loads(path.read_text())
    assert (
        record["single"] == {"p50_ms": 12.5} and record["kind"] == "serve" and record["commit"]["sha"] != ""
    )
    assert report.load_records(tmp_path / "results") == []  # not a training benchmark: kept out of the table

    with pytest.raises(OmnifuseError, match="--run"):
        harness.run_serve(None)
    monkeypatch.setitem(sys.modules, "omnifuse.serving.bench", None)  # not installed
    with pytest.raises(OmnifuseError, match="omnifuse.serving.bench"):
        harness.run_serve("runs/av")


def test_bench_report_regenerates_the_tables_without_training(tmp_path):
    results = tmp_path / "benchmarks" / "results"
    record = {
        "name": "mnist",
        "label": "mnist",
        "role": "main",
        "kind": "omnifuse",
        "target": "mnist",
        "overrides": [],
        "train_seconds": 60.0,
        "hardware": {"cpu": "Test CPU", "cores": 2},
        "final": {"digit": {"accuracy": 0.99}},
    }
    recorder.write_json(results / "mnist" / "run.json", record)
    readme = tmp_path / "README.md"
    readme.write_text(f"# Tool\n\n{report.README_BEGIN}\n{report.README_END}\n")
    result = CliRunner().invoke(app, ["bench", "report", "--results", str(results)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "| mnist | mnist | 1 | 99.00 |" in (results.parent / "RESULTS.md").read_text()
    assert "| `mnist` | digit | 99.00 | 1 | 60 s |" in readme.read_text()
    assert sorted(p.name for p in results.rglob("*")) == ["mnist", "run.json"]  # no run, no new record
