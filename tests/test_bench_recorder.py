"""The JSON record: the reference scripts write the same fields as omnifuse runs, the recorder's scoring and
commit, atomic writes."""

import importlib.util
import json
import runpy
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
from fixtures import write_aclimdb, write_cifar10

from omnifuse.bench import recorder
from omnifuse.errors import OmnifuseError

REFERENCE = Path(__file__).resolve().parents[1] / "benchmarks" / "reference"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=40, n_test=60)
    write_aclimdb(root, n_per_class=30)
    return root


@pytest.mark.parametrize(
    "script,task",
    [
        ("cifar10_cnn.py", "cifar10"),
        ("imdb_lstm.py", "sentiment"),
        ("resnet_torch.py", "cifar10"),
        ("airbench94.py", "cifar10"),
    ],
)
def test_reference_scripts_write_the_same_record_fields(script, task, data_dir, tmp_path, monkeypatch):
    extra = ["--limit-train", "60"]
    if script == "imdb_lstm.py":  # the LSTM runs 20 steps a text, not 200: the record's fields are the same
        extra += ["--maxlen", "20", "--max-tokens", "2000"]
    if script in ("resnet_torch.py", "airbench94.py"):
        pytest.importorskip(
            "torch", reason="the PyTorch references need torch (a CPU build of torch==2.13.0)"
        )
    if script == "airbench94.py":
        if importlib.util.find_spec("airbench") is None:  # not imported here: it wants torchvision (stubbed)
            pytest.skip("airbench94 needs the airbench package (the airbench extra)")
        # 2 steps of 32 images an epoch (airbench drops a partial batch), in float32: cheap on any CPU
        extra = ["--batch-size", "32", "--limit-train", "64", "--precision", "float32"]
    out = tmp_path / "ref.json"
    argv = [script, "--epochs", "2", "--seed", "1", "--data-dir", str(data_dir), "--json", str(out)]
    monkeypatch.setattr(sys, "argv", [*argv, *extra])
    runpy.run_path(str(REFERENCE / script), run_name="__main__")
    rec = json.loads(out.read_text())
    assert rec["kind"] == "reference" and rec["seed"] == 1 and rec["config"]["epochs"] == 2
    assert [e["epoch"] for e in rec["epochs"]] == [1, 2]
    assert all(0.0 <= e["test_accuracy"][task] <= 1.0 for e in rec["epochs"])
    assert rec["train_seconds"] == pytest.approx(rec["epochs"][-1]["cumulative_seconds"], abs=2e-3)
    assert rec["first_step_seconds"] > 0 and rec["step_seconds"] > 0
    assert set(rec["final"][task]) == {"accuracy", "macro_f1", "roc_auc"}
    assert rec["hardware"]["cores"] >= 1 and rec["versions"]["keras"] == keras.__version__
    assert (
        recorder.time_to_accuracy(rec["epochs"], [0.0])[task]["0"] == rec["epochs"][0]["cumulative_seconds"]
    )


def test_the_recorder_scores_one_sigmoid_unit_as_binary_and_keeps_the_commit_it_started_at(monkeypatch):
    x = np.array([[-2.0], [-1.0], [1.0], [3.0]], "float32")
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, activation="sigmoid")])
    model.set_weights([np.ones((1, 1), "float32"), np.zeros(1, "float32")])  # p > 0.5 exactly where x > 0
    monkeypatch.setattr(recorder, "_git", lambda *args: "start" if args[0] == "rev-parse" else "")
    epochs = recorder.EpochRecorder(x, {"sentiment": np.array([0, 1, 1, 1])}, verbose=False)
    epochs.set_model(model)
    assert epochs.test_accuracy() == {"sentiment": 0.75}  # argmax of one column would say 0.25
    monkeypatch.setattr(recorder, "_git", lambda *args: "later" if args[0] == "rev-parse" else "")
    epochs.on_epoch_begin(0)
    epochs.on_epoch_end(0)
    rec = recorder.record_run(
        epochs, kind="reference", seed=0, config={}, batch_size=4, final={}, wall_seconds=1.0
    )
    assert rec["commit"] == {"sha": "start", "dirty": False}
    assert (
        rec["epochs"][0]["test_accuracy"] == {"sentiment": 0.75} and "member_accuracy" not in rec["epochs"][0]
    )


@pytest.mark.parametrize("every, scored", [(1, [1, 2, 3, 4, 5]), (2, [2, 4, 5]), (0, [5])])
def test_test_every_scores_those_epochs_and_always_the_last(every, scored):
    x = np.array([[-2.0], [-1.0], [1.0], [3.0]], "float32")
    y = np.array([0, 1, 1, 1])
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("sgd", "sparse_categorical_crossentropy")
    epochs = recorder.EpochRecorder(x, {"task": y}, verbose=False, test_every=every)
    model.fit(x, y, epochs=5, verbose=0, callbacks=[epochs])
    assert [e["epoch"] for e in epochs.epochs if e["test_accuracy"]] == scored
    assert [e["epoch"] for e in epochs.epochs] == [1, 2, 3, 4, 5]  # every epoch's training time is kept
    reached = recorder.time_to_accuracy(epochs.epochs, [0.0])["task"]["0"]
    assert reached == epochs.epochs[scored[0] - 1]["cumulative_seconds"]
    with pytest.raises(OmnifuseError, match="--test-every of at least 0"):
        recorder.EpochRecorder(x, {"task": y}, test_every=-1)


def test_records_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    path = tmp_path / "name" / "run.json"
    recorder.write_json(path, {"accuracy": np.float32(0.5), "steps": np.int64(3)})
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "steps": 3}  # NumPy scalars as plain numbers

    def interrupted(src, dst):
        raise KeyboardInterrupt

    from omnifuse import rundir  # the one atomic write the recorder uses

    monkeypatch.setattr(rundir.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        recorder.write_json(path, {"accuracy": 0.9})
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "steps": 3}  # the old record, whole
    with pytest.raises(TypeError, match="Not JSON serialisable"):
        recorder.write_json(path, {"model": object()})
