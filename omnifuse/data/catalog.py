"""The data sets omnifuse can load by name, and where their files are (``omnifuse data list|verify``).

Plain dicts filled by explicit imports: adding a data set is one import and one line in each dict.
"""

from __future__ import annotations

from collections.abc import Callable

from omnifuse.data import Dataset, av_digits, brain_mri, cifar10, fsdd, imdb, medmnist, mnist, table
from omnifuse.data.sources import Source, find, verify
from omnifuse.errors import OmnifuseError

LOADERS: dict[str, Callable[..., Dataset]] = {
    "cifar10": cifar10.load,
    "imdb": imdb.load,
    "fsdd": fsdd.load,
    "mnist": mnist.load,
    "pneumoniamnist": medmnist.load_pneumoniamnist,
    "retinamnist": medmnist.load_retinamnist,
    "brain_mri": brain_mri.load,
    "av_digits": av_digits.load,
    "table": table.load,  # the user's own CSV (data.csv) or folder (data.folder)
}

SOURCES: dict[str, Source] = {
    "cifar10": cifar10.SOURCE,
    "imdb": imdb.SOURCE,
    "fsdd": fsdd.SOURCE,
    "mnist": mnist.SOURCE,
    "pneumoniamnist": medmnist.SOURCES["pneumoniamnist"],
    "retinamnist": medmnist.SOURCES["retinamnist"],
    "brain_mri": brain_mri.SOURCE,
}

# Which data-config keys each loader takes, under which argument name (the rest load with their defaults).
OPTIONS: dict[str, dict[str, str]] = {
    "fsdd": {"split": "split", "sample_rate": "sample_rate", "num_samples": "num_samples"},
    "brain_mri": {"image_size": "size", "folds": "folds"},
    "av_digits": {
        "split": "fsdd_split",
        "sample_rate": "sample_rate",
        "num_samples": "num_samples",
        "degrade": "degrade",
        "noise_std": "noise_std",
        "audio_noise": "audio_noise",
    },
    "table": {
        key: key
        for key in (
            "csv",
            "folder",
            "label",
            "kinds",
            "skip_bad_rows",
            "image_size",
            "sample_rate",
            "num_samples",
            "val_fraction",
            "test_fraction",
        )
    },
}


def load_dataset(name: str, data_dir=None, **options) -> Dataset:
    """The data set called ``name``, e.g. ``load_dataset("fsdd", data_dir="data", split="loso:theo")``.

    ``options`` are data-config values (``split``, ``sample_rate``, ``image_size``, ...); each loader receives those
    it understands (see ``OPTIONS``) and ignores the rest.
    """
    if name not in LOADERS:
        raise OmnifuseError(f"Unknown data set {name!r}. Expected one of: {', '.join(sorted(LOADERS))}")
    wanted = OPTIONS.get(name, {})
    kwargs = {arg: options[key] for key, arg in wanted.items() if key in options}
    return LOADERS[name](data_dir=data_dir, **kwargs)


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
