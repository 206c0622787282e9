"""Tracking: TensorBoard logs in every run, MLflow against a real local store, and the user's Keras callbacks."""

import importlib.util
import json

import keras
import pytest
from fixtures_tables import tiny_overrides, write_pets_table

import omnifuse
from omnifuse import tracking

needs_mlflow = pytest.mark.skipif(
    importlib.util.find_spec("mlflow") is None,
    reason="mlflow is not installed (pip install 'omnifuse[mlflow]')",
)


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_end(self, epoch, logs=None):
        self.seen.append((epoch, sorted(logs or {})))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    """A tiny run on a CSV, logged to a sqlite MLflow store, with a callback of the user's."""
    root = tmp_path_factory.mktemp("tracked")
    csv_path = write_pets_table(root / "pets.csv")
    mine = _Epochs()
    more = {"track.mlflow": True, "track.uri": f"sqlite:///{root / 'store.db'}"} if _has_mlflow() else {}
    more["track.tensorboard"] = True  # (off in tiny_overrides)
    run = omnifuse.train("table", tiny_overrides(csv_path, **more), runs_root=root / "runs", callbacks=[mine])
    return run, mine, root


def _has_mlflow() -> bool:
    return importlib.util.find_spec("mlflow") is not None


def test_the_public_train_calls_the_user_s_callbacks(tracked):
    _, mine, _ = tracked
    assert [epoch for epoch, _ in mine.seen] == [0, 1]
    assert "val_loss" in mine.seen[0][1]


def test_every_run_writes_tensorboard_scalars_modality_weights_and_confusion_images(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, _, _ = tracked
    train = EventAccumulator(str(run / "logs" / "train"), size_guidance={"tensors": 0})
    train.Reload()
    assert "epoch_loss" in train.Tags()["tensors"]
    assert [e.step for e in train.Tensors("epoch_loss")] == [0, 1]
    val = EventAccumulator(str(run / "logs" / "validation"), size_guidance={"tensors": 0, "images": 0})
    val.Reload()
    tags = val.Tags()
    assert "epoch_loss" in tags["tensors"]
    weights = [t for t in tags["tensors"] if t.startswith("modality_weights/pets/")]
    assert sorted(weights) == ["modality_weights/pets/review", "modality_weights/pets/tabular"]
    import tensorflow as tf

    # the two mean weights of an epoch are a distribution over the two modalities
    total = sum(float(tf.make_ndarray(val.Tensors(t)[-1].tensor_proto)) for t in weights)
    assert total == pytest.approx(1.0, abs=1e-4)
    # the confusion matrix is an image summary (TensorBoard keeps images as tensors with image metadata)
    assert "confusion/species" in tags["tensors"] + tags["images"]


def test_tensorboard_can_be_turned_off(tmp_path):
    from omnifuse.config import load_config

    cfg = load_config("table", tiny_overrides(tmp_path / "x.csv", **{"track.tensorboard": False}))
    assert tracking.callbacks(cfg, tmp_path, {}, None, None) == []


@needs_mlflow
def test_mlflow_gets_params_metrics_files_and_the_model_then_the_test_metrics(tracked):
    from mlflow.tracking import MlflowClient

    run, _, root = tracked
    meta = json.loads((run / "meta.json").read_text())
    record = meta["tracking"]["mlflow"]
    assert record["uri"] == f"sqlite:///{root / 'store.db'}" and record["experiment"] == "table"
    client = MlflowClient(tracking_uri=record["uri"])
    found = client.get_run(record["run_id"])
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    assert found.data.params["train.epochs"] == "2" and found.data.params["data.label"] == "species"
    history = client.get_metric_history(record["run_id"], "val_loss")
    assert [m.step for m in history] == [0, 1]
    files = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"config.toml", "meta.json", "metrics.csv", "model"} <= files
    assert [a.path for a in client.list_artifacts(record["run_id"], "model")] == ["model/model.keras"]
    # the artifacts sit beside the database, not in the working directory
    assert (root / "mlartifacts").is_dir()

    results = omnifuse.evaluate(run, robustness=False, worst_samples=False)
    found = client.get_run(record["run_id"])
    assert found.data.metrics["test/species/accuracy"] == pytest.approx(
        results["tasks"]["species"]["accuracy"]
    )
    assert "report/report.md" in {a.path for a in client.list_artifacts(record["run_id"], "report")}


def test_the_default_store_is_a_sqlite_file_beside_the_runs(tmp_path):
    assert tracking.default_uri(tmp_path / "runs") == f"sqlite:///{(tmp_path / 'runs').resolve()}/mlflow.db"
    assert tracking.flatten({"a": {"b": 1, "c": [1, 2]}, "d": "x"}) == {"a.b": "1", "a.c": "[1, 2]", "d": "x"}


def test_the_command_line_sets_the_track_keys_and_rejects_an_unknown_tracker(monkeypatch):
    from typer.testing import CliRunner

    from omnifuse import training
    from omnifuse.cli import app

    seen = {}
    monkeypatch.setattr(training, "train", lambda cfg, **kw: seen.setdefault("cfg", cfg) and kw["runs_root"])
    args = ["train", "cifar10-cnn", "--track", "mlflow", "--track-uri", "sqlite:///x.db", "--no-tensorboard"]
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    track = seen["cfg"].track
    assert track.mlflow and track.uri == "sqlite:///x.db" and not track.tensorboard
    bad = CliRunner().invoke(app, ["train", "cifar10-cnn", "--track", "wandb"])
    assert "Expected --track mlflow (or none). Received: 'wandb'" in str(bad.exception)
