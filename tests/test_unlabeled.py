"""Unlabelled samples as an input (data.unlabeled, labels_per_class, labeled_where): read in the official format,
deduplicated against the test split, counted."""

import numpy as np
import pytest
from fixtures import aclimdb_reviews, tar_bytes, write_aclimdb
from fixtures_media import write_fsdd

from omnifuse.config import load_config
from omnifuse.data import Dataset, Split, unlabeled
from omnifuse.data.catalog import load_datasets
from omnifuse.errors import OmnifuseError

N = 6  # labelled reviews per class and split


def _write_unsup(root, reviews: list[str]):
    """``root/aclImdb_unsup.tar.xz`` in the official layout: train/unsup/<id>_0.txt and urls_unsup.txt."""
    files = {"aclImdb": None, "aclImdb/train": None, "aclImdb/train/unsup": None}
    files |= {f"aclImdb/train/unsup/{i}_0.txt": text.encode("utf-8") for i, text in enumerate(reviews)}
    files["aclImdb/train/urls_unsup.txt"] = b"".join(
        f"http://www.imdb.com/title/tt{900000 + i:07d}/usercomments\n".encode() for i in range(len(reviews))
    )
    (root / "aclImdb_unsup.tar.xz").write_bytes(tar_bytes(files, "xz"))


def test_imdb_unsup_read_and_test_copies_dropped(tmp_path):
    write_aclimdb(tmp_path, n_per_class=N, archive="xz")
    written = aclimdb_reviews(N)
    test_texts = [r[4] for r in written if r[0] == "test"]
    train_text = next(r[4] for r in written if r[0] == "train")
    fresh = [f"An unlabelled review number {i}, about a film." for i in range(5)]
    reviews = [
        *fresh,
        test_texts[0],  # byte-identical to a test review: dropped
        "  " + test_texts[1].upper().replace(" ", " \n\t "),  # the same after whitespace and case: dropped
        train_text,  # a copy of a training review leaks nothing about the test score: kept
    ]
    _write_unsup(tmp_path, reviews)
    cfg = load_config("imdb-bigru", ["data.unlabeled=unsup"])
    (ds,) = load_datasets(cfg, data_dir=str(tmp_path))
    got = ds["unlabeled"]
    assert got.inputs["text"].tolist() == [*fresh, train_text]  # in id order, copies of test reviews gone
    assert got.labels == {} and got.ids.tolist() == [
        "unsup/0",
        "unsup/1",
        "unsup/2",
        "unsup/3",
        "unsup/4",
        "unsup/7",
    ]
    assert ds.meta["unlabeled"] == {"source": "unsup", "read": 8, "dropped_test_copies": 2}
    assert len(ds["train"]) == len(ds["test"]) == 2 * N  # the labelled splits are untouched
    (plain,) = load_datasets(load_config("imdb-bigru"), data_dir=str(tmp_path))
    assert "unlabeled" not in plain.splits and "unlabeled" not in plain.meta


def test_imdb_unsup_missing_is_an_error_naming_the_file(tmp_path):
    write_aclimdb(tmp_path, n_per_class=2, archive="xz")
    with pytest.raises(OmnifuseError, match="aclImdb_unsup.tar.xz"):
        load_datasets(load_config("imdb-bigru", ["data.unlabeled=unsup"]), data_dir=str(tmp_path))


def test_fsdd_one_speakers_labels_the_others_unlabelled(tmp_path):
    write_fsdd(tmp_path, speakers=("ann", "bob", "cid"), per_digit=7, variants=((8000, 1, "PCM_16"),))
    overrides = ["data.labeled_where=speaker=bob", "data.num_samples=800"]
    (ds,) = load_datasets(load_config("fsdd", [*overrides, "data.unlabeled=unsup"]), data_dir=str(tmp_path))
    train, pool = ds["train"], ds["unlabeled"]
    assert (
        set(train.extra["speaker"].tolist()) == {"bob"} and len(train) == 10 * 2
    )  # takes 5, 6 of each digit
    assert set(pool.extra["speaker"].tolist()) == {"ann", "cid"} and len(pool) == 2 * 10 * 2
    assert pool.labels == {}
    np.testing.assert_array_equal(pool.extra["true_digit"], [int(i.split("_")[0]) for i in pool.ids])
    assert len(ds["test"]) == 3 * 10 * 5  # the official test takes, every speaker's
    # the labels-only baseline keeps the same labels and trains on nothing else
    (only,) = load_datasets(load_config("fsdd", overrides), data_dir=str(tmp_path))
    assert only["train"].ids.tolist() == train.ids.tolist() and "unlabeled" not in only.splits
    with pytest.raises(OmnifuseError, match="speaker"):
        load_datasets(load_config("fsdd", ["data.labeled_where=speaker=zed"]), data_dir=str(tmp_path))


def _numbers(n: int, seed: int = 0) -> Split:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    return Split(inputs={"x": x}, labels={"y": np.arange(n) % 3}, ids=np.arange(n).astype(str))


def test_labels_per_class_is_seeded_and_exact_and_test_copies_of_arrays_are_dropped():
    train, test = _numbers(60), _numbers(9, seed=1)
    train.inputs["x"][[4, 5]] = test.inputs["x"][[0, 3]]  # two training rows equal to test rows
    ds = Dataset("toy", {"train": train, "test": test}, {"y": ["a", "b", "c"]}, {"x": "numbers"})
    a = unlabeled.apply(ds, "unsup", labels_per_class=4, seed=3)
    b = unlabeled.apply(ds, "unsup", labels_per_class=4, seed=3)
    c = unlabeled.apply(ds, "unsup", labels_per_class=4, seed=4)
    assert np.bincount(a["train"].labels["y"]).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(a["train"].inputs["x"], b["train"].inputs["x"])
    assert not np.array_equal(a["train"].inputs["x"], c["train"].inputs["x"])
    copies = {"4", "5"} - set(a["train"].ids.tolist())  # the copies that were not kept as labelled samples
    assert a.meta["unlabeled"] == {"source": "unsup", "read": 48, "dropped_test_copies": len(copies)}
    assert len(a["unlabeled"]) == 48 - len(copies) and not copies & set(a["unlabeled"].ids.tolist())
    np.testing.assert_array_equal(a["unlabeled"].extra["true_y"], a["unlabeled"].ids.astype(int) % 3)
    assert "unlabeled" not in ds.meta  # the data set passed in is left as it was
    with pytest.raises(OmnifuseError, match="no unlabelled split"):
        unlabeled.apply(ds, "unsup")


def test_users_csv_and_folder_of_texts(tmp_path):
    test = Split(
        inputs={"text": np.array(["Seen in test.", "Another"], object)}, labels={"y": np.array([0, 1])}
    )
    train = Split(inputs={"text": np.array(["a", "b"], object)}, labels={"y": np.array([0, 1])})
    ds = Dataset("mine", {"train": train, "test": test}, {"y": ["n", "p"]}, {"text": "text"})
    (tmp_path / "pool.csv").write_text('text,id\n"seen  in TEST.",1\nsomething new,2\n', encoding="utf-8")
    got = unlabeled.apply(ds, str(tmp_path / "pool.csv"))
    assert got["unlabeled"].inputs["text"].tolist() == ["something new"]
    assert got.meta["unlabeled"]["dropped_test_copies"] == 1
    folder = tmp_path / "texts"
    (folder / "sub").mkdir(parents=True)
    (folder / "one.txt").write_text("first", encoding="utf-8")
    (folder / "sub" / "two.txt").write_text("Another", encoding="utf-8")  # a test copy
    got = unlabeled.apply(ds, str(folder))
    assert got["unlabeled"].inputs["text"].tolist() == ["first"] and got["unlabeled"].ids.tolist() == [
        "one.txt"
    ]
    with pytest.raises(OmnifuseError, match="not found"):
        unlabeled.apply(ds, str(tmp_path / "nothing.csv"))
