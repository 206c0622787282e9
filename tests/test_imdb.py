import os
from collections import Counter

import numpy as np
import pytest
from fixtures import aclimdb_film, aclimdb_reviews, tar_bytes, write_aclimdb

from omnifuse.data import imdb
from omnifuse.data.sources import cache_dir
from omnifuse.errors import OmnifuseError

N = 12  # per class and split: ids 0..11, so numeric and text order differ ("10" < "2")


@pytest.mark.parametrize("archive", [None, "gz", "xz"], ids=["folder", "tar.gz", "tar.xz"])
def test_load_matches_what_was_written(tmp_path, archive):
    path = write_aclimdb(tmp_path, n_per_class=N, seed=5, archive=archive)
    ds = imdb.load(data_dir=tmp_path)
    assert ds.name == "imdb" and ds.source == str(path)
    assert ds.modalities == {"text": "text"} and ds.tasks == {"sentiment": ["neg", "pos"]}
    assert set(ds.splits) == {"train", "test"}
    written = aclimdb_reviews(N, seed=5)
    for split in ("train", "test"):
        expected = [r for r in written if r[0] == split]  # already in (label, numeric id) order
        got = ds[split]
        assert len(got) == 2 * N  # unsup/ and the other files are ignored
        assert got.inputs["text"].dtype == object
        assert got.inputs["text"].tolist() == [r[4] for r in expected]
        assert got.labels["sentiment"].dtype == np.int64
        assert got.labels["sentiment"].tolist() == [0 if r[1] == "neg" else 1 for r in expected]
        assert got.ids.tolist() == [f"{split}/{r[1]}/{r[2]}" for r in expected]
        assert got.extra["rating"].dtype == np.int64
        assert got.extra["rating"].tolist() == [r[3] for r in expected]
        assert got.extra["group"].dtype == np.int64  # the film of each review, from the URL lists
        assert got.extra["group"].tolist() == [aclimdb_film(split, r[2]) for r in expected]
    assert ds["train"].ids[:3].tolist() == ["train/neg/0", "train/neg/1", "train/neg/2"]


def test_fixture_is_learnable(tmp_path):
    write_aclimdb(tmp_path, n_per_class=20)
    ds = imdb.load(data_dir=tmp_path)

    def counts(split):
        return [Counter(text.lower().replace(".", " ").split()) for text in ds[split].inputs["text"]]

    train, y = counts("train"), ds["train"].labels["sentiment"]
    score = Counter()
    for words, label in zip(train, y, strict=True):
        for word, n in words.items():
            score[word] += n if label == 1 else -n
    predicted = [int(sum(score[w] * n for w, n in words.items()) > 0) for words in counts("test")]
    assert np.mean(np.array(predicted) == ds["test"].labels["sentiment"]) > 0.8


def test_parsed_cache_is_used_and_invalidated(tmp_path, monkeypatch):
    path = write_aclimdb(tmp_path, n_per_class=3, archive="xz")
    first = imdb.load(data_dir=tmp_path)
    assert len(list((cache_dir() / "parsed").glob("*.npz"))) == 1

    def must_not_parse(*args):
        raise AssertionError("parsed the archive again despite the cache")

    monkeypatch.setattr(imdb, "_read_archive", must_not_parse)
    second = imdb.load(data_dir=tmp_path)
    for split in ("train", "test"):
        assert second[split].inputs["text"].tolist() == first[split].inputs["text"].tolist()
        assert second[split].ids.tolist() == first[split].ids.tolist()
        np.testing.assert_array_equal(second[split].labels["sentiment"], first[split].labels["sentiment"])
        np.testing.assert_array_equal(second[split].extra["rating"], first[split].extra["rating"])

    # The cache is keyed by the archive's content: a new mtime alone keeps it ...
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    imdb.load(data_dir=tmp_path)
    # ... one byte changed, with size and mtime put back, is parsed again
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(AssertionError, match="parsed the archive again"):
        imdb.load(data_dir=tmp_path)


def test_folder_cache_sees_edited_review(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_class=2)
    imdb.load(data_dir=tmp_path)
    review = next((folder / "test" / "pos").glob("1_*.txt"))
    review.write_text("An edited review, much longer than before.", encoding="utf-8")
    assert (
        imdb.load(data_dir=tmp_path)["test"].inputs["text"][-1]
        == "An edited review, much longer than before."
    )


def test_corrupt_cache_is_ignored(tmp_path):
    write_aclimdb(tmp_path, n_per_class=2, archive="gz")
    expected = imdb.load(data_dir=tmp_path)["train"].inputs["text"].tolist()
    (cache_file,) = (cache_dir() / "parsed").glob("*.npz")
    cache_file.write_bytes(b"not a zip file")
    assert imdb.load(data_dir=tmp_path)["train"].inputs["text"].tolist() == expected


def _tree(**overrides: bytes) -> dict[str, bytes | None]:
    files = {
        f"aclImdb/{s}/{lab}/{i}_{r}.txt": f"review {s} {lab} {i}".encode()
        for s in ("train", "test")
        for lab, r in (("neg", 2), ("pos", 9))
        for i in range(2)
    }
    files.update(overrides)
    return {k: v for k, v in files.items() if v is not None}


def _write_xz(tmp_path, files) -> str:
    path = tmp_path / "aclImdb_v1.tar.xz"
    path.write_bytes(tar_bytes(files, "xz"))
    return str(path)


def test_truncated_archive(tmp_path):
    data = write_aclimdb(tmp_path, n_per_class=30, archive="xz").read_bytes()
    path = tmp_path / "aclImdb_v1.tar.xz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OmnifuseError, match="truncated") as info:
        imdb.load(data_dir=tmp_path)
    assert str(path) in str(info.value)
    assert not list((cache_dir() / "parsed").glob("*.npz"))


def test_not_an_archive(tmp_path):
    path = tmp_path / "aclImdb_v1.tar.gz"
    path.write_bytes(b"this is not a tar archive\n" * 50)
    with pytest.raises(OmnifuseError, match="tar archive") as info:
        imdb.load(data_dir=tmp_path)
    assert str(path) in str(info.value)


def test_missing_split_folder(tmp_path):
    files = {k: v for k, v in _tree().items() if not k.startswith("aclImdb/test/pos/")}
    path = _write_xz(tmp_path, files)
    with pytest.raises(OmnifuseError, match=r"Missing or empty: aclImdb/test/pos/") as info:
        imdb.load(data_dir=tmp_path)
    assert path in str(info.value)


def test_missing_split_folder_in_tree(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_class=1)
    for f in (folder / "train" / "neg").iterdir():
        f.unlink()
    (folder / "train" / "neg").rmdir()
    with pytest.raises(OmnifuseError, match=r"Missing or empty: aclImdb/train/neg/"):
        imdb.load(data_dir=tmp_path)


def test_non_utf8_review_names_member_and_offset(tmp_path):
    path = _write_xz(tmp_path, _tree(**{"aclImdb/train/pos/1_9.txt": b"caf\xe9 latin-1"}))
    with pytest.raises(OmnifuseError, match=r"UTF-8.*byte offset 3") as info:
        imdb.load(data_dir=tmp_path)
    assert f"{path}:aclImdb/train/pos/1_9.txt" in str(info.value)


def test_non_utf8_review_in_folder(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_class=1)
    bad = next((folder / "test" / "neg").glob("0_*.txt"))
    bad.write_bytes(b"ok \xff\xfe")
    with pytest.raises(OmnifuseError, match=r"byte offset 3") as info:
        imdb.load(data_dir=tmp_path)
    assert str(bad) in str(info.value)


def test_empty_review(tmp_path):
    path = _write_xz(tmp_path, _tree(**{"aclImdb/test/neg/0_2.txt": b" \n\t"}))
    with pytest.raises(OmnifuseError, match="empty or only whitespace") as info:
        imdb.load(data_dir=tmp_path)
    assert f"{path}:aclImdb/test/neg/0_2.txt" in str(info.value)


@pytest.mark.parametrize("name", ["notes.txt", "3_0.txt", "4_11.txt", "5_9.text"])
def test_bad_file_name(tmp_path, name):
    path = _write_xz(tmp_path, _tree(**{f"aclImdb/train/neg/{name}": b"some review"}))
    with pytest.raises(OmnifuseError, match=r"<id>_<rating>\.txt") as info:
        imdb.load(data_dir=tmp_path)
    assert f"{path}:aclImdb/train/neg/{name}" in str(info.value)


def test_duplicate_review_id(tmp_path):
    _write_xz(tmp_path, _tree(**{"aclImdb/train/pos/0_7.txt": b"same id as 0_9.txt"}))
    with pytest.raises(OmnifuseError, match=r"id 0 twice"):
        imdb.load(data_dir=tmp_path)


def test_without_url_lists_reviews_have_no_film_groups(tmp_path):
    _write_xz(tmp_path, _tree())  # only the review files, as some copies of the data set are
    ds = imdb.load(data_dir=tmp_path)
    assert "group" not in ds["train"].extra and "group" not in ds["test"].extra
    assert ds["train"].extra["rating"].tolist() == [2, 2, 9, 9]


def test_url_lists_that_miss_reviews_give_no_film_groups_and_a_warning(tmp_path, caplog):
    url = b"http://www.imdb.com/title/tt0000042/usercomments\n"
    lists = {f"aclImdb/{s}/urls_{lab}.txt": url * 2 for s in ("train", "test") for lab in ("neg", "pos")}
    lists["aclImdb/train/urls_pos.txt"] = url  # one line for reviews 0 and 1
    path = _write_xz(tmp_path, _tree(**lists))
    with caplog.at_level("WARNING", logger="omnifuse.data.imdb"):
        ds = imdb.load(data_dir=tmp_path)
    assert "group" not in ds["train"].extra  # not half the films right and half wrong
    assert ds["test"].extra["group"].tolist() == [42, 42, 42, 42]
    assert f"{path}:aclImdb/train/urls_pos.txt" in caplog.text and "review id 1" in caplog.text


def test_an_edited_url_list_is_read_again(tmp_path):
    folder = write_aclimdb(tmp_path, n_per_class=3)
    assert imdb.load(data_dir=tmp_path)["test"].extra["group"].tolist() == [200_000] * 6
    (folder / "test" / "urls_pos.txt").write_bytes(b"http://www.imdb.com/title/tt7/usercomments\n" * 3)
    assert imdb.load(data_dir=tmp_path)["test"].extra["group"].tolist() == [200_000] * 3 + [7] * 3


def test_the_validation_hold_out_keeps_each_film_whole(tmp_path):
    from omnifuse import pipeline
    from omnifuse.config import Config

    write_aclimdb(tmp_path, n_per_class=60)  # 20 films of 6 reviews (3 per label) in train
    ds = imdb.load(data_dir=tmp_path)
    films = dict(zip(ds["train"].ids.tolist(), ds["train"].extra["group"].tolist(), strict=True))
    for seed in (0, 1):
        cfg = Config().replace(["data.val_fraction=0.2", f"train.seed={seed}"])
        part = pipeline.prepare(cfg, [ds]).parts[0]
        train_films, val_films = ({films[i] for i in split.ids} for split in (part.train, part.val))
        assert not train_films & val_films  # no film on both sides, as no training film is in the test set
        assert sorted([*part.train.ids, *part.val.ids]) == sorted(films)  # nothing lost, nothing twice
        assert len(val_films) == 4 and len(part.val) == 24  # a fifth of the films and of the reviews
        assert part.val.labels["sentiment"].mean() == 0.5  # each film has both labels: stratified
    seeds = [
        {films[i] for i in pipeline.prepare(Config().replace([f"train.seed={s}"]), [ds]).parts[0].val.ids}
        for s in (0, 1)
    ]
    assert seeds[0] != seeds[1]  # seeded, not fixed

    # Review by review (data.group_holdout = false), films fall on both sides.
    cfg = Config().replace(["data.val_fraction=0.2", "data.group_holdout=false"])
    part = pipeline.prepare(cfg, [ds]).parts[0]
    assert {films[i] for i in part.train.ids} & {films[i] for i in part.val.ids}
    assert len(part.val) == 24
