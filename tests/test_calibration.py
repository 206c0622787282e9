"""Calibration: ECE and NLL, the temperature fitted after training, and its use in predict, export and the report."""

import json

import keras
import numpy as np
import pytest
from fixtures import write_cifar10
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app
from omnifuse.evaluation import calibration
from omnifuse.export import export

# head_scale multiplies the head's logits before the softmax: a deliberately over-confident model
OVERCONFIDENT = """
name = "overconfident"
[data]
sets = ["cifar10"]
val_fraction = 0.3
[model]
fusion = "concat"
fusion_dim = 8
head_scale = 40.0
[model.image]
augment = false
[model.image.cnn]
filters = [4, 8]
dense_units = 8
[train]
epochs = 2
batch_size = 16
learning_rate = 5e-3
early_stopping = 0
verbose = 0
[track]
tensorboard = false  # tests/test_tracking.py checks the logs
"""


def _sharpened(n=4000, classes=4, temperature=3.0, seed=0):
    """Labels drawn from true probabilities, and those probabilities sharpened by ``temperature`` (over-confident)."""
    rng = np.random.default_rng(seed)
    true = rng.dirichlet(np.ones(classes) * 0.7, n)
    labels = np.array([rng.choice(classes, p=p) for p in true])
    return calibration.scale(true, 1.0 / temperature), labels


def test_ece_of_a_known_case():
    # 10 samples at confidence 0.9 of which 6 are right: |0.6 - 0.9| = 0.3
    probs = np.tile([0.9, 0.1], (10, 1))
    labels = np.array([0] * 6 + [1] * 4)
    assert calibration.ece(probs, labels) == pytest.approx(0.3)
    assert calibration.nll(probs, labels) == pytest.approx(-(6 * np.log(0.9) + 4 * np.log(0.1)) / 10)
    table = calibration.reliability(probs, labels)
    assert sum(table["count"]) == 10 and table["count"][13] == 10  # 0.9 lies in (13/15, 14/15]
    # unlabelled samples (-1) count for nothing
    assert calibration.ece(probs, np.full(10, -1)) is None


def test_temperature_scaling_undoes_over_confidence():
    probs, labels = _sharpened(temperature=3.0)
    t = calibration.fit_temperature(probs, labels)
    assert 2.4 < t < 3.6
    found = calibration.summary(probs, labels, t)
    assert found["ece_after"] < 0.5 * found["ece_before"]
    assert found["nll_after"] < found["nll_before"]
    scaled = calibration.scale(probs, t)
    assert np.allclose(scaled.sum(axis=1), 1.0, atol=1e-6)
    assert (scaled.argmax(axis=1) == probs.argmax(axis=1)).all()  # the same predictions, so the same accuracy


def test_an_under_confident_model_gets_a_temperature_below_one():
    probs, labels = _sharpened(temperature=0.5, seed=1)
    assert calibration.fit_temperature(probs, labels) < 0.7


def test_a_validation_split_without_errors_fits_no_temperature():
    # every sample right: the NLL only falls as T does, down to the bound; nothing says the model is too unsure
    probs = np.tile([0.7, 0.2, 0.1], (50, 1))
    labels = np.zeros(50, int)
    assert calibration.fit_temperature(probs, labels) == 1.0
    labels[0] = 1  # one error is evidence: the fit runs again
    assert calibration.fit_temperature(probs, labels) != 1.0


class _FirstEpochBest(keras.callbacks.Callback):
    """Reports a validation loss that makes the first epoch the best (the run's checkpoint reads it after us)."""

    def on_epoch_end(self, epoch, logs=None):
        logs["val_loss"] = 1.0 if epoch == 0 else 9.0


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """The over-confident model, 2 epochs, of which the first is made the best (``_FirstEpochBest``): its model,
    temperature and report are the first epoch's, told apart from the last's in the best-epoch test below.
    Training's end must keep the best epoch's weights from its checkpoint, not read them back from the file."""
    root = tmp_path_factory.mktemp("calibration")
    write_cifar10(root / "data", n_per_batch=16, n_test=40)
    config = root / "overconfident.toml"
    config.write_text(OVERCONFIDENT)

    def read_back(*args, **kwargs):
        raise AssertionError(
            "the best epoch's weights are kept from its checkpoint, not read back from the file"
        )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(keras.Model, "load_weights", read_back)
        path = omnifuse.train(
            config, runs_root=root / "runs", data_dir=str(root / "data"), callbacks=[_FirstEpochBest()]
        )
    return path, root / "data"


def test_training_fits_a_temperature_that_softens_an_over_confident_model(run):
    path, _ = run
    meta = json.loads((path / "meta.json").read_text())
    record = meta["calibration"]["tasks"]["cifar10"]
    assert record["temperature"] > 1.3  # softens
    assert record["n"] > 0
    assert record["ece_after"] < record["ece_before"]
    assert record["nll_after"] < record["nll_before"]


def test_the_temperature_is_fitted_on_the_best_epoch_s_model_not_the_last(run):
    from omnifuse import pipeline
    from omnifuse.config import read_run_config
    from omnifuse.data.catalog import load_datasets
    from omnifuse.modelio import load_model

    path, data = run
    meta = json.loads((path / "meta.json").read_text())
    assert meta["progress"]["best_epoch"] == 1 and meta["progress"]["epochs_done"] == 2
    cfg = read_run_config(path)
    prepared = pipeline.prepare(cfg, load_datasets(cfg, str(data)))

    def temperature(checkpoint):
        fitted = calibration.fit_run(load_model(path / "checkpoints" / checkpoint), prepared, 16)
        return fitted["tasks"]["cifar10"]["temperature"]

    best, last = temperature("best.keras"), temperature("last.keras")
    assert abs(best - last) > 1e-3  # the two epochs' models differ, so the check below can tell them apart
    assert meta["calibration"]["tasks"]["cifar10"]["temperature"] == pytest.approx(best, rel=1e-4)


def test_predict_applies_the_temperature_unless_told_not_to(run, tmp_path):
    path, _ = run
    images = list(np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8))
    raw = omnifuse.load(path, calibrated=False)
    calibrated = omnifuse.load(path)
    t = calibrated.temperatures["cifar10"]
    assert raw.temperatures == {}
    got = [a["tasks"]["cifar10"]["probabilities"] for a in calibrated.predict(batch=True, image=images)]
    want = [a["tasks"]["cifar10"]["probabilities"] for a in raw.predict(batch=True, image=images)]
    got, want = np.array([list(p.values()) for p in got]), np.array([list(p.values()) for p in want])
    assert np.allclose(got, calibration.scale(want, t), atol=1e-5)
    assert got.max() < want.max()  # softened

    from PIL import Image

    Image.fromarray(images[0]).save(tmp_path / "x.png")
    runner = CliRunner()
    cli = [
        json.loads(
            runner.invoke(
                app, ["predict", str(path), "--image", str(tmp_path / "x.png"), "--json", *flag]
            ).output
        )
        for flag in ([], ["--no-calibration"])
    ]
    on, off = (np.array(list(a["tasks"]["cifar10"]["probabilities"].values())) for a in cli)
    assert np.allclose(on, calibration.scale(off, t), atol=1e-5)
    assert not np.allclose(on, off, atol=1e-3)


def test_an_exported_model_answers_with_the_calibrated_probabilities(run, tmp_path):
    path, _ = run
    predictor = omnifuse.load(path)
    result = export(predictor, "keras", tmp_path / "keras")
    info = json.loads(result["info"].read_text())
    assert info["temperatures"] == predictor.temperatures
    feed = predictor.encode(batch=True, image=list(np.zeros((2, 32, 32, 3), np.uint8) + 128))
    got = keras.saving.load_model(result["artifact"]).predict_on_batch(feed)["cifar10"]
    want = [list(a["tasks"]["cifar10"]["probabilities"].values()) for a in predictor.predict_feed(feed)]
    assert np.allclose(got, want, atol=1e-5)
    raw = export(path, "keras", tmp_path / "raw", calibrated=False)
    assert json.loads(raw["info"].read_text())["temperatures"] == {}


def test_evaluate_reports_ece_before_and_after_with_reliability_diagrams(run):
    path, data = run
    results = omnifuse.evaluate(path, data_dir=str(data), worst_samples=False)
    found = results["tasks"]["cifar10"]["calibration"]
    assert found["ece_after"] < found["ece_before"]
    assert found["temperature"] == pytest.approx(omnifuse.load(path).temperatures["cifar10"], rel=1e-5)
    assert (path / "report" / "reliability_cifar10.png").is_file()
    report = (path / "report" / "report.md").read_text()
    assert "## Calibration" in report and "![reliability cifar10](reliability_cifar10.png)" in report
    # the rest of the report, from the same command
    assert "## Learning curves" in report and (path / "report" / "learning_curves.png").is_file()
    assert "## Per-class metrics (test)" in report and "| airplane |" in report
    page = (path / "report" / "report.html").read_text()
    assert (
        page.count("data:image/png;base64,") == report.count("](") - 1
    )  # every plot inline; the CSV link not


def test_the_model_card_has_metadata_per_class_metrics_calibration_and_limitations(run, tmp_path):
    path, data = run
    if not (path / "report" / "metrics.json").is_file():
        omnifuse.evaluate(path, data_dir=str(data), worst_samples=False)
    card = export(path, "keras", tmp_path / "card")["card"].read_text()
    front, body = card.split("\n---\n", 1)
    assert front.startswith("---\nlicense: ") and "pipeline_tag: image-classification" in front
    assert "datasets:\n  - cifar10" in front and "  - expected_calibration_error" in front
    assert "{type: accuracy, value: " in front
    assert "### Per class (test)" in body and "| airplane |" in body
    t = omnifuse.load(path).temperatures["cifar10"]
    assert f"| cifar10 | {t:.3f} |" in body and "| applied |" in body
    assert "## Training hardware and time" in body and "not recorded" not in body
    assert "## Limitations and out-of-scope uses" in body
    assert "joint model" not in body  # one data set: no tasks answered without their modality
    assert "## Pretrained encoders" not in body  # every encoder learnt from scratch
