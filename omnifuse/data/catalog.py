"""The data sets omnifuse can load by name, and where their files are (``omnifuse data list|verify``).

Plain dicts filled by explicit imports: adding a data set is one import and one line in each dict.
"""

from __future__ import annotations

from collections.abc import Callable

from omnifuse.data import Dataset, cifar10, imdb
from omnifuse.data.sources import Source, find, verify
from omnifuse.errors import OmnifuseError

LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": cifar10.load,
    "imdb": imdb.load,
}

SOURCES: dict[str, Source] = {
    "cifar10": cifar10.SOURCE,
    "imdb": imdb.SOURCE,
}


def load_dataset(name: str, data_dir=None) -> Dataset:
    """The data set called ``name``, e.g. ``load_dataset("cifar10", data_dir="data")``."""
    if name not in LOADERS:
        raise OmnifuseError(f"Unknown data set {name!r}. Expected one of: {', '.join(sorted(LOADERS))}")
    return LOADERS[name](data_dir=data_dir)


def status(data_dir=None, check: bool = False) -> list[dict]:
    """One row per known data set: where its files were found (never downloads), and optionally if they verify.

    Each row has ``name``, ``file`` (the file to fetch), ``url``, ``description``, ``found`` (a path string or
    ``None``), ``verified`` (``True``/``False``, or ``None`` when not checked or not found) and ``message``.
    ``check=True`` hashes archives (a few seconds for CIFAR-10) and checks extracted folders' layout.
    """
    rows = []
    for name, source in SOURCES.items():
        found = find(source, data_dir)
        verified, message = None, "not found" if found is None else "found (not checked)"
        if found is not None and check:
            verified, message = verify(source, found)
        rows.append(
            {
                "name": name,
                "file": source.filename,
                "url": source.url,
                "description": source.description,
                "found": None if found is None else str(found),
                "verified": verified,
                "message": message,
            }
        )
    return rows
