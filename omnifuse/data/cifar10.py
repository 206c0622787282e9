"""CIFAR-10 from the official "python version": ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/``.

The batches are Python-2 pickles of ``{b"data": uint8 (N, 3072), b"labels": [int], ...}``; each row holds the
1024 red, then 1024 green, then 1024 blue values of a 32x32 image in row-major order. The archive is read in one
streaming pass (nothing is extracted to disk), and unpickling only admits the few numpy classes the files use.
"""

from __future__ import annotations

import importlib
import io
import lzma
import pickle
import tarfile
import zlib
from pathlib import Path

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.sources import Source, locate, open_tar_stream
from omnifuse.errors import OmnifuseError

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
MEMBERS = (*TRAIN_BATCHES, TEST_BATCH, META)

SOURCE = Source(
    dataset="cifar10",
    filename="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    sha256=(
        "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",  # official
        "451fa13674e97b31c3d8ab4cd29eca2dee846479de2d0bf80ded18131e7ab6a2",  # lossless re-pack from PNGs
    ),
    alternatives=(FOLDER,),
    subdir="cifar10",
    description="CIFAR-10: 60,000 32x32 colour images in 10 classes (50,000 train / 10,000 test)",
    members=MEMBERS,
)


def load(data_dir=None, download: bool | None = None) -> Dataset:
    """CIFAR-10 as arrays: splits ``train`` (50,000) and ``test`` (10,000), ``image`` uint8 (N, 32, 32, 3).

    Labels are in task ``cifar10`` (class names from ``batches.meta``); ``ids`` are positions in the official
    order. Example: ``load(data_dir="data")["train"].inputs["image"].shape == (50000, 32, 32, 3)``.
    """
    path = locate(SOURCE, data_dir, download)
    raw = _read_folder(path) if path.is_dir() else _read_archive(path)
    missing = [m for m in MEMBERS if m not in raw]
    if missing:
        where = f"folder '{path}'" if path.is_dir() else f"archive '{path}'"
        raise OmnifuseError(
            f"Expected {where} to contain {FOLDER}/{{{', '.join(MEMBERS)}}}. Missing: {', '.join(missing)}"
        )

    def where(member: str) -> str:
        return str(path / member) if path.is_dir() else f"{path}:{FOLDER}/{member}"

    label_names = _label_names(raw[META], where(META))
    train = [_batch(raw[b], where(b), len(label_names)) for b in TRAIN_BATCHES]
    test = _batch(raw[TEST_BATCH], where(TEST_BATCH), len(label_names))
    splits = {
        "train": _split(np.concatenate([x for x, _ in train]), np.concatenate([y for _, y in train])),
        "test": _split(*test),
    }
    return Dataset(
        name="cifar10",
        splits=splits,
        tasks={"cifar10": label_names},
        modalities={"image": "image"},
        source=str(path),
    )


def _split(rows: np.ndarray, labels: np.ndarray) -> Split:
    images = np.ascontiguousarray(rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    return Split(
        inputs={"image": images}, labels={"cifar10": labels}, ids=np.arange(len(labels), dtype=np.int64)
    )


def _read_folder(folder: Path) -> dict[str, bytes]:
    raw = {}
    for name in MEMBERS:
        if (folder / name).is_file():
            try:
                raw[name] = (folder / name).read_bytes()
            except OSError as exc:
                raise OmnifuseError(f"Cannot read '{folder / name}': {exc}") from exc
    return raw


def _read_archive(archive: Path) -> dict[str, bytes]:
    """The wanted members' bytes, read in one pass; accepts ``cifar-10-batches-py/<name>`` or a bare ``<name>``."""
    raw = {}
    try:
        with open_tar_stream(archive) as tar:
            for member in tar:
                parts = [p for p in member.name.split("/") if p not in ("", ".")]
                if not member.isfile() or not parts or parts[-1] not in MEMBERS:
                    continue
                if len(parts) > 1 and parts[-2] != FOLDER:
                    continue
                raw[parts[-1]] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise OmnifuseError(
            f"Expected a complete CIFAR-10 tar archive ({SOURCE.filename}). Received: '{archive}', which cannot "
            f"be read ({type(exc).__name__}: {exc}); it may be truncated or not a tar file. "
            f"Download it again from {SOURCE.url}"
        ) from exc
    return raw


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles only what CIFAR batches contain (numpy arrays and dtypes), so a hostile file cannot run code."""

    _ALLOWED = {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("_codecs", "encode"),  # how Python 3 writes bytes in protocol-2 pickles
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")
        if name == "_reconstruct":
            try:  # numpy 2 moved numpy.core to numpy._core; the old name still works but warns
                return importlib.import_module("numpy._core.multiarray")._reconstruct
            except ImportError:
                return importlib.import_module("numpy.core.multiarray")._reconstruct
        return getattr(importlib.import_module(module), name)


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # a damaged pickle can fail in many ways; all mean the same to the user
        raise OmnifuseError(
            f"Expected a CIFAR-10 batch pickle. Received: '{where}', which cannot be unpickled "
            f"({type(exc).__name__}: {exc})"
        ) from exc
    if not isinstance(obj, dict):
        raise OmnifuseError(f"Expected a dict in '{where}'. Received: {type(obj).__name__}")
    # encoding="bytes" gives bytes keys for the official Python-2 files; Python-3 re-pickles may have str keys.
    return {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _label_names(data: bytes, where: str) -> list[str]:
    meta = _unpickle(data, where)
    names = meta.get("label_names")
    if not isinstance(names, list) or not names or not all(isinstance(n, (bytes, str)) for n in names):
        raise OmnifuseError(
            f"Expected 'label_names' (a list of class names) in '{where}'. Received: {names!r:.200}"
        )
    return [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]


def _batch(data: bytes, where: str, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    batch = _unpickle(data, where)
    if "data" not in batch or "labels" not in batch:
        raise OmnifuseError(f"Expected keys 'data' and 'labels' in '{where}'. Received keys: {sorted(batch)}")
    rows = batch["data"]
    if not isinstance(rows, np.ndarray) or rows.dtype != np.uint8 or rows.ndim != 2 or rows.shape[1] != 3072:
        got = f"{rows.dtype} {rows.shape}" if isinstance(rows, np.ndarray) else type(rows).__name__
        raise OmnifuseError(f"Expected 'data' in '{where}' to be uint8 (N, 3072). Received: {got}")
    try:
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise OmnifuseError(
            f"Expected 'labels' in '{where}' to be a list of integers. Received: {exc}"
        ) from exc
    if labels.shape != (len(rows),):
        raise OmnifuseError(
            f"Expected {len(rows)} labels in '{where}' (one per image). Received: shape {labels.shape}"
        )
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise OmnifuseError(
            f"Expected labels in 0..{n_classes - 1} in '{where}'. Received: values {labels.min()}..{labels.max()}"
        )
    return rows, labels
