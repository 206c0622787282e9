"""End to end for the audio and medical presets on fixtures in the real formats: train -> evaluate -> predict."""

import json

import numpy as np
import pytest
from fixtures_media import tone, wav_bytes, write_brain_mri, write_fsdd, write_mnist

import omnifuse

FAST = [
    "train.epochs=4",
    "train.batch_size=16",
    "train.verbose=0",
    "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
    "train.early_stopping=0",
    "model.audio.cnn.filters=[8, 16]",
    "model.audio.cnn.dense_units=16",
    "model.image.cnn.filters=[8, 16]",
    "model.image.cnn.dense_units=16",
    "model.fusion_dim=16",
]


@pytest.fixture(scope="module")
def media_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("media")
    write_fsdd(root, per_digit=8, archive="gz")  # (the .tar.xz layout is tests/test_audio_data.py's)
    write_mnist(root, n_train=300, n_test=100)
    write_brain_mri(root, n_yes=15, n_no=10)
    return root


def test_fsdd_train_evaluate_predict(media_dir, tmp_path):
    run = omnifuse.train(
        "fsdd",
        FAST + ["train.epochs=15", "train.learning_rate=5e-3"],
        runs_root=tmp_path,
        data_dir=str(media_dir),
    )
    metrics = omnifuse.evaluate(run, data_dir=str(media_dir), worst_samples=False)
    digit = metrics["tasks"]["digit"]
    assert digit["n"] == 3 * 10 * 5  # takes 0-4 of each speaker and digit are the official test split
    assert digit["accuracy"] > 0.3  # pure tones per digit: learnable, chance is 0.1

    wav = tmp_path / "seven.wav"
    wav.write_bytes(wav_bytes(tone(7, 16000, 0.5, np.random.default_rng(1)), 16000, 2, "PCM_16"))
    p = omnifuse.load(run)
    answer = p.predict(audio=str(wav))  # 16 kHz stereo: resampled and mixed down
    assert set(answer["tasks"]["digit"]["probabilities"]) == {str(d) for d in range(10)}
    with pytest.raises(omnifuse.OmnifuseError, match="seven.txt"):
        (tmp_path / "seven.txt").write_text("not audio")
        p.predict(audio=str(tmp_path / "seven.txt"))


def test_fsdd_leave_one_speaker_out(media_dir):
    from omnifuse import pipeline
    from omnifuse.config import load_config
    from omnifuse.data.catalog import load_datasets

    cfg = load_config("fsdd", ["data.split=loso:bob"])
    prepared = pipeline.prepare(cfg, load_datasets(cfg, str(media_dir)))
    part = prepared.parts[0]
    assert len(part.test) == 10 * 8  # every take of bob ...
    assert set(part.test.extra["speaker"]) == {"bob"}
    assert "bob" not in set(part.train.extra["speaker"]) | set(
        part.val.extra["speaker"]
    )  # ... and none in training


def test_av_digits_both_modalities_and_weights(media_dir, tmp_path):
    # one step (16 training samples, one epoch): what is checked (the test split's size, the modality weights' shape
    # and masking) needs no learning; the robustness section is test_fusions.py's
    # (test_robustness_report_and_predictions_csv)
    run = omnifuse.train(
        "av-digits",
        FAST + ["train.epochs=1", "data.limit_train=16"],
        runs_root=tmp_path,
        data_dir=str(media_dir),
    )
    metrics = omnifuse.evaluate(run, data_dir=str(media_dir), robustness=False, worst_samples=False)
    assert metrics["tasks"]["digit"]["n"] == 150
    weights = metrics["modality_weights"]["av_digits"]
    assert set(weights) == {"audio", "image"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-4)
    p = omnifuse.load(run)
    image_only = p.predict(image=np.zeros((28, 28, 1), np.uint8))
    assert image_only["modality_weights"] == {"audio": 0.0, "image": 1.0}


def test_brain_mri_cross_validation_fold(media_dir, tmp_path):
    run = omnifuse.train(
        "brain-mri",
        FAST + ["data.image_size=32", "data.fold=2", "model.image.augment=false", "train.epochs=1"],
        runs_root=tmp_path,
        data_dir=str(media_dir),
    )
    meta = json.loads((run / "meta.json").read_text())
    assert meta["samples"]["brain_mri"]["test"] == 5  # 25 images, 5 stratified folds
    metrics = omnifuse.evaluate(run, data_dir=str(media_dir), worst_samples=False)
    assert metrics["tasks"]["tumor"]["roc_auc"] is not None
