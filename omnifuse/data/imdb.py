"""IMDb Large Movie Review Dataset v1.0 (Maas et al. 2011): the ``aclImdb/`` tree, as a folder or a tar archive.

Reviews are ``aclImdb/{train,test}/{neg,pos}/<id>_<rating>.txt`` (UTF-8). The URL lists
``aclImdb/{train,test}/urls_{neg,pos}.txt`` (line N: the film page of review N) give each review its film. The
official test set is of other films than the training set (all but one of its 3,581 films), so a hold-out of whole
films (``extra["group"]``, see ``omnifuse.pipeline``) mirrors it. Everything else (``unsup/``, the vocabulary,
bag-of-words files) is ignored. Reading 50,000 members out of a compressed archive takes seconds, so the parsed
result is cached as an ``.npz`` under ``cache_dir()/parsed/`` and reused while the source
path, size and modification time stay the same.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import lzma
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.decode import decode_text
from omnifuse.data.sources import (
    Source,
    archive_fingerprint,
    cache_dir,
    locate,
    open_tar_stream,
    read_parsed_cache,
    write_parsed_cache,
)
from omnifuse.errors import OmnifuseError

log = logging.getLogger(__name__)

FOLDER = "aclImdb"
SPLITS = ("train", "test")
LABELS = ("neg", "pos")  # label index = position
_REVIEW_NAME = re.compile(r"^(\d+)_(\d+)\.txt$")
_URLS_NAME = re.compile(r"^urls_(neg|pos)\.txt$")
_FILM = re.compile(r"/title/tt(\d+)")
_CACHE_VERSION = 2  # bump when the parsed layout or parsing rules change

SOURCE = Source(
    dataset="imdb",
    filename="aclImdb_v1.tar.gz",
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    sha256=(
        "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe",  # official
        "7d7357f9d537e39c1b5f02274951bd52ba4e61a138026f9f5f7a0ac1a5da2593",  # lossless xz re-pack (no unsup/)
    ),
    alternatives=(FOLDER, "aclImdb_v1.tar.xz"),
    subdir="imdb",
    description="IMDb movie reviews v1.0: 50,000 reviews, binary sentiment (25,000 train / 25,000 test)",
    members=tuple(f"{split}/{label}" for split in SPLITS for label in LABELS),
)

# the data-config keys load() reads -> its argument names
OPTIONS = {"unlabeled": "unlabeled"}

# One parsed review: (split, label index, numeric id, rating, text).
_Review = tuple[str, int, int, int, str]
# The URL lists found: (split, label index) -> the lines of urls_<label>.txt, and where they were read.
_Urls = dict[tuple[str, int], tuple[list[str], str]]


def load(data_dir=None, download: bool | None = None, unlabeled: str = "") -> Dataset:
    """IMDb as arrays: splits ``train`` and ``test`` (25,000 each), ``text`` object arrays of raw review strings.

    Task ``sentiment`` (0 = neg, 1 = pos); ``ids`` like ``"train/pos/123"``; ``extra["rating"]`` the 1-10 star
    rating from the file name; ``extra["group"]`` the film's IMDb number (``tt0453418`` -> 453418) where the split's
    URL lists are present and name a film for every review. Samples are ordered by label, then numeric id.
    ``unlabeled="unsup"``: also the split ``unlabeled``, the 50,000 reviews of ``train/unsup``
    (:mod:`omnifuse.data.imdb_unsup`).
    Example: ``load(data_dir="data")["test"].inputs["text"][0]``.
    """
    path = locate(SOURCE, data_dir, download)
    key = _cache_key(path)
    # One cache file per source path; the archive's sha256 (a folder's sizes/mtimes) is checked against the key inside.
    cache_file = (
        cache_dir() / "parsed" / f"imdb-{hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]}.npz"
    )
    arrays = read_parsed_cache(cache_file, key)
    if arrays is None:
        log.info("Parsing %s (cached afterwards in %s)", path, cache_file)
        reviews, urls = _read_folder(path) if path.is_dir() else _read_archive(path)
        arrays = _to_arrays(reviews, path)
        arrays.update(_films(arrays, urls))
        write_parsed_cache(cache_file, key, arrays)
    splits = {split: _split(arrays, split) for split in SPLITS}
    if unlabeled == "unsup":
        from omnifuse.data.imdb_unsup import load_unsup

        splits["unlabeled"] = load_unsup(data_dir, download)
    return Dataset(
        name="imdb",
        splits=splits,
        tasks={"sentiment": list(LABELS)},
        modalities={"text": "text"},
        source=str(path),
    )


def _parse_name(split: str, label: str, filename: str, where: str) -> tuple[int, int]:
    match = _REVIEW_NAME.match(filename)
    rating = int(match.group(2)) if match else 0
    if not match or not 1 <= rating <= 10:
        raise OmnifuseError(
            f"Expected review files named <id>_<rating>.txt (rating 1-10) in {FOLDER}/{split}/{label}/. "
            f"Received: {where}"
        )
    return int(match.group(1)), rating


def _read_folder(folder: Path) -> tuple[list[_Review], _Urls]:
    reviews: list[_Review] = []
    urls: _Urls = {}
    for split in SPLITS:
        for index, label in enumerate(LABELS):
            url_file = folder / split / f"urls_{label}.txt"
            if url_file.is_file():
                urls[split, index] = (
                    url_file.read_bytes().decode("utf-8", "replace").splitlines(),
                    f"'{url_file}'",
                )
            directory = folder / split / label
            if not directory.is_dir():
                continue  # reported with the other missing folders by _to_arrays
            with os.scandir(directory) as entries:
                for entry in entries:
                    if entry.name.startswith(".") or not entry.is_file():
                        continue
                    where = f"'{entry.path}'"
                    review_id, rating = _parse_name(split, label, entry.name, where)
                    try:
                        data = Path(entry.path).read_bytes()
                    except OSError as exc:
                        raise OmnifuseError(f"Cannot read {where}: {exc.strerror or exc}") from exc
                    reviews.append((split, index, review_id, rating, decode_text(data, where)))
    return reviews, urls


def _read_archive(archive: Path) -> tuple[list[_Review], _Urls]:
    """Reviews (and URL lists) from a ``.tar.gz`` / ``.tar.xz`` (or plain ``.tar``), read in one streaming pass."""
    reviews: list[_Review] = []
    urls: _Urls = {}
    try:
        with open_tar_stream(archive) as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not member.isfile() or len(parts) < 3 or parts[-1].startswith("."):
                    continue
                listed = _URLS_NAME.match(parts[-1])
                if listed and parts[-2] in SPLITS and parts[-3] == FOLDER:
                    lines = tar.extractfile(member).read().decode("utf-8", "replace").splitlines()
                    urls[parts[-2], LABELS.index(listed.group(1))] = lines, f"'{archive}:{member.name}'"
                    continue
                split, label, filename = parts[-3:]
                if split not in SPLITS or label not in LABELS or (len(parts) > 3 and parts[-4] != FOLDER):
                    continue
                where = f"'{archive}:{member.name}'"
                review_id, rating = _parse_name(split, label, filename, where)
                data = tar.extractfile(member).read()
                reviews.append((split, LABELS.index(label), review_id, rating, decode_text(data, where)))
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise OmnifuseError(
            f"Expected a complete tar archive of {FOLDER}/ ({SOURCE.filename} or aclImdb_v1.tar.xz). "
            f"Received: '{archive}', which cannot be read ({type(exc).__name__}: {exc}); it may be truncated "
            f"or not a tar file. Download it again from {SOURCE.url}"
        ) from exc
    return reviews, urls


def _films(arrays: dict[str, np.ndarray], urls: _Urls) -> dict[str, np.ndarray]:
    """``{split}_film``: each review's film number, for the splits whose URL lists name a film for every review.

    A split without URL lists has no films (other copies of the data set leave them out); one whose lists do not
    cover its reviews is logged and left without films rather than given wrong ones.
    """
    films: dict[str, np.ndarray] = {}
    for split in SPLITS:
        labels, ids = arrays[f"{split}_label"], arrays[f"{split}_id"]
        if not all((split, index) in urls for index in range(len(LABELS))):
            continue
        numbers = np.zeros(len(ids), np.int64)
        for index in range(len(LABELS)):
            lines, where = urls[split, index]
            found = [_FILM.search(line) for line in lines]
            rows = np.flatnonzero(labels == index)
            bad = [int(i) for i in ids[rows] if i >= len(found) or found[i] is None]
            if bad:
                log.warning(
                    "%s names no film for review id %d (%d ids in all): %s has no film groups",
                    where, bad[0], len(bad), split,
                )  # fmt: skip
                break
            numbers[rows] = [int(found[i].group(1)) for i in ids[rows]]
        else:
            films[f"{split}_film"] = numbers
    return films


def _to_arrays(reviews: list[_Review], path: Path) -> dict[str, np.ndarray]:
    """Sorted per-split arrays; texts packed as one UTF-8 blob plus end offsets, so they save without pickle."""
    present = {(r[0], r[1]) for r in reviews}
    missing = [
        f"{FOLDER}/{s}/{lab}/" for s in SPLITS for i, lab in enumerate(LABELS) if (s, i) not in present
    ]
    if missing:
        raise OmnifuseError(
            f"Expected review files in {FOLDER}/{{train,test}}/{{neg,pos}}/ under '{path}'. "
            f"Missing or empty: {', '.join(missing)}"
        )
    reviews.sort(key=lambda r: (SPLITS.index(r[0]), r[1], r[2]))
    arrays: dict[str, np.ndarray] = {}
    for split in SPLITS:
        rows = [r for r in reviews if r[0] == split]
        keys = [(r[1], r[2]) for r in rows]
        for a, b in itertools.pairwise(keys):
            if a == b:
                raise OmnifuseError(
                    f"Expected one review per id in {FOLDER}/{split}/{LABELS[a[0]]}/. "
                    f"Received: id {a[1]} twice in '{path}'"
                )
        texts = [r[4] for r in rows]
        arrays[f"{split}_label"] = np.array([r[1] for r in rows], dtype=np.int64)
        arrays[f"{split}_id"] = np.array([r[2] for r in rows], dtype=np.int64)
        arrays[f"{split}_rating"] = np.array([r[3] for r in rows], dtype=np.int64)
        arrays[f"{split}_text_ends"] = np.cumsum([len(t) for t in texts], dtype=np.int64)
        arrays[f"{split}_text_blob"] = np.frombuffer("".join(texts).encode("utf-8"), dtype=np.uint8)
    return arrays


def _split(arrays: dict[str, np.ndarray], split: str) -> Split:
    labels = arrays[f"{split}_label"]
    ends = arrays[f"{split}_text_ends"]
    joined = arrays[f"{split}_text_blob"].tobytes().decode("utf-8")
    texts = np.empty(len(ends), dtype=object)
    texts[:] = [joined[start:end] for start, end in zip([0, *ends[:-1].tolist()], ends.tolist(), strict=True)]
    ids = np.array(
        [f"{split}/{LABELS[label]}/{i}" for label, i in zip(labels, arrays[f"{split}_id"], strict=True)]
    )
    extra = {"rating": arrays[f"{split}_rating"]}
    if f"{split}_film" in arrays:
        extra["group"] = arrays[f"{split}_film"]
    return Split(inputs={"text": texts}, labels={"sentiment": labels}, ids=ids, extra=extra)


def _cache_key(path: Path) -> str:
    """Changes whenever the data may have: the archive's sha256, or every review file's for a folder."""
    if path.is_dir():
        listing = hashlib.sha256()
        for split in SPLITS:
            for label in LABELS:
                url_file = path / split / f"urls_{label}.txt"
                if url_file.is_file():
                    stat = url_file.stat()
                    listing.update(repr((split, url_file.name, stat.st_size, stat.st_mtime_ns)).encode())
                directory = path / split / label
                if directory.is_dir():
                    with os.scandir(directory) as entries:
                        stats = sorted((e.name, *_size_mtime(e)) for e in entries)
                    listing.update(repr((split, label, stats)).encode())
        fingerprint = f"folder {listing.hexdigest()}"
    else:
        fingerprint = f"file {archive_fingerprint(path)}"
    return f"omnifuse imdb v{_CACHE_VERSION} {path.resolve()} {fingerprint}"


def _size_mtime(entry: os.DirEntry) -> tuple[int, int]:
    stat = entry.stat()
    return stat.st_size, stat.st_mtime_ns
