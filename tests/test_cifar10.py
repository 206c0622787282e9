import numpy as np
import pytest
from fixtures import CIFAR10_LABELS, cifar10_batches, py2_pickle, tar_bytes, write_cifar10

from omnifuse.data import cifar10
from omnifuse.errors import OmnifuseError

N, N_TEST = 20, 40


def _expected_images(rows: np.ndarray) -> np.ndarray:
    """Images built pixel by pixel from the official row layout: value (y, x, c) is at c*1024 + y*32 + x."""
    y, x, c = np.meshgrid(np.arange(32), np.arange(32), np.arange(3), indexing="ij")
    return rows[:, c * 1024 + y * 32 + x]


@pytest.mark.parametrize("archive", [True, False], ids=["tar.gz", "folder"])
def test_load_matches_what_was_written(tmp_path, archive):
    path = write_cifar10(tmp_path, n_per_batch=N, n_test=N_TEST, seed=3, archive=archive)
    ds = cifar10.load(data_dir=tmp_path)
    written = cifar10_batches(N, N_TEST, seed=3)

    assert ds.name == "cifar10" and ds.source == str(path)
    assert ds.modalities == {"image": "image"}
    assert ds.tasks == {"cifar10": CIFAR10_LABELS}
    assert set(ds.splits) == {"train", "test"}
    train, test = ds["train"], ds["test"]

    rows = np.concatenate([written[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    labels = np.concatenate([written[f"data_batch_{i}"][b"labels"] for i in range(1, 6)])
    assert train.inputs["image"].dtype == np.uint8 and train.inputs["image"].shape == (5 * N, 32, 32, 3)
    np.testing.assert_array_equal(train.inputs["image"], _expected_images(rows))
    assert train.labels["cifar10"].dtype == np.int64
    np.testing.assert_array_equal(train.labels["cifar10"], labels)
    np.testing.assert_array_equal(train.ids, np.arange(5 * N))

    assert test.inputs["image"].shape == (N_TEST, 32, 32, 3)
    np.testing.assert_array_equal(test.inputs["image"], _expected_images(written["test_batch"][b"data"]))
    np.testing.assert_array_equal(test.labels["cifar10"], written["test_batch"][b"labels"])
    np.testing.assert_array_equal(test.ids, np.arange(N_TEST))
    assert train.inputs["image"].flags.c_contiguous


def test_known_pixel(tmp_path):
    """One green value at row 3, column 5 of the first image must land at image[0, 3, 5, 1]."""
    folder = write_cifar10(tmp_path, n_per_batch=2, n_test=2, archive=False)
    batch = cifar10_batches(2, 2)["data_batch_1"]
    batch[b"data"] = np.zeros((2, 3072), dtype=np.uint8)
    batch[b"data"][0, 1024 + 3 * 32 + 5] = 200
    (folder / "data_batch_1").write_bytes(py2_pickle(batch))
    image = cifar10.load(data_dir=tmp_path)["train"].inputs["image"][0]
    assert image[3, 5, 1] == 200
    assert image.sum() == 200


def test_fixture_is_learnable(tmp_path):
    write_cifar10(tmp_path, n_per_batch=20, n_test=40)
    ds = cifar10.load(data_dir=tmp_path)
    x, y = ds["train"].inputs["image"].reshape(100, -1).astype(float), ds["train"].labels["cifar10"]
    centroids = np.stack([x[y == k].mean(0) for k in range(10)])
    xt = ds["test"].inputs["image"].reshape(40, -1).astype(float)
    predicted = np.argmin(((xt[:, None] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == ds["test"].labels["cifar10"]).mean() > 0.5


def _archive_with(tmp_path, members: dict[str, bytes]):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(tar_bytes({f"cifar-10-batches-py/{k}": v for k, v in members.items()}, "gz"))
    return path


def _good_members(n: int = 2) -> dict[str, bytes]:
    return {name: py2_pickle(content) for name, content in cifar10_batches(n, n).items()}


def test_truncated_archive(tmp_path):
    data = write_cifar10(tmp_path, n_per_batch=4, n_test=4).read_bytes()
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OmnifuseError, match="truncated") as info:
        cifar10.load(data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_not_an_archive(tmp_path):
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(b"<html>404 Not Found</html>" * 10)
    with pytest.raises(OmnifuseError, match="tar archive") as info:
        cifar10.load(data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_missing_member(tmp_path):
    members = _good_members()
    del members["data_batch_3"]
    path = _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match="Missing: data_batch_3") as info:
        cifar10.load(data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_missing_file_in_folder(tmp_path):
    folder = write_cifar10(tmp_path, n_per_batch=2, n_test=2, archive=False)
    (folder / "batches.meta").unlink()
    with pytest.raises(OmnifuseError, match="Missing: batches.meta") as info:
        cifar10.load(data_dir=tmp_path)
    assert str(folder) in str(info.value)


def test_wrong_row_length(tmp_path):
    members = _good_members()
    batch = cifar10_batches(2, 2)["data_batch_2"]
    batch[b"data"] = np.zeros((2, 3000), dtype=np.uint8)
    members["data_batch_2"] = py2_pickle(batch)
    _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match=r"data_batch_2.*uint8 \(N, 3072\)\. Received: uint8 \(2, 3000\)"):
        cifar10.load(data_dir=tmp_path)


def test_label_count_and_range(tmp_path):
    members = _good_members()
    batch = cifar10_batches(2, 2)["test_batch"]
    batch[b"labels"] = [1]
    members["test_batch"] = py2_pickle(batch)
    _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match=r"Expected 2 labels in '.*test_batch'"):
        cifar10.load(data_dir=tmp_path)
    batch[b"labels"] = [1, 10]
    members["test_batch"] = py2_pickle(batch)
    _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match=r"labels in 0\.\.9 in '.*test_batch'"):
        cifar10.load(data_dir=tmp_path)


def test_corrupt_and_hostile_pickles(tmp_path):
    members = _good_members()
    members["data_batch_4"] = members["data_batch_4"][:100]
    _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match=r"data_batch_4.*cannot be unpickled"):
        cifar10.load(data_dir=tmp_path)

    members = _good_members()
    members["batches.meta"] = b"\x80\x02cos\nsystem\nU\x04trueq\x00\x85R."  # would run `true` if unpickled
    _archive_with(tmp_path, members)
    with pytest.raises(OmnifuseError, match=r"batches\.meta.*refusing to load global os\.system"):
        cifar10.load(data_dir=tmp_path)
