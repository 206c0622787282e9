"""Distributed training on TensorFlow's engine: ``mirrored`` over two virtual CPU devices, and ``multi_worker`` with
two worker processes on 127.0.0.1, one of them killed mid-run and restarted from its backup.

Virtual devices must be configured before TensorFlow initialises its devices, and a worker's cluster before it runs
anything, so those runs happen in fresh processes. The multi-worker model is image-only (the text path under a
strategy is covered by the mirrored run) and without BatchNormalization, so that two workers computing halves of
each batch train exactly the model one process trains (BatchNormalization's per-replica statistics, and their
averaging, are covered by the mirrored run).
"""

import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import keras
import pytest
from fixtures import write_aclimdb, write_cifar10
from typer.testing import CliRunner

import omnifuse
from omnifuse import distributed, modelio, training  # noqa: F401  (modelio: registers the saved layers)
from omnifuse.cli import app
from omnifuse.config import TrainConfig
from omnifuse.errors import OmnifuseError

JOINT = """
name = "tiny-joint"
[data]
sets = ["cifar10", "imdb"]
val_fraction = 0.2
[model]
fusion = "attention"
fusion_dim = 16
[model.image.cnn]
filters = [8]
dense_units = 16
dropout = 0.0  # with the default 0.25, train.seed 2 ended at the threshold (0.2) after 3 epochs
[model.text]
encoder = "bag"  # strings through TextVectorization under the strategy; an RNN costs a third more to trace
vocab_size = 200
sequence_length = 24
[model.text.bag]
embed_dim = 16
[train]
epochs = 2
batch_size = 16
learning_rate = 5e-3
early_stopping = 0
verbose = 0
"""

IMAGES = """
name = "tiny-images"
[data]
sets = ["cifar10"]
val_fraction = 0.2
[model]
fusion = "concat"
fusion_dim = 16
[model.image.cnn]
filters = [8]
dense_units = 16
batchnorm = false
dropout = 0.0
[train]
epochs = 2
batch_size = 32
learning_rate = 5e-3
early_stopping = 0
verbose = 2
"""

EPOCHS = 2  # the kill comes after the first, the restarted workers train the second
# 2 workers vs 1 process stopped and resumed after the same epoch: the same computation, summed in another order
LOSS_RTOL = 1e-3  # per-epoch train and validation loss
ACCURACY_TOLERANCE = 0.02  # test accuracy on 200 images (4 images)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=80, n_test=200)
    write_aclimdb(root, n_per_class=60)
    return root


def _config(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(text)
    return path


# ------------------------------------------------------------------------------------- cluster spec (no TensorFlow)


def test_cluster_spec_and_chief():
    spec = distributed.cluster_spec("10.0.0.1:2222, 10.0.0.2:2222", 1)
    assert spec == {
        "cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]},
        "task": {"type": "worker", "index": 1},
    }
    assert not distributed.is_chief(spec)
    assert distributed.is_chief(distributed.cluster_spec(["a:1", "b:2"], 0))
    with_chief = {"cluster": {"chief": ["a:1"], "worker": ["b:2"]}, "task": {"type": "worker", "index": 0}}
    assert not distributed.is_chief(with_chief)  # a cluster with a chief task: worker 0 is not the chief
    assert distributed.is_chief({**with_chief, "task": {"type": "chief", "index": 0}})
    with pytest.raises(OmnifuseError, match="host:port.*'10.0.0.1'"):
        distributed.parse_workers("10.0.0.1,10.0.0.2:2222")
    with pytest.raises(OmnifuseError, match=r"worker_index in 0\.\.1 .* Received: 2"):
        distributed.cluster_spec(["a:1", "b:2"], 2)


def test_tf_config_is_checked():
    with pytest.raises(OmnifuseError, match="TF_CONFIG.*--workers"):
        distributed.read_tf_config(None)
    with pytest.raises(OmnifuseError, match="Expected TF_CONFIG to be JSON"):
        distributed.read_tf_config("{cluster: }")
    with pytest.raises(OmnifuseError, match="job 'ps'"):
        distributed.read_tf_config(
            json.dumps({"cluster": {"ps": ["a:1"]}, "task": {"type": "ps", "index": 0}})
        )
    with pytest.raises(OmnifuseError, match="task index in 0..0"):
        distributed.read_tf_config(
            json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}})
        )
    spec = {"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 1}}
    assert distributed.read_tf_config(json.dumps(spec)) == spec


def test_distribution_settings_are_checked(data_dir, tmp_path):
    with pytest.raises(
        OmnifuseError, match="Unknown train.distribution 'ring'. Valid: none, mirrored, multi_worker"
    ):
        distributed.setup(TrainConfig(distribution="ring"))
    with pytest.raises(OmnifuseError, match="train.workers .* 'mirrored'"):
        distributed.setup(TrainConfig(distribution="mirrored", workers=("a:1", "b:2")))
    assert distributed.setup(TrainConfig()) is None
    # the CLI maps its flags onto the config, and refuses them for a resumed run
    result = CliRunner().invoke(
        app,
        [
            "train",
            "cifar10-cnn",
            "--distribution",
            "ring",
            "--data-dir",
            str(data_dir),
            "--runs-root",
            str(tmp_path),
        ],
    )
    # the config rejects the value when it is built, naming the key and the valid values
    message = str(result.exception)
    assert isinstance(result.exception, OmnifuseError)
    assert "train.distribution" in message and "'ring'" in message and "'mirrored'" in message
    assert not any(tmp_path.iterdir()), "nothing is written before the distribution is checked"
    result = CliRunner().invoke(app, ["train", "--resume", str(tmp_path), "--distribution", "mirrored"])
    assert isinstance(result.exception, OmnifuseError) and "resumed run" in str(result.exception)


def test_launch_checks_its_arguments_before_starting_workers(tmp_path):
    with pytest.raises(OmnifuseError, match="at least 1"):
        distributed.launch("cifar10-cnn", 0, runs_root=tmp_path)
    with pytest.raises(OmnifuseError, match="train.epochz"):
        distributed.launch("cifar10-cnn", 2, ["train.epochz=1"], runs_root=tmp_path)
    assert not any(tmp_path.iterdir())


def test_backups_keep_the_last_two_epochs(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile("adam", "mse")
    for epoch in (1, 2, 3):
        distributed.save_backup(model, tmp_path, epoch, {"epochs_done": epoch})
    state = json.loads((tmp_path / "state.json").read_text())
    assert sorted(state) == ["2", "3"] and state["3"]["progress"] == {"epochs_done": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "epoch-2.weights.h5",
        "epoch-3.weights.h5",
        "state.json",
    ]


# ------------------------------------------------------------------------------------- mirrored: 2 virtual CPUs

_MIRRORED = """
import sys
from omnifuse import lean
lean.setup()  # as the command line imports TensorFlow (its virtual devices are the reason for this process)
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import omnifuse
config, data, runs = sys.argv[1:]
print("RUN_DIR", omnifuse.train(config, ["train.distribution=mirrored"], runs_root=runs, data_dir=data))
"""


def test_mirrored_on_two_devices_trains_the_joint_model(data_dir, tmp_path, tmp_path_factory):
    config = _config(tmp_path_factory, JOINT)
    # only the training needs the fresh process (its two virtual devices); the run is read back here
    done = subprocess.run(
        [sys.executable, "-c", _MIRRORED, str(config), str(data_dir), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    run = Path(done.stdout.rsplit("RUN_DIR", 1)[1].strip())
    dist = json.loads((run / "meta.json").read_text())["distribution"]
    assert dist["strategy"] == "mirrored" and dist["replicas"] == 2 and dist["workers"] == 1
    # both replicas hold the saved model, BatchNormalization's moving statistics included
    last = keras.saving.load_model(run / "checkpoints" / "last.keras")
    assert dist["weights_sha256"] == [distributed.weights_digest(last)] * 2
    # text (TextVectorization, strings) and image branches, each skipped on the other set's batches, both learn:
    # the last epoch's accuracy on the validation split (80 images, 24 reviews). Evaluating a distributed run (its
    # temperatures are fitted there) is covered by test_two_workers_match_one_process.
    final = list(csv.DictReader((run / "metrics.csv").open()))[-1]
    assert int(final["epoch"]) == 1  # 2 epochs
    # seeds 0, 1, 2: cifar10 0.375, 0.825, 0.5; sentiment 0.958, 1.0, 1.0
    assert float(final["val_cifar10_accuracy"]) > 0.2  # chance 0.1
    assert float(final["val_sentiment_accuracy"]) > 0.7  # chance 0.5


# ------------------------------------------------------------------------------------- multi_worker: 2 processes


@pytest.fixture(scope="module")
def worker_run(data_dir, tmp_path_factory):
    """Two workers launched on 127.0.0.1; worker 1 is killed once both have a backup, and the launcher restarts
    them. Returns the run directory, the launcher's output and the epoch the kill came after."""
    config = _config(tmp_path_factory, IMAGES)
    runs = tmp_path_factory.mktemp("runs")
    lines, outcome = [], {}

    def launch():
        try:
            outcome["run"] = distributed.launch(
                str(config), 2, runs_root=runs, data_dir=str(data_dir), max_restarts=1, echo=lines.append
            )
        except Exception as exc:  # reported by the tests below
            outcome["error"] = exc

    thread = threading.Thread(target=launch)
    thread.start()
    state = runs / "tiny-images" / "backup" / "worker-1" / "state.json"
    killed_after = None
    while thread.is_alive() and killed_after is None:
        if state.is_file():
            killed_after = max(int(e) for e in json.loads(state.read_text()))
            pid = next(int(line.split()[4]) for line in lines if line.startswith("[launch] worker 1 pid"))
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    thread.join(timeout=600)
    assert "error" not in outcome, "\n".join(lines[-60:]) + f"\n{outcome.get('error')}"
    return outcome["run"], lines, killed_after, config


def test_killed_worker_is_restarted_and_resumes_from_its_backup(worker_run):
    run, lines, killed_after, _ = worker_run
    assert killed_after is not None and killed_after < EPOCHS, "the kill must come mid-run"
    restart = next(
        i for i, line in enumerate(lines) if "worker 1 exited with code -9; restarting all 2" in line
    )
    after = lines[restart:]
    for worker in (0, 1):
        restored = [
            line for line in after if line.startswith(f"[worker {worker}] worker-{worker}: restoring")
        ]
        assert restored and f"after epoch {killed_after} " in restored[0]
        # off a terminal each epoch ends with one plain line, "epoch 3/5 - 1.2 s - loss ..." (omnifuse/progress.py)
        epochs = [line for line in after if line.startswith(f"[worker {worker}] epoch ")]
        assert epochs[0].startswith(f"[worker {worker}] epoch {killed_after + 1}/{EPOCHS} "), (
            "no finished epoch is trained again"
        )
    meta = json.loads((run / "meta.json").read_text())
    assert meta["progress"]["epochs_done"] == EPOCHS and meta["progress"]["finished"]
    rows = (run / "metrics.csv").read_text().splitlines()[1:]
    assert [int(r.split(",")[0]) for r in rows] == list(range(EPOCHS)), "each epoch logged once"
    assert not (run / "backup").exists(), "backups are removed when the run finishes"


def test_workers_hold_the_chiefs_model(worker_run):
    run, _, _, _ = worker_run
    dist = json.loads((run / "meta.json").read_text())["distribution"]
    assert dist["strategy"] == "multi_worker" and dist["workers"] == 2 and dist["replicas"] == 2
    last = keras.saving.load_model(run / "checkpoints" / "last.keras")
    assert dist["weights_sha256"] == [distributed.weights_digest(last)] * 2
    assert sorted(p.name for p in run.iterdir()) == [
        "checkpoints",
        "config.toml",
        "logs",  # TensorBoard's, written by the chief only
        "meta.json",
        "metrics.csv",
        "model.keras",
    ]


class _Stopped(Exception):
    pass


def test_two_workers_match_one_process(worker_run, data_dir, tmp_path, monkeypatch):
    run, _, killed_after, config = worker_run
    # the same run in one process, stopped after the epoch the worker was killed after, and resumed
    original = training._RunCheckpoint.on_epoch_end

    def stop_after_that_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch + 1 == killed_after:
            raise _Stopped()

    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", stop_after_that_epoch)
    with pytest.raises(_Stopped):
        omnifuse.train(str(config), ["train.verbose=0"], runs_root=tmp_path, data_dir=str(data_dir))
    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", original)
    single = omnifuse.train(None, resume=tmp_path / "tiny-images", data_dir=str(data_dir))

    one, two = (list(csv.DictReader((r / "metrics.csv").open())) for r in (single, run))
    assert len(one) == len(two) == EPOCHS
    for a, b in zip(one, two):
        for key in ("loss", "val_loss"):
            assert float(b[key]) == pytest.approx(float(a[key]), rel=LOSS_RTOL), (a["epoch"], key)
    accuracy = [
        omnifuse.evaluate(r, data_dir=str(data_dir), worst_samples=False)["tasks"]["cifar10"]["accuracy"]
        for r in (single, run)
    ]
    assert accuracy[0] > 0.3  # learnable; chance is 0.1
    assert abs(accuracy[0] - accuracy[1]) <= ACCURACY_TOLERANCE, accuracy
