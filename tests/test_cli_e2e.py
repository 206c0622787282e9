"""End to end on fixtures in the real formats: train -> evaluate -> predict -> resume, through the CLI and the API."""

import csv
import json

import numpy as np
import pytest
from cli_lines import run_lines
from fixtures import write_aclimdb, write_cifar10
from PIL import Image
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app
from omnifuse.errors import OmnifuseError

TINY = """
name = "tiny-joint"
[data]
sets = ["cifar10", "imdb"]
val_fraction = 0.2
[model]
fusion = "attention"
fusion_dim = 16
[model.image.cnn]
filters = [8, 16]
dense_units = 32
[model.text]
vocab_size = 200
sequence_length = 24
[model.text.rnn]
embed_dim = 16
units = 8
pooling = "max"
[train]
epochs = 3
batch_size = 16
learning_rate = 5e-3
early_stopping = 0
verbose = 0
"""


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    write_cifar10(root, n_per_batch=40, n_test=60)
    write_aclimdb(root, n_per_class=60)
    return root


@pytest.fixture(scope="module")
def tiny_config(tmp_path_factory):
    path = tmp_path_factory.mktemp("cfg") / "tiny.toml"
    path.write_text(TINY)
    return path


# the runs below trained_run: the joint model with the bag-of-embeddings text encoder (an eager LSTM step costs
# twice as much; trained_run trains the default LSTM) and no TensorBoard logs (tests/test_tracking.py checks them)
LIGHT = ["model.text.encoder=bag", "model.text.bag.embed_dim=16", "track.tensorboard=false"]

TRACES = []  # one entry each time TensorFlow traced the training step while trained_run trained


@pytest.fixture(scope="module")
def trained_run(data_dir, tiny_config, tmp_path_factory):
    from keras.src.backend.tensorflow.trainer import TensorFlowTrainer

    runs = tmp_path_factory.mktemp("runs")
    step = TensorFlowTrainer.train_step  # Python runs it only while TensorFlow traces the step's graph

    def counted(self, data):
        TRACES.append(1)
        return step(self, data)

    TensorFlowTrainer.train_step = counted
    try:
        result = CliRunner().invoke(
            app,
            ["train", str(tiny_config), "--data-dir", str(data_dir), "--runs-root", str(runs)],
            catch_exceptions=False,
        )
    finally:
        TensorFlowTrainer.train_step = step
    assert result.exit_code == 0, result.output
    return runs / "tiny-joint"


def test_train_writes_the_run_directory(trained_run):
    for name in ("config.toml", "meta.json", "metrics.csv", "model.keras", "checkpoints/last.keras"):
        assert (trained_run / name).is_file(), name
    meta = json.loads((trained_run / "meta.json").read_text())
    assert meta["modalities"] == {"image": "image", "text": "text"}
    assert meta["tasks"]["sentiment"] == ["neg", "pos"]
    assert meta["progress"]["epochs_done"] == 3
    rows = list(csv.DictReader((trained_run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2]
    assert {"cifar10_accuracy", "sentiment_accuracy", "val_loss"} <= set(rows[0])
    assert not list(trained_run.rglob(".*tmp*")), "no temporary files may be left behind"


def test_the_training_step_is_traced_once_for_all_epochs(trained_run):
    # Keras builds the optimizer and loss trackers inside the first trace unless they are built before fit, and
    # TensorFlow then traces the step a second time: twice the graph building of every training
    assert len(TRACES) == 1


@pytest.fixture(scope="module")
def light_run(data_dir, tiny_config, tmp_path_factory):
    """The joint model (LIGHT) with per-modality auxiliary heads and modality dropout, trained on 30% of the images
    and half the reviews per epoch in batches of similar length: 2 epochs of 3 + 3 steps, run eagerly (train.eager).
    Shared by the two tests below (sentiment_loss fell from the first epoch to the second for train.seed 0-2)."""
    return omnifuse.train(
        tiny_config,
        overrides=[
            "train.epochs=2",
            "data.epoch_fraction=[0.3, 0.5]",
            "data.length_buckets=3",
            "train.unimodal_loss=0.5",
            "train.modality_dropout=0.3",
            *LIGHT,
        ],
        runs_root=tmp_path_factory.mktemp("light"),
        data_dir=str(data_dir),
    )


def test_epoch_fraction_and_length_buckets_set_the_steps_of_the_joint_model(trained_run, light_run):
    # 160 CIFAR-10 training images (after the 20% hold-out) = 10 batches of 16; 96 reviews = 6 batches
    full = json.loads((trained_run / "meta.json").read_text())["progress"]["steps_per_epoch"]
    assert full == 10 + 6
    # 30% of the images and half the reviews per epoch: 3 of their 10 batches, 3 of their 6; the reviews go in
    # batches of similar length (which changes how they are grouped, not how many batches there are), CIFAR-10's
    # images (no text) in plain batches
    meta = json.loads((light_run / "meta.json").read_text())
    assert meta["progress"]["steps_per_epoch"] == 3 + 3
    rows = list(csv.DictReader((light_run / "metrics.csv").open()))
    assert len(rows) == 2 and float(rows[1]["sentiment_loss"]) < float(rows[0]["sentiment_loss"])


def test_unimodal_loss_adds_auxiliary_heads_that_prediction_leaves_out(light_run, data_dir):
    run = light_run
    p = omnifuse.load(run)  # the saved model.keras, loaded once (without its training state)
    assert {"cifar10__image", "cifar10__text", "sentiment__image", "sentiment__text"} <= set(
        p.model.output_names
    )
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert float(rows[0]["cifar10__image_loss"]) > 0  # trained: images carry cifar10 labels
    answer = p.predict(text="a wonderful film")
    assert set(answer["tasks"]) == {"cifar10", "sentiment"}
    assert set(omnifuse.evaluate(run, data_dir=str(data_dir), worst_samples=False)["tasks"]) == {
        "cifar10",
        "sentiment",
    }


def test_evaluate_reports_per_task_metrics(trained_run, data_dir):
    result = CliRunner().invoke(app, ["evaluate", str(trained_run), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    metrics = json.loads((trained_run / "report" / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"cifar10", "sentiment"}
    assert metrics["tasks"]["cifar10"]["n"] == 60 and metrics["tasks"]["sentiment"]["n"] == 120
    # the fixtures are learnable: both tasks must beat chance clearly
    assert metrics["tasks"]["cifar10"]["accuracy"] > 0.2  # chance is 0.1
    assert metrics["tasks"]["sentiment"]["accuracy"] > 0.7
    assert (trained_run / "report" / "confusion_cifar10.png").stat().st_size > 1000
    report = (trained_run / "report" / "report.md").read_text()
    assert "| cifar10 | cifar10 | 60 |" in report
    # images-only batches weight the image fully, text-only batches the text
    assert metrics["modality_weights"]["cifar10"]["image"] == pytest.approx(1.0)
    assert metrics["modality_weights"]["imdb"]["text"] == pytest.approx(1.0)


def test_predict_from_raw_files(trained_run, tmp_path):
    img = np.zeros((50, 40, 3), np.uint8)
    img[..., 0] = 230
    Image.fromarray(img).save(tmp_path / "red.png")
    runner = CliRunner()
    both = runner.invoke(
        app,
        ["predict", str(trained_run), "--image", str(tmp_path / "red.png"), "--text", "great film", "--json"],
    )
    assert both.exit_code == 0, both.output
    answer = json.loads(both.output)
    assert set(answer["tasks"]) == {"cifar10", "sentiment"}
    assert sum(answer["tasks"]["cifar10"]["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
    w = answer["modality_weights"]
    assert w["image"] + w["text"] == pytest.approx(1.0, abs=1e-5) and 0 < w["text"] < 1

    text_only = json.loads(
        runner.invoke(app, ["predict", str(trained_run), "--text", "awful", "--json"]).output
    )
    assert text_only["modality_weights"] == {"image": 0.0, "text": 1.0}
    assert text_only["modalities_used"] == ["text"]


def test_api_mirrors_cli(trained_run):
    p = omnifuse.load(trained_run)
    answers = p.predict(
        batch=True, text=["a wonderful great film", None], image=[None, np.zeros((32, 32, 3), "uint8")]
    )
    assert answers[0]["modalities_used"] == ["text"] and answers[1]["modalities_used"] == ["image"]
    with pytest.raises(OmnifuseError, match="at least one modality"):
        p.predict()
    with pytest.raises(OmnifuseError, match="Unknown modality 'audio'"):
        p.predict(audio="x.wav")


def test_the_predictor_loads_the_model_without_its_training_state(trained_run):
    # it only answers: no optimizer, losses or metrics are rebuilt (a third of a small model's load), and its
    # answers are those of the model as saved
    import keras

    p = omnifuse.load(trained_run)
    saved = keras.saving.load_model(trained_run / "model.keras")
    assert saved.compiled and saved.optimizer is not None
    assert not p.model.compiled
    feed = {
        "image": np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3)).astype("uint8"),
        "image_mask": np.ones(3, "float32"),
        "text": np.array(["a great film", "dull", ""], object),
        "text_mask": np.array([1, 1, 0], "float32"),
    }
    ours, theirs = p.inference(feed), saved.predict_on_batch(feed)
    for name in theirs:
        np.testing.assert_allclose(ours[name], theirs[name], rtol=1e-5, atol=1e-6)


def test_predict_rejects_a_non_image_file(trained_run, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(OmnifuseError, match="notes.png"):
        omnifuse.load(trained_run).predict(image=str(bad))


class _Killed(Exception):
    pass


def test_resume_after_a_kill(data_dir, tiny_config, tmp_path, monkeypatch):
    from omnifuse import training

    original = training._RunCheckpoint.on_epoch_end

    def die_after_first_epoch(self, epoch, logs=None):
        original(self, epoch, logs)
        if epoch == 0:
            raise _Killed()

    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", die_after_first_epoch)
    # one batch of each set per epoch (a tenth of the 10 image batches, a sixth of the 6 review batches):
    # 1 + 1 steps, 6 in all, run eagerly (train.eager); the resumed run reads the same config
    with pytest.raises(_Killed):
        omnifuse.train(
            tiny_config,
            overrides=["data.epoch_fraction=[0.1, 0.17]", *LIGHT],
            runs_root=tmp_path,
            data_dir=str(data_dir),
        )
    run = tmp_path / "tiny-joint"
    assert json.loads((run / "meta.json").read_text())["progress"]["epochs_done"] == 1
    assert not (run / "model.keras").exists()
    monkeypatch.setattr(training._RunCheckpoint, "on_epoch_end", original)

    result = CliRunner().invoke(app, ["train", "--resume", str(run), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    meta = json.loads((run / "meta.json").read_text())
    assert meta["progress"]["epochs_done"] == 3 and meta["progress"]["finished"]
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [0, 1, 2], (
        "resume appends the remaining epochs, keeps the first"
    )
    assert (run / "model.keras").is_file()


def test_user_mistakes_exit_2_without_traceback(tmp_path, data_dir):
    bad = tmp_path / "bad.toml"
    bad.write_text('[train]\nepochs = "three"\n')
    lines = [
        ["train", str(bad), "--data-dir", str(data_dir)],
        ["train", "cifar10-cnn", "--set", "train.epochz=3"],
        ["predict", str(tmp_path / "no-such-run"), "--text", "hi"],
    ]
    # the command line's main() for each, one after the other in one fresh interpreter (tests/cli_lines.py)
    answers = run_lines(lines)
    first, second, third = (answers[tuple(line)] for line in lines)
    assert first["code"] == 2
    assert "train.epochs" in first["stderr"] and "Expected int" in first["stderr"]
    assert "Traceback" not in first["stderr"]

    assert second["code"] == 2 and "epochs" in second["stderr"] and "Traceback" not in second["stderr"]

    assert third["code"] == 2 and "no-such-run" in third["stderr"]
    assert not any(a["tensorflow"] for a in answers.values()), "each is answered before TensorFlow loads"


def test_a_data_error_leaves_no_run_directory(tiny_config, tmp_path):
    only_cifar = tmp_path / "data"
    write_cifar10(only_cifar, n_per_batch=4, n_test=4)  # no IMDb files: the joint config cannot load
    runs = tmp_path / "runs"
    with pytest.raises(OmnifuseError, match="aclImdb"):
        omnifuse.train(tiny_config, runs_root=runs, data_dir=str(only_cifar))
    assert not runs.exists() or not any(runs.iterdir())
