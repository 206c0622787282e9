"""IMDb's 50,000 unlabelled reviews: ``aclImdb/train/unsup/<id>_0.txt`` (and ``aclImdb/train/urls_unsup.txt``).

They ship inside the official ``aclImdb_v1.tar.gz``; some copies of the labelled set leave them out and carry them
in an archive of their own, ``aclImdb_unsup.tar.xz``, in the same layout (extract it over ``aclImdb/`` or keep it
beside the labelled archive). The reviews are of other films than the labelled ones, but some texts are the same
review posted under several films: :mod:`omnifuse.data.unlabeled` drops those identical to a test review.
"""

from __future__ import annotations

import lzma
import os
import re
import tarfile
import zlib
from pathlib import Path

import numpy as np

from omnifuse.data import Split
from omnifuse.data.decode import decode_text
from omnifuse.data.sources import Source, locate, open_tar_stream
from omnifuse.errors import OmnifuseError

FOLDER = "aclImdb"
_NAME = re.compile(r"^(\d+)_0\.txt$")

SOURCE = Source(
    dataset="imdb",
    filename="aclImdb_unsup.tar.xz",
    url="https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz",
    sha256=("75625fb4c27fcbbca8ddcc441d5703fef6994deefb5e943e5af02e0bf2130dfe",),  # train/unsup only, xz
    alternatives=(FOLDER, "aclImdb_v1.tar.gz"),
    subdir="imdb",
    description="IMDb's 50,000 unlabelled reviews (aclImdb/train/unsup)",
    members=("train/unsup",),
)


def load_unsup(data_dir=None, download: bool | None = None) -> Split:
    """The unlabelled reviews as a :class:`Split` without labels, ordered by id; ``ids`` like ``"unsup/17"``.

    Example: ``load_unsup("data").inputs["text"][0]``.
    """
    path = locate(SOURCE, data_dir, download)
    found = _read_folder(path) if path.is_dir() else _read_archive(path)
    if not found:
        raise OmnifuseError(
            f"Expected unlabelled reviews {FOLDER}/train/unsup/<id>_0.txt in '{path}'. Received: none "
            f"(get {SOURCE.filename}, or the official aclImdb_v1.tar.gz, which holds them)"
        )
    found.sort()
    texts = np.empty(len(found), dtype=object)
    texts[:] = [t for _, t in found]
    ids = np.array([f"unsup/{i}" for i, _ in found])
    return Split(inputs={"text": texts}, labels={}, ids=ids)


def _review(filename: str, data: bytes, where: str) -> tuple[int, str] | None:
    match = _NAME.match(filename)
    if match is None:
        return None  # urls_unsup.txt and any other file beside the reviews
    return int(match.group(1)), decode_text(data, where)


def _read_folder(path: Path) -> list[tuple[int, str]]:
    folder = path / "train" / "unsup"
    if not folder.is_dir():
        raise OmnifuseError(f"Expected a folder {FOLDER}/train/unsup/ in '{path}'. Received: none")
    out = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_file() and not entry.name.startswith("."):
                review = _review(entry.name, Path(entry.path).read_bytes(), f"'{entry.path}'")
                if review is not None:
                    out.append(review)
    return out


def _read_archive(archive: Path) -> list[tuple[int, str]]:
    out = []
    try:
        with open_tar_stream(archive) as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not member.isfile() or parts[-3:-1] != ["train", "unsup"]:
                    continue
                data = tar.extractfile(member).read()
                review = _review(parts[-1], data, f"'{archive}:{member.name}'")
                if review is not None:
                    out.append(review)
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise OmnifuseError(
            f"Expected a complete tar archive holding {FOLDER}/train/unsup/. Received: '{archive}', which cannot "
            f"be read ({type(exc).__name__}: {exc})"
        ) from exc
    return out
