"""Frozen pretrained encoders' features computed once: training on them is training the full model, only cheaper."""

import json

import numpy as np
import pytest
from fixtures_media import write_fsdd
from keras_steps import outputs

import omnifuse
from omnifuse import features
from omnifuse.modelio import load_model

# Whisper tiny.en's real weights, frozen, on 0.25-0.6 s fixture clips of pure tones; dropout off, so training
# through the encoder and training on its cached features must give the same model
FROZEN = [
    "data.num_samples=2000",
    "train.epochs=2",  # two: the best epoch is chosen on validation in both runs alike
    "train.batch_size=16",
    "train.verbose=0",
    "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
    "train.early_stopping=0",
    "model.head_dropout=0.0",
    "model.head_hidden=16",
]


@pytest.fixture(scope="module")
def fsdd_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("fsdd")
    write_fsdd(root, speakers=("ann", "bob"), per_digit=6, archive="gz")  # (xz: tests/test_audio_data.py)
    return root


def _weights(run) -> dict[str, np.ndarray]:
    """Every array saved in the run's ``model.keras``, by its place in the file, read without building the model."""
    import io
    import zipfile

    import h5py

    with zipfile.ZipFile(run / "model.keras") as archive:
        data = io.BytesIO(archive.read("model.weights.h5"))
    found = {}
    with h5py.File(data, "r") as f:
        f.visititems(
            lambda name, item: found.update({name: item[()]}) if isinstance(item, h5py.Dataset) else None
        )
    return found


def _probabilities(run, inputs):
    model = load_model(run / "model.keras")
    return np.asarray(outputs(model, inputs)["digit"])  # eagerly: predict would trace Whisper first


def test_cached_features_train_the_same_model_as_the_encoder_itself(fsdd_dir, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("OMNIFUSE_CACHE", str(cache))
    cached = omnifuse.train("fsdd-pretrained", FROZEN, runs_root=tmp_path / "a", data_dir=str(fsdd_dir))
    direct = omnifuse.train(
        "fsdd-pretrained",
        [*FROZEN, "train.cache_features=false"],
        runs_root=tmp_path / "b",
        data_dir=str(fsdd_dir),
    )
    meta = json.loads((cached / "meta.json").read_text())
    assert meta["cached_features"] == ["audio"] and "cached_features" not in json.loads(
        (direct / "meta.json").read_text()
    )
    assert len(list((cache / "features").glob("audio-*.npy"))) == 3  # train, val, test: computed once each

    rng = np.random.default_rng(0)
    t = np.arange(2000) / 8000
    audio = (np.sin(2 * np.pi * rng.uniform(200, 900, (8, 1)) * t)).astype("float32")
    inputs = {"audio": audio, "audio_mask": np.ones(8, "float32")}
    # the temperature fitted through the head on the cached features is the one the full model would get
    from omnifuse.evaluation.calibration import temperatures

    t_cached = temperatures(meta)["digit"]
    t_direct = temperatures(json.loads((direct / "meta.json").read_text()))["digit"]
    assert t_cached == pytest.approx(t_direct, rel=1e-3)
    # the saved model is the full one (raw waveforms in), with the head trained on the cached features
    from_cached = _probabilities(cached, inputs)
    np.testing.assert_allclose(from_cached, _probabilities(direct, inputs), atol=2e-4)

    # a second run on the same data reads the features back instead of running the encoder again
    before = {p: p.stat().st_mtime_ns for p in (cache / "features").iterdir()}
    again = omnifuse.train("fsdd-pretrained", FROZEN, runs_root=tmp_path / "c", data_dir=str(fsdd_dir))
    assert {p: p.stat().st_mtime_ns for p in (cache / "features").iterdir()} == before
    # the same model: every saved weight as the first cached run's (read from the files: loading and running the
    # Whisper model a third time is what the probabilities above already showed)
    first, second = _weights(cached), _weights(again)
    assert len(first) > 10 and set(second) == set(first)
    for name, value in first.items():
        np.testing.assert_allclose(second[name], value, atol=1e-6, err_msg=name)
    metrics = omnifuse.evaluate(
        again, data_dir=str(fsdd_dir), worst_samples=False
    )  # evaluation runs the full model on raw audio
    assert metrics["tasks"]["digit"]["n"] > 0


def test_only_frozen_encoders_without_augmentation_are_cached():
    from omnifuse.config import load_config
    from omnifuse.model.builder import build_model

    def plan(overrides):
        cfg = load_config("brain-mri-pretrained", ["model.image.efficientnet_lite0.size=32", *overrides])
        model = build_model(cfg, {"image": "image"}, {"tumor": ["no", "yes"]}, image_shape=(32, 32, 1))
        return sorted(features.plan(model, ["image"]))

    assert plan([]) == ["image"]
    assert plan(["model.image.augment=true"]) == []  # random flips: the features change every epoch
    assert plan(["model.image.efficientnet_lite0.mode=finetune"]) == []
    assert plan(["model.image.efficientnet_lite0.dropout=0.2"]) == []
    assert plan(["model.image.encoder=cnn"]) == []  # learns from scratch


def test_cache_key_follows_the_code_an_encoder_builds_on(monkeypatch):
    # EfficientNet-Lite1's layer is a subclass naming its block table: a change to the shared layer's code (in
    # efficientnet_lite.py) must not read Lite1's features cached before it
    from pathlib import Path

    from omnifuse.encoders.image.efficientnet_lite1 import ImageEfficientNetLite1
    from omnifuse.model.branch import ModalityBranch

    branch = ModalityBranch(ImageEfficientNetLite1(size=32))
    x = np.zeros((2, 8, 8, 3), "uint8")
    before = features._key(branch, x)
    assert features._key(branch, x) == before
    read = Path.read_bytes
    monkeypatch.setattr(
        Path, "read_bytes", lambda p: read(p) + (b"# changed" if p.name == "efficientnet_lite.py" else b"")
    )
    assert features._key(branch, x) != before
