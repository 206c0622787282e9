"""The data sets omnifuse can load by name, and where their files are (``omnifuse data list|verify``).

One table, filled by hand: data set -> its loader in ``omnifuse.data``. The loader's module also holds the set's
``SOURCE`` (or, where one module loads several sets, ``SOURCES[name]``) and ``OPTIONS``, the data-config keys its ``load`` reads, so adding a data set is
one module and one line here; neither the config nor training changes. Modules are imported when a set is loaded,
so naming the sets (``data.sets`` is checked against :data:`NAMES` when a config is read) imports none of them.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any

from omnifuse.data import Dataset
from omnifuse.errors import OmnifuseError

# data set -> "module.function" in omnifuse.data
LOADERS: dict[str, str] = {
    "cifar10": "cifar10.load",
    "imdb": "imdb.load",
    "fsdd": "fsdd.load",
    "mnist": "mnist.load",
    "pneumoniamnist": "medmnist.load_pneumoniamnist",
    "retinamnist": "medmnist.load_retinamnist",
    "brain_mri": "brain_mri.load",
    "av_digits": "av_digits.load",
    "table": "table.load",  # the user's own CSV (data.csv) or folder (data.folder)
}
NAMES = tuple(LOADERS)


def _module(name: str):
    if name not in LOADERS:
        raise OmnifuseError(f"Unknown data set {name!r}. Expected one of: {', '.join(sorted(LOADERS))}")
    return importlib.import_module(f"omnifuse.data.{LOADERS[name].rsplit('.', 1)[0]}")


def loader(name: str) -> Callable[..., Dataset]:
    """The function that loads the data set ``name``."""
    return getattr(_module(name), LOADERS[name].rsplit(".", 1)[1])


def options(name: str) -> dict[str, str]:
    """The data-config keys the loader of ``name`` reads -> its argument names (``{}``: none)."""
    return dict(getattr(_module(name), "OPTIONS", {}))


def source(name: str):
    """Where the files of ``name`` come from (a :class:`~omnifuse.data.sources.Source`), ``None`` for ``table``."""
    module = _module(name)
    per_set = getattr(module, "SOURCES", None)  # a module loading several sets (medmnist): one Source each
    return per_set[name] if isinstance(per_set, dict) else getattr(module, "SOURCE", None)


def load_dataset(name: str, data_dir=None, **values) -> Dataset:
    """The data set called ``name``, e.g. ``load_dataset("fsdd", data_dir="data", split="loso:theo")``.

    ``values`` are data-config values (``split``, ``sample_rate``, ``image_size``, ...); each loader receives those
    it declares in its module's ``OPTIONS`` and ignores the rest.
    """
    kwargs = {arg: values[key] for key, arg in options(name).items() if key in values}
    return loader(name)(data_dir=data_dir, **kwargs)


def load_datasets(cfg: Any, data_dir: str | None = None) -> list[Dataset]:
    """The data sets of ``cfg.data.sets`` (a :class:`omnifuse.config.Config`), in that order, each loader given the
    ``cfg.data`` keys it declares. Files are looked for in ``data_dir``, else ``cfg.data.data_dir``, then the usual
    places (``$OMNIFUSE_DATA``, the user cache). ``data.unlabeled`` / ``data.labels_per_class`` /
    ``data.labeled_where`` then give each set its ``unlabeled`` split (:func:`omnifuse.data.unlabeled.apply`)."""
    from omnifuse.data import unlabeled

    values = {f.name: getattr(cfg.data, f.name) for f in dataclasses.fields(cfg.data) if f.name != "data_dir"}
    folder = data_dir or cfg.data.data_dir or None
    d = cfg.data  # unlabelled samples and scarce labels: omnifuse/data/unlabeled.py
    return [
        unlabeled.apply(
            load_dataset(name, folder, **values),
            d.unlabeled,
            d.labels_per_class,
            d.labeled_where,
            cfg.train.seed,
        )
        for name in cfg.data.sets
    ]


def status(data_dir=None, check: bool = False) -> list[dict]:
    """One row per known data set: where its files were found (never downloads), and optionally if they verify.

    Each row has ``name``, ``file`` (the file to fetch), ``url``, ``description``, ``found`` (a path string or
    ``None``), ``verified`` (``True``/``False``, or ``None`` when not checked or not found) and ``message``.
    ``check=True`` hashes archives (a few seconds for CIFAR-10) and checks extracted folders' layout.
    """
    from omnifuse.data.sources import find, verify

    rows = []
    for name in NAMES:
        src = source(name)
        if src is None:
            continue
        found = find(src, data_dir)
        verified, message = None, "not found" if found is None else "found (not checked)"
        if found is not None and check:
            verified, message = verify(src, found)
        rows.append(
            {
                "name": name,
                "file": src.filename,
                "url": src.url,
                "description": src.description,
                "found": None if found is None else str(found),
                "verified": verified,
                "message": message,
            }
        )
    return rows
