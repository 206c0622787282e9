"""Brain MRI Images for Brain Tumor Detection (Kaggle, N. Chakrabarty): ``brain_tumor_dataset/{yes,no}/``.

253 axial MRI slices (155 with a tumour in ``yes/``, 98 without in ``no/``), read from ``brain_mri_tumor.tar.gz``,
the Kaggle zip, or an extracted folder (``brain_tumor_dataset/`` or a folder holding ``yes/`` and ``no/``).
The files are a mix of JPEG and PNG (some PNGs are named ``.jpg``) in assorted sizes and modes, so each is decoded
from its bytes by content, not by name.

Images are converted to grayscale (``"L"``, luminance) by default: MRI is a single-intensity modality and the few
colour files are grey images stored as RGB, so nothing is lost and arrays are a third of the size; ``channels=3``
gives RGB instead. Each is resized to ``size x size`` ignoring aspect ratio (Lanczos when shrinking).

There is no official split, so the loader returns one split ``all`` and a cross-validation fold per sample
(``extra["fold"]``): train on the other folds, test on one, and report the mean over folds. The folder holds exact
and near-duplicate copies of some slices under other names (e.g. ``yes/Y30.jpg`` and ``yes/Y38.jpg``,
``no/1 no.jpeg`` and ``no/no 94.jpg``), so the folds come from ``StratifiedGroupKFold(folds, shuffle=True,
random_state=seed)`` over near-duplicate groups (:mod:`omnifuse.data.duplicates`, ``extra["group"]``): every copy
of a picture falls in one fold, and a test fold holds only pictures training never saw.
"""

from __future__ import annotations

import logging
import lzma
import tarfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from omnifuse.data import Dataset, Split
from omnifuse.data.decode import decode_image
from omnifuse.data.duplicates import describe_groups, near_duplicate_groups
from omnifuse.data.sources import Source, locate, open_tar_stream
from omnifuse.errors import OmnifuseError

log = logging.getLogger(__name__)

FOLDER = "brain_tumor_dataset"
CLASSES = ["no", "yes"]  # label index = position
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp")

SOURCE = Source(
    dataset="brain_mri",
    filename="brain_mri_tumor.tar.gz",
    # Kaggle needs a login, so this cannot download; the page says where to get the zip.
    url="https://www.kaggle.com/datasets/navoneel/brain-mri-images-for-brain-tumor-detection",
    sha256=(
        "c9455778b8d1eefc1feae7922ea9d3207bb0e5b258711ab7cc1651c1bab66d52",
    ),  # bit-identical files, tar.gz
    alternatives=(FOLDER, "brain-mri-images-for-brain-tumor-detection.zip"),
    subdir="medical",
    description="Brain MRI tumour detection (Kaggle): 253 MRI slices, tumour yes/no (155 / 98), no official split",
    members=tuple(CLASSES),
)


# the data-config keys load() reads -> its argument names (the catalog passes these; others keep their defaults)
OPTIONS = {"image_size": "size", "folds": "folds"}


def load(
    data_dir=None,
    download: bool | None = None,
    size: int = 128,
    folds: int = 5,
    seed: int = 0,
    channels: int = 1,
) -> Dataset:
    """Brain MRI as arrays: one split ``all`` with ``image`` uint8 (N, size, size, channels) and ``extra["fold"]``.

    Task ``tumor`` (0 = "no", 1 = "yes"); ``ids`` like ``"yes/Y1.jpg"``, sorted. ``data_dir`` may also be a folder
    with ``yes/`` and ``no/`` directly inside.
    Example: ``ds = load(data_dir="data"); test = ds["all"].take(np.flatnonzero(ds["all"].extra["fold"] == 0))``.
    """
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size <= 0:
        raise OmnifuseError(f"Expected size to be a positive integer (pixels). Received: {size!r}")
    if not isinstance(folds, (int, np.integer)) or isinstance(folds, bool) or folds < 2:
        raise OmnifuseError(f"Expected folds to be an integer of at least 2. Received: {folds!r}")
    if channels not in (1, 3):
        raise OmnifuseError(f"Expected channels=1 (grayscale) or 3 (RGB). Received: {channels!r}")
    path = _bare_folder(data_dir) or locate(SOURCE, data_dir, download)
    files = _read_folder(path) if path.is_dir() else _read_archive(path)
    found = {label: sum(1 for f in files if f[0].startswith(f"{label}/")) for label in CLASSES}
    if not all(found.values()):
        raise OmnifuseError(
            f"Expected images in both {FOLDER}/yes/ and {FOLDER}/no/ under '{path}'. "
            f"Received: {found['yes']} in yes/, {found['no']} in no/"
        )
    files.sort(key=lambda f: f[0])
    images = np.empty((len(files), size, size, channels), dtype=np.uint8)
    for i, (_, where, data) in enumerate(files):
        try:
            images[i] = decode_image(data, size=(size, size), channels=channels)
        except OmnifuseError as exc:  # decode_image only saw bytes: say which member they were
            raise OmnifuseError(str(exc).replace("<bytes>", where)) from exc
    labels = np.array([CLASSES.index(f[0].split("/")[0]) for f in files], dtype=np.int64)
    smallest = min(found.values())
    if folds > smallest:
        raise OmnifuseError(
            f"Expected folds <= {smallest} (the size of the smaller class in '{path}'). Received: folds={folds}"
        )
    ids = np.array([f[0] for f in files], dtype=str)
    groups = near_duplicate_groups(images)
    copies = describe_groups(groups, ids)
    if copies:
        log.info(
            "brain_mri: %d images are %d distinct pictures; near-duplicates kept in one fold: %s",
            len(ids),
            len(np.unique(groups)),
            "; ".join(", ".join(group) for group in copies),
        )
    fold = np.empty(len(files), dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=int(folds), shuffle=True, random_state=seed)
    for k, (_, test_index) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        fold[test_index] = k
    split = Split(
        inputs={"image": images},
        labels={"tumor": labels},
        ids=ids,
        extra={"fold": fold, "group": groups},
    )
    return Dataset(
        name="brain_mri",
        splits={"all": split},
        tasks={"tumor": list(CLASSES)},
        modalities={"image": "image"},
        source=str(path),
    )


def _bare_folder(data_dir) -> Path | None:
    """``data_dir`` itself when it directly holds ``yes/`` and ``no/`` (the repository or Kaggle layout)."""
    if isinstance(data_dir, (str, Path)) and str(data_dir):
        root = Path(data_dir).expanduser()
        if all((root / label).is_dir() for label in CLASSES):
            return root
    return None


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and name.lower().endswith(IMAGE_SUFFIXES)


def _read_folder(path: Path) -> list[tuple[str, str, bytes]]:
    """``(id, where, bytes)`` for every image in ``{yes,no}/`` under ``path`` (or ``path/brain_tumor_dataset``)."""
    root = path / FOLDER if (path / FOLDER).is_dir() else path
    files = []
    for label in CLASSES:
        folder = root / label
        if not folder.is_dir():
            continue
        for file in sorted(folder.iterdir()):
            if not file.is_file():
                continue
            if not _is_image_name(file.name):
                log.warning("Skipping %s: not an image file name", file)
                continue
            try:
                files.append((f"{label}/{file.name}", f"'{file}'", file.read_bytes()))
            except OSError as exc:
                raise OmnifuseError(f"Cannot read '{file}': {exc.strerror or exc}") from exc
    return files


def _pick(candidates: dict[tuple[str, ...], list]) -> list:
    """The members of one ``{yes,no}/`` tree: ``brain_tumor_dataset/`` first, else the shallowest one.

    Kaggle's zip holds the images twice (``yes/``, ``no/`` and ``brain_tumor_dataset/{yes,no}/``); taking one tree
    keeps each image once.
    """
    if not candidates:
        return []
    best = min(candidates, key=lambda p: (not (p and p[-1] == FOLDER), len(p), p))
    return candidates[best]


def _member(prefix_parts: list[str]) -> tuple[tuple[str, ...], str] | None:
    """``(prefix, id)`` for a member path inside a ``yes/`` or ``no/`` folder, else ``None``."""
    parts = [p for p in prefix_parts if p not in ("", ".")]
    if len(parts) < 2 or parts[-2] not in CLASSES or "__MACOSX" in parts or not _is_image_name(parts[-1]):
        return None
    return tuple(parts[:-2]), f"{parts[-2]}/{parts[-1]}"


def _read_archive(archive: Path) -> list[tuple[str, str, bytes]]:
    candidates: dict[tuple[str, ...], list] = {}
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                for info in zf.infolist():
                    found = None if info.is_dir() else _member(info.filename.split("/"))
                    if found:
                        where = f"'{archive}:{info.filename}'"
                        candidates.setdefault(found[0], []).append((found[1], where, zf.read(info)))
        else:
            with open_tar_stream(archive) as tar:
                for info in tar:
                    found = _member(info.name.split("/")) if info.isfile() else None
                    if found:
                        where = f"'{archive}:{info.name}'"
                        candidates.setdefault(found[0], []).append(
                            (found[1], where, tar.extractfile(info).read())
                        )
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError, zlib.error, lzma.LZMAError) as exc:
        raise OmnifuseError(
            f"Expected a complete tar or zip archive of {FOLDER}/{{yes,no}}/ ({SOURCE.filename} or the Kaggle zip). "
            f"Received: '{archive}', which cannot be read ({type(exc).__name__}: {exc}); it may be truncated"
        ) from exc
    return _pick(candidates)
