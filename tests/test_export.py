"""Export: each format's artifact answers like the run's model (within the stated tolerance) and has a model card."""

import json

import keras
import numpy as np
import pytest
from fixtures_serving import png_bytes, trained_run
from typer.testing import CliRunner

import omnifuse
from omnifuse.cli import app as cli_app
from omnifuse.export import TOLERANCE, export


@pytest.fixture(scope="module")
def joint(tmp_path_factory):
    return omnifuse.load(trained_run(tmp_path_factory, "tiny-joint"))


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    """Image only, with the default random augmentation, which an export must leave out."""
    return omnifuse.load(trained_run(tmp_path_factory, "tiny-image", evaluate=True))


def _inputs(predictor):
    """Real inputs as a user gives them (PNG bytes, sentences; a text-only sample where there is text), encoded."""
    columns = {"image": [png_bytes(label=k, seed=k) for k in range(4)]}
    if "text" in predictor.modalities:
        columns["image"][-1] = None
        columns["text"] = ["a wonderful film", None, "dull and far too long", "great"]
    return predictor.encode(batch=True, **columns)


def _assert_close(outputs, predictor, feed):
    want = predictor.predict_feed(feed)
    for i, answer in enumerate(want):
        for task, res in answer["tasks"].items():
            if not res["answerable"]:  # no input for this task: the API gives no probabilities to compare
                continue
            got = np.asarray(outputs[task])[i]
            assert np.abs(got - np.array(list(res["probabilities"].values()))).max() <= TOLERANCE
        if "modality_weights" in answer:
            got = np.asarray(outputs["modality_weights"])[i]
            assert np.abs(got - np.array(list(answer["modality_weights"].values()))).max() <= TOLERANCE


def test_keras_export_answers_like_the_run_and_has_a_model_card(joint, tmp_path):
    result = export(joint, "keras", tmp_path / "keras")
    assert result["artifact"] == tmp_path / "keras" / "model.keras"
    assert result["max_abs_diff"] <= TOLERANCE
    feed = _inputs(joint)
    _assert_close(keras.saving.load_model(result["artifact"]).predict_on_batch(feed), joint, feed)

    card = result["card"].read_text()
    for section in ("## Model", "## Inputs", "## Outputs", "## Data", "## Metrics", "## Intended use"):
        assert section in card
    assert "| `image` | image | uint8 | (batch, 32, 32, 3) |" in card
    assert "| `text_mask` | mask | float32 | (batch,) |" in card
    assert "airplane, automobile, bird" in card and "neg, pos" in card
    assert "| cifar10 | cifar-10-python.tar.gz |" in card  # the file, not the trainer's folders
    assert "Not evaluated yet" in card  # this run has no report/metrics.json
    # a joint model: its tasks answered without their modality are named as out of scope
    assert "A joint model of 2 data sets (cifar10, imdb)" in card
    info = json.loads(result["info"].read_text())
    assert info["outputs"]["sentiment"]["classes"] == ["neg", "pos"]
    assert [i["name"] for i in info["inputs"]] == ["image", "image_mask", "text", "text_mask"]


def test_savedmodel_export_runs_with_tensorflow_alone_and_without_augmentation(image_run, joint, tmp_path):
    import tensorflow as tf

    for predictor in (image_run, joint):
        result = export(predictor, "savedmodel", tmp_path / predictor.run_dir.name)
        assert (result["artifact"] / "saved_model.pb").is_file()
        feed = _inputs(predictor)
        loaded = tf.saved_model.load(str(result["artifact"]))
        outputs = loaded.serve({k: tf.constant(v) for k, v in feed.items()})
        # twice: a random flip or shift left in the graph would change the answer
        again = loaded.serve({k: tf.constant(v) for k, v in feed.items()})
        _assert_close({k: v.numpy() for k, v in outputs.items()}, predictor, feed)
        _assert_close({k: v.numpy() for k, v in again.items()}, predictor, feed)
    card = (tmp_path / "tiny-image" / "MODEL_CARD.md").read_text()
    metrics = json.loads((image_run.run_dir / "report" / "metrics.json").read_text())
    assert f"| cifar10 | cifar10 | 20 | {metrics['tasks']['cifar10']['accuracy']:.4f} |" in card


def test_onnx_export_of_an_image_model_runs_in_onnxruntime(image_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("tf2onnx")
    result = export(image_run, "onnx", tmp_path)
    session = ort.InferenceSession(str(result["artifact"]), providers=["CPUExecutionProvider"])
    feed = _inputs(image_run)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})))
    assert set(names) == {"cifar10", "modality_weights"}
    _assert_close(outputs, image_run, feed)
    assert "onnxruntime" in result["card"].read_text()

    # a model loaded in bfloat16 is exported as float32 layers with the same weights: it answers as float32 does
    fast = omnifuse.load(image_run.run_dir, precision="bfloat16")
    result = export(fast, "onnx", tmp_path / "from-bfloat16")
    session = ort.InferenceSession(str(result["artifact"]), providers=["CPUExecutionProvider"])
    outputs = dict(zip(names, session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})))
    _assert_close(outputs, image_run, feed)


def test_onnx_export_of_a_text_model_is_a_clear_error(joint, tmp_path):
    with pytest.raises(omnifuse.OmnifuseError, match="text input 'text'.*--format savedmodel"):
        export(joint, "onnx", tmp_path)
    assert not list(tmp_path.iterdir()), "nothing is written for a model that cannot be exported"


def test_cli_export_mistakes_name_what_was_expected(joint):
    runner = CliRunner()
    bad = runner.invoke(cli_app, ["export", str(joint.run_dir), "--format", "tflite"])
    assert isinstance(bad.exception, omnifuse.OmnifuseError) and "keras, savedmodel, onnx" in str(
        bad.exception
    )
    text = runner.invoke(cli_app, ["export", str(joint.run_dir), "--format", "onnx"])
    assert isinstance(text.exception, omnifuse.OmnifuseError) and "savedmodel" in str(text.exception)
