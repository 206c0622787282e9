"""AV-digits: FSDD recordings paired with MNIST images of the same digit, seeded and deterministic."""

from __future__ import annotations

import numpy as np
import pytest
from fixtures_media import write_fsdd, write_mnist
from numpy.lib.stride_tricks import sliding_window_view

from omnifuse.data import av_digits, fsdd, mnist
from omnifuse.errors import OmnifuseError


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """FSDD: 3 speakers x 10 digits x 6 takes (train 3 / test 15 per digit); MNIST: 20 / 5 images per digit."""
    root = tmp_path_factory.mktemp("av")
    write_fsdd(root / "fsdd", per_digit=6, archive="xz", variants=((8000, 1, "PCM_16"),))
    write_mnist(root / "mnist", n_train=200, n_test=50)
    return root


def test_pairs_same_digit_train_with_train_and_test_with_test(data_dir):
    ds = av_digits.load(data_dir=data_dir, degrade=False, num_samples=4000)
    digits, recordings = mnist.load(data_dir=data_dir), fsdd.load(data_dir=data_dir, num_samples=4000)
    assert ds.name == "av_digits" and ds.modalities == {"image": "image", "audio": "audio"}
    assert ds.tasks == {"digit": [str(d) for d in range(10)]} and list(ds.splits) == ["train", "test"]
    for name in ("train", "test"):
        split, index = ds[name], ds[name].extra["mnist_index"]
        assert split.inputs["image"].shape == (len(split), 28, 28, 1)
        assert split.inputs["audio"].shape == (len(split), 4000)
        np.testing.assert_array_equal(digits[name].labels["digit"][index], split.labels["digit"])
        np.testing.assert_array_equal(digits[name].inputs["image"][index], split.inputs["image"])
        np.testing.assert_array_equal(recordings[name].ids, split.ids)
        np.testing.assert_array_equal(recordings[name].inputs["audio"], split.inputs["audio"])
        np.testing.assert_array_equal(recordings[name].extra["speaker"], split.extra["speaker"])
    assert len(ds["train"]) == 30 and len(ds["test"]) == 150


def test_images_are_drawn_without_replacement_then_cycled(data_dir):
    ds = av_digits.load(data_dir=data_dir, degrade=False)
    train, test = ds["train"], ds["test"]
    assert len(set(train.extra["mnist_index"].tolist())) == len(
        train
    )  # 3 per digit, 20 images each: no repeat
    for d in range(10):
        used = test.extra["mnist_index"][test.labels["digit"] == d]
        # 15 recordings, 5 images: every image used exactly 3 times, in a repeated permutation
        assert np.unique(used, return_counts=True)[1].tolist() == [3, 3, 3, 3, 3]
        assert used[:5].tolist() == used[5:10].tolist() == used[10:].tolist()


def test_pairing_is_seeded(data_dir):
    a = av_digits.load(data_dir=data_dir, degrade=False, seed=0)
    b = av_digits.load(data_dir=data_dir, degrade=False, seed=0)
    c = av_digits.load(data_dir=data_dir, degrade=False, seed=1)
    np.testing.assert_array_equal(a["train"].extra["mnist_index"], b["train"].extra["mnist_index"])
    assert not np.array_equal(a["train"].extra["mnist_index"], c["train"].extra["mnist_index"])


def has_zero_square(image: np.ndarray, side: int) -> bool:
    return bool((sliding_window_view(image[..., 0], (side, side)).max(axis=(-1, -2)) == 0).any())


def test_degradation_is_deterministic_and_configurable(data_dir):
    clean = av_digits.load(data_dir=data_dir, degrade=False)["test"].inputs["image"]
    noisy = av_digits.load(data_dir=data_dir)["test"].inputs["image"]
    again = av_digits.load(data_dir=data_dir)["test"].inputs["image"]
    np.testing.assert_array_equal(noisy, again)
    assert noisy.dtype == np.uint8 and not np.array_equal(noisy, clean)
    assert np.abs(noisy.astype(float) - clean).mean() > 50  # strong noise by default
    assert not np.array_equal(noisy, av_digits.load(data_dir=data_dir, seed=5)["test"].inputs["image"])

    occluded = av_digits.load(data_dir=data_dir, degrade="occlude", occlude=10)["test"].inputs["image"]
    assert all(has_zero_square(image, 10) for image in occluded)
    assert not any(has_zero_square(image, 10) for image in clean)
    changed = (occluded != clean).reshape(len(clean), -1)
    assert changed.sum(axis=1).max() <= 100  # only the square changed

    only_noise = av_digits.load(data_dir=data_dir, degrade="noise", noise_std=20.0)["test"].inputs["image"]
    difference = only_noise.astype(float) - clean
    assert 10 < np.abs(difference).mean() < 20
    assert not any(has_zero_square(image, 10) for image in only_noise)


def test_loso_split_and_bad_arguments(data_dir):
    ds = av_digits.load(data_dir=data_dir, fsdd_split="loso:cid", degrade=False)
    assert set(ds["test"].extra["speaker"].tolist()) == {"cid"} and len(ds["test"]) == 60
    test_pool = mnist.load(data_dir=data_dir)["test"]
    np.testing.assert_array_equal(
        test_pool.inputs["image"][ds["test"].extra["mnist_index"]], ds["test"].inputs["image"]
    )
    with pytest.raises(OmnifuseError, match="degrade"):
        av_digits.load(data_dir=data_dir, degrade="blur")
    with pytest.raises(OmnifuseError, match="noise_std"):
        av_digits.load(data_dir=data_dir, noise_std=-1.0)
    with pytest.raises(OmnifuseError, match="occlude"):
        av_digits.load(data_dir=data_dir, occlude=28)


def test_missing_digit_in_mnist_is_an_error(tmp_path):
    write_fsdd(tmp_path / "fsdd", speakers=("ann",), per_digit=6, variants=((8000, 1, "PCM_16"),))
    write_mnist(tmp_path / "mnist", n_train=9, n_test=10)  # train lacks digit 9
    with pytest.raises(OmnifuseError, match=r"MNIST train images of digit 9.*Received: none"):
        av_digits.load(data_dir=tmp_path)


def test_audio_noise_is_seeded_per_recording_at_the_asked_snr(data_dir):
    clean = av_digits.load(data_dir=data_dir, degrade=False)["test"]
    noisy = av_digits.load(data_dir=data_dir, degrade=False, audio_noise=1.0)["test"]
    again = av_digits.load(data_dir=data_dir, degrade=False, audio_noise=1.0)["test"]
    np.testing.assert_array_equal(noisy.inputs["audio"], again.inputs["audio"])
    np.testing.assert_array_equal(noisy.inputs["image"], clean.inputs["image"])  # images untouched
    noise = noisy.inputs["audio"] - clean.inputs["audio"]
    rms = np.sqrt(np.mean(clean.inputs["audio"].astype(np.float64) ** 2, axis=1))
    ratio = np.sqrt(np.mean(noise.astype(np.float64) ** 2, axis=1)) / rms
    np.testing.assert_allclose(ratio, 1.0, rtol=0.1)  # noise std = 1 x the recording's RMS: 0 dB SNR
    other = av_digits.load(data_dir=data_dir, degrade=False, audio_noise=1.0, seed=3)["test"]
    assert not np.array_equal(other.inputs["audio"], noisy.inputs["audio"])
    with pytest.raises(OmnifuseError, match="audio_noise"):
        av_digits.load(data_dir=data_dir, audio_noise=-0.5)
