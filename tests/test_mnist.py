"""The MNIST IDX loader, on IDX files written here (gzipped and plain)."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from fixtures_media import idx_bytes, write_mnist

from omnifuse.data import mnist
from omnifuse.errors import OmnifuseError


@pytest.fixture(autouse=True)
def _offline(tmp_path, monkeypatch):
    monkeypatch.setenv("OMNIFUSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("OMNIFUSE_NO_DOWNLOAD", "1")
    monkeypatch.delenv("OMNIFUSE_DATA", raising=False)


def bar_row(image: np.ndarray) -> int:
    """The digit drawn by fixtures_media.digit_images: the bright bar sits on row 3 + 2 * digit."""
    return (int(np.argmax((image[..., 0] == 255).sum(axis=1))) - 3) // 2


@pytest.mark.parametrize("gz", [True, False])
def test_load_official_idx_files(tmp_path, gz):
    write_mnist(tmp_path / "mnist", n_train=120, n_test=30, gz=gz)
    ds = mnist.load(data_dir=tmp_path)  # found in the "mnist" subfolder
    assert ds.name == "mnist" and ds.modalities == {"image": "image"}
    assert ds.tasks == {"digit": [str(d) for d in range(10)]}
    train, test = ds["train"], ds["test"]
    assert train.inputs["image"].shape == (120, 28, 28, 1) and train.inputs["image"].dtype == np.uint8
    assert test.inputs["image"].shape == (30, 28, 28, 1)
    assert np.bincount(train.labels["digit"]).tolist() == [12] * 10
    assert train.ids.tolist() == list(range(120))
    for split in (train, test):
        assert [bar_row(img) for img in split.inputs["image"]] == split.labels["digit"].tolist()


def test_read_idx_parses_the_header_and_other_types(tmp_path):
    array = np.arange(24, dtype=">i4").reshape(2, 3, 4)
    path = tmp_path / "ints-idx3"
    path.write_bytes(bytes([0, 0, 0x0C, 3]) + np.array([2, 3, 4], ">u4").tobytes() + array.tobytes())
    out = mnist.read_idx(path)
    assert out.dtype == np.int32 and out.dtype.isnative and out.tolist() == array.tolist()
    (tmp_path / "labels.gz").write_bytes(gzip.compress(idx_bytes(np.array([7, 2, 1], np.uint8))))
    assert mnist.read_idx(tmp_path / "labels.gz").tolist() == [7, 2, 1]


def test_bad_magic_names_the_file(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=10)
    (root / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x08\x03\x00\x00" + bytes(100)))
    with pytest.raises(OmnifuseError, match=r"train-images-idx3-ubyte\.gz' starting with 08 03 00 00"):
        mnist.load(data_dir=root)


def test_size_mismatch_names_the_file(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=10)
    data = gzip.decompress((root / "t10k-images-idx3-ubyte.gz").read_bytes())
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(data[:-5]))
    with pytest.raises(OmnifuseError, match=r"Expected 7856 bytes in '.*t10k-images-idx3-ubyte\.gz'.*7851"):
        mnist.load(data_dir=root)


def test_label_image_count_mismatch_names_both_files(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=10)
    (root / "train-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(19, np.uint8))))
    with pytest.raises(
        OmnifuseError, match=r"20 images in '.*train-images.*' and 19 labels in '.*train-labels"
    ):
        mnist.load(data_dir=root)


def test_wrong_kind_of_file_and_bad_labels(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=10)
    # labels where images should be: right format, wrong shape
    (root / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(10, np.uint8))))
    with pytest.raises(OmnifuseError, match=r"uint8 images.*t10k-images-idx3-ubyte\.gz.*\(10,\)"):
        mnist.load(data_dir=root)
    write_mnist(tmp_path, n_train=20, n_test=10)
    (root / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(10, 12, np.uint8))))
    with pytest.raises(OmnifuseError, match=r"0-9.*12.*t10k-labels"):
        mnist.load(data_dir=root)


def test_corrupt_gzip_and_missing_files(tmp_path):
    root = write_mnist(tmp_path, n_train=20, n_test=10)
    good = (root / "train-labels-idx1-ubyte.gz").read_bytes()
    (root / "train-labels-idx1-ubyte.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(OmnifuseError, match=r"train-labels-idx1-ubyte\.gz.*decompressed"):
        mnist.load(data_dir=root)
    (root / "train-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(OmnifuseError, match=r"train-labels-idx1-ubyte\.gz"):
        mnist.load(data_dir=root)
