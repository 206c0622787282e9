"""The user's own data: a CSV whose columns are files, texts, numbers and categories, or a folder of classes.

**CSV** (:func:`load_csv`): one row per sample, one column holding the label. Every other column has a kind:

- ``image``: a path to an image file (any format Pillow reads), decoded to RGB and resized to one size;
- ``audio``: a path to a WAV file, mixed to mono, resampled and padded/cropped to one length;
- ``text``: the text itself;
- ``number`` and ``category``: together they form ONE modality named ``tabular`` of kind ``numbers``,
  float32 (N, F): numbers as they are (NaN for an empty cell) and each category one-hot over the values seen
  in the train split (all NaN for an empty cell, all zeros for a value train never saw);
- ``ignore``: not used (an id column, say);
- ``group``: not an input either: rows with the same value (a patient, a subject, a recording session) are never
  split apart, so that no test or validation row has a sibling in training. At most one such column, never
  inferred; an empty cell makes the row a group of its own.

Kinds are inferred unless ``kinds`` names them: a column whose values all end in an image suffix (``.png``,
``.jpg``, ...) is ``image``, ``.wav`` is ``audio``, all numeric is ``number``, few distinct short strings is
``category``, anything else ``text``; a column with no value at all is ignored, and so is an id (every value a
different single word, or integers increasing row by row), with a warning naming the override
(:mod:`omnifuse.data.schema`; ``omnifuse data inspect`` shows the result without training). Relative paths are resolved
against the CSV's folder. Each image, audio and text column is a modality named after its column (characters
other than letters, digits, ``_ - .`` become ``_``).

**Folder** (:func:`load_folder`): ``root/<class>/<stem>.<ext>``; the files of one sample share a stem
(``001.png`` + ``001.txt`` + ``001.wav``), giving the modalities ``image``, ``text`` and ``audio``.

**Splits**: a ``split`` column (``train``, ``val``, ``test``) when the CSV has one (a group found in more than one
of them is logged as a warning); otherwise a stratified, seeded train/val/test split (``val_fraction``,
``test_fraction``) that keeps each group whole. The splits carry the groups as ``extra["group"]``, so a validation
set held out of a given train split later keeps them whole too.

**Missing modalities**: an empty cell (or a sample without a file of that kind) means the sample lacks that
modality; ``Split.masks`` says which samples have which (1 = present). That is normal input, not an error.

**Bad rows**: a missing or undecodable file, an empty label, a non-number in a number column, an unknown split
name, a row with every input cell empty. By default they raise one :class:`OmnifuseError` listing the first of
them (line in the file, column, reason); with ``skip_bad_rows=True`` they are left out, and
``Dataset.meta["skipped_rows"]`` / ``meta["bad_rows"]`` say how many and which.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.cells import BadRow, Decoder, Sample, arrays, decode_sample, encode_tabular
from omnifuse.data.schema import (
    AUDIO_SUFFIXES,
    FILE_KINDS,
    IMAGE_SUFFIXES,
    KINDS,
    SUFFIX_KINDS,
    TABULAR,
    TEXT_SUFFIXES,
    column_kinds,
    number,
    open_csv,
    read_csv,
    safe_name,
)
from omnifuse.data.splits import VAL_FRACTION, holdout
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import of_column
from omnifuse.names import reserved_names

log = logging.getLogger(__name__)

# the names this module had before the schema and the cells moved out keep working from here
__all__ = ["AUDIO_SUFFIXES", "IMAGE_SUFFIXES", "KINDS", "TABULAR", "TEXT_SUFFIXES", "BadRow", "encode_tabular"]  # fmt: skip
__all__ += ["load", "load_csv", "load_folder", "safe_name"]
_read_csv, _number = read_csv, number
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
MAX_LISTED = 10  # bad rows named in the error message
MAX_RECORDED = 100  # bad rows kept in Dataset.meta["bad_rows"]


@dataclass(frozen=True)
class _Options:
    """How samples become arrays and splits (shared by the CSV and folder loaders)."""

    val_fraction: float
    test_fraction: float
    seed: int
    skip_bad_rows: bool
    image_size: int | tuple[int, int] | None
    sample_rate: int
    num_samples: int
    allow_outside_paths: bool = False
    id_column: str = ""  # the user's id column ("": none): its values name the samples in predictions


def _options(args: dict[str, Any]) -> _Options:
    """The :class:`_Options` among a loader's arguments (``locals()``: load_csv and load_folder share them)."""
    return _Options(**{f.name: args[f.name] for f in fields(_Options) if f.name in args})


# the data-config keys load() reads (under the same names; the catalog passes these)
OPTIONS = {
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
        "allow_outside_paths",
    )
}


def load(
    data_dir=None,
    csv: str = "",
    folder: str = "",
    label: str = "",
    kinds: dict[str, str] | None = None,
    skip_bad_rows: bool = False,
    image_size: int | None = None,
    sample_rate: int = 8000,
    num_samples: int = 8000,
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.2,
    allow_outside_paths: bool = False,
) -> Dataset:
    """The catalog's entry (``data.sets = ["table"]``): :func:`load_csv` for ``csv``, :func:`load_folder` for
    ``folder`` (``data.csv`` / ``data.folder`` in the config; ``data_dir`` is not used).
    """
    if bool(csv) == bool(folder):
        raise OmnifuseError(
            "Expected exactly one of data.csv (a CSV file) or data.folder (root/<class>/<files>) for the "
            f"data set 'table'. Received: csv={csv!r}, folder={folder!r}"
        )
    common = dict(
        skip_bad_rows=skip_bad_rows,
        image_size=image_size,
        sample_rate=sample_rate,
        num_samples=num_samples,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        allow_outside_paths=allow_outside_paths,
    )
    if csv:
        return load_csv(csv, label, kinds=kinds, **common)
    if kinds:
        raise OmnifuseError(
            f"data.kinds applies to a CSV only; a folder's kinds come from file suffixes. Received: {kinds}"
        )
    return load_folder(folder, label=label or "class", **common)


def load_csv(
    path: str | Path,
    label: str,
    kinds: dict[str, str] | None = None,
    split_column: str = "split",
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_rows: bool = False,
    image_size: int | tuple[int, int] | None = None,
    sample_rate: int = 8000,
    num_samples: int = 8000,
    allow_outside_paths: bool = False,
) -> Dataset:
    """A CSV file as a :class:`Dataset` (see the module docstring for kinds, splits and bad rows).

    ``image_size``: side (or ``(height, width)``) every image is resized to; ``None`` or 0: the first image's.
    Example: ``load_csv("pets.csv", label="species", kinds={"id": "ignore"})["train"].inputs["photo"].shape``.
    """
    options = _options(locals())
    path, header, rows, has_split, features = open_csv(path, label, split_column)
    kinds = dict(kinds or {})
    grouped = [c for c, k in kinds.items() if k == "group"]
    if len(grouped) > 1:
        raise OmnifuseError(
            f"Expected at most one group column in data.kinds. Received: {', '.join(grouped)}"
        )
    for column in grouped:
        kinds[column] = "ignore"  # checked as a column like any other, then kept out of the inputs
    samples = []
    for line, cells in rows:
        values = dict(zip(header, cells))
        sample = Sample(line, values.get(label, "").strip(), {c: values.get(c, "") for c in features})
        if grouped:
            sample.group = values.get(grouped[0], "").strip()
        if len(cells) != len(header):
            sample.problems.append(
                BadRow(line, "(row)", f"expected {len(header)} fields, found {len(cells)}")
            )
        if has_split:
            given = values.get(split_column, "").strip()
            sample.split = SPLITS.get(given.lower(), "")
            if not sample.split:
                sample.problems.append(
                    BadRow(line, split_column, f"expected train, val or test. Received: {given!r}")
                )
        samples.append(sample)
    columns, _ = column_kinds(path, features, {c: [s.cells[c] for s in samples] for c in features}, kinds)
    ids = _id_column([c for c in features if c not in columns and c not in grouped], samples)
    options = replace(options, id_column=ids)
    return _assemble(path.stem, str(path), path.parent, samples, columns, label, has_split, options)


def _id_column(ignored: list[str], samples: list[Sample]) -> str:
    """The user's id column: the first ignored column with a distinct value in every row ("" for none)."""
    for column in ignored:
        values = [s.cells[column].strip() for s in samples]
        if all(values) and len(set(values)) == len(values):
            return column
    return ""


def load_folder(
    root: str | Path,
    label: str = "class",
    val_fraction: float = VAL_FRACTION,
    test_fraction: float = 0.2,
    seed: int = 0,
    skip_bad_rows: bool = False,
    image_size: int | tuple[int, int] | None = None,
    sample_rate: int = 8000,
    num_samples: int = 8000,
    allow_outside_paths: bool = False,
) -> Dataset:
    """A folder ``root/<class>/<stem>.<ext>`` as a :class:`Dataset`; ``label`` names the task.

    Files sharing a stem are one sample: an image (``.png``, ``.jpg``, ...), a text (``.txt``, UTF-8) and a
    WAV, any of which may be absent. Other files are ignored (with a warning).
    Example: ``load_folder("pets/")["train"].masks["text"]`` (1 where the sample has a ``.txt``).
    """
    options = _options(locals())
    root = Path(root).expanduser()
    if not root.is_dir():
        raise OmnifuseError(
            f"Expected a folder root/<class>/<files>. Received: '{root}', which is not a folder"
        )
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise OmnifuseError(f"Expected one sub-folder per class in '{root}'. Received: no sub-folders")
    samples, ignored = [], []
    for name in classes:
        stems: dict[str, dict[str, list[Path]]] = {}
        for file in sorted((root / name).iterdir()):
            kind = SUFFIX_KINDS.get(file.suffix.lower())
            if file.name.startswith(".") or not file.is_file() or kind is None:
                ignored.append(file)
                continue
            stems.setdefault(file.stem, {}).setdefault(kind, []).append(file)
        for stem, files in stems.items():
            if len(files) == 1 and len(next(iter(files.values()))) > 1:
                # x.jpg and x.png with nothing else sharing the stem: two samples of one modality, not ambiguous
                kind, found = next(iter(files.items()))
                samples += [Sample(f"{name}/{f.name}", name, {kind: f}) for f in found]
                continue
            sample = Sample(f"{name}/{stem}", name, {k: v[0] for k, v in files.items()})
            for kind, found in files.items():
                if len(found) > 1:
                    names = ", ".join(f.name for f in found)
                    reason = (
                        f"{len(found)} {kind} files share the stem ({names}); which one is this sample's?"
                    )
                    sample.problems.append(BadRow(sample.row, kind, reason))
            samples.append(sample)
    if ignored:
        log.warning(
            "Ignoring %d entries of '%s' that are not image, .txt or .wav files (e.g. %s)",
            len(ignored),
            root,
            ignored[0],
        )
    if not samples:
        raise OmnifuseError(
            f"Expected image, .txt or .wav files in the class folders of '{root}'. Received: none"
        )
    kinds_found = {k for s in samples for k in s.cells}
    columns = {k: k for k in FILE_KINDS if k in kinds_found}
    for s in samples:
        s.cells = {k: s.cells.get(k, "") for k in columns}
    return _assemble(root.name, str(root), root, samples, columns, label, False, options)


def _modality_names(columns: dict[str, str], label: str) -> dict[str, str]:
    """column → modality name for the image, text and audio columns; checks no two names collide."""
    own = {c: of_column(k).CELL != "columns" for c, k in columns.items()}  # numbers: all in one modality
    names = {c: safe_name(c) for c in columns if own[c]}
    taken = list(names.values()) + ([TABULAR] if not all(own.values()) else [])
    reserved = {safe_name(label), *reserved_names(taken)}
    for name in taken:
        if taken.count(name) > 1 or name in reserved:
            raise OmnifuseError(
                f"Two columns (or a column and the label/tabular modality) would both be called {name!r}; "
                "rename a column, or set its kind to ignore in data.kinds"
            )
    return names


def _assemble(
    name: str,
    source: str,
    base: Path,
    samples: list[Sample],
    columns: dict[str, str],
    label: str,
    has_split: bool,
    options: _Options,
) -> Dataset:
    """Decode every cell, deal with bad rows, split, build the Dataset (shared by the CSV and folder loaders)."""
    val, test = options.val_fraction, options.test_fraction
    if not has_split and not (0 < test < 1 and 0 <= val < 1 and val + test < 1):
        raise OmnifuseError(
            "Expected 0 < test_fraction < 1, 0 <= val_fraction < 1 and their sum below 1. "
            f"Received: val_fraction={val}, test_fraction={test}"
        )
    modality_of = _modality_names(columns, label)
    decode = Decoder(
        base, options.image_size, options.sample_rate, options.num_samples, options.allow_outside_paths
    )
    decoded = [decode_sample(s, columns, label, decode) for s in samples]
    bad = [p for s in samples for p in s.problems]
    skipped = sum(1 for s in samples if s.problems)
    if bad and not options.skip_bad_rows:
        hint = f" (relative paths are read from '{base}')" if Path(source).is_file() else ""
        listed = "\n".join(f"  {b}" for b in bad[:MAX_LISTED])
        more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise OmnifuseError(
            f"Found {skipped} bad row(s) in '{source}'{hint}:\n{listed}{more}\n"
            "Fix them, or skip them with --skip-bad-rows (data.skip_bad_rows = true)."
        )
    if bad:
        log.warning("Skipping %d bad row(s) of '%s'; first: %s", skipped, source, bad[0])
    keep = [i for i, s in enumerate(samples) if not s.problems]
    if not keep:
        raise OmnifuseError(f"Every row of '{source}' is bad; nothing to train on. First: {bad[0]}")
    samples, decoded = [samples[i] for i in keep], [decoded[i] for i in keep]

    classes = sorted({s.label for s in samples})
    if all(number(c) is not None for c in classes):
        classes.sort(key=number)
    labels = np.array([classes.index(s.label) for s in samples], dtype=np.int64)
    groups = None
    if any(s.group is not None for s in samples):  # an empty cell: a group of its own
        groups = np.array([s.group or f"(row {s.row})" for s in samples])
    if has_split:
        split_of = np.array([s.split for s in samples])
        _warn_split_groups(source, split_of, groups)
    else:
        split_of = _random_split(labels, val, test, options.seed, groups)
    counts = {k: int((split_of == k).sum()) for k in ("train", "test")}
    if not all(counts.values()):
        raise OmnifuseError(
            f"Expected rows in both the train and the test split of '{source}'. "
            f"Received: {counts['train']} train, {counts['test']} test"
        )

    inputs, masks, meta = arrays(columns, modality_of, decoded, split_of == "train", decode)
    meta["skipped_rows"] = skipped if options.skip_bad_rows else 0
    meta["bad_rows"] = [b.to_dict() for b in bad[:MAX_RECORDED]] if options.skip_bad_rows else []
    task = safe_name(label)
    extra = {} if groups is None else {"group": groups}
    if options.id_column:  # the user's ids name the rows of predictions.csv
        extra["id"] = np.array([s.cells[options.id_column].strip() for s in samples])
        meta["id_column"] = options.id_column
    whole = Split(inputs, {task: labels}, ids=np.array([s.row for s in samples]), extra=extra, masks=masks)
    splits = {}
    for split in ("train", "val", "test"):
        index = np.flatnonzero(split_of == split)
        if len(index) or split != "val":
            splits[split] = whole.take(index)
    modalities = {modality_of[c]: k for c, k in columns.items() if c in modality_of}
    if TABULAR in inputs:
        modalities[TABULAR] = "numbers"
    return Dataset(name, splits, {task: classes}, modalities, source=source, meta=meta)


def _random_split(
    labels: np.ndarray, val_fraction: float, test_fraction: float, seed: int, groups: np.ndarray | None = None
) -> np.ndarray:
    """Each sample's split name: stratified by label where every class has enough samples, seeded, groups whole."""
    out = np.full(len(labels), "train", dtype=object)
    index = np.arange(len(labels))
    rest, test = holdout(index, labels, test_fraction, seed, groups)
    out[test] = "test"
    if val_fraction > 0:
        kept_groups = None if groups is None else groups[rest]
        _, val = holdout(rest, labels[rest], val_fraction / (1 - test_fraction), seed, kept_groups)
        out[val] = "val"
    return out.astype(str)


def _warn_split_groups(source: str, split_of: np.ndarray, groups: np.ndarray | None) -> None:
    """A group the CSV's own split column puts on more than one side is logged (the split is the user's)."""
    if groups is None:
        return
    sides: dict[str, set[str]] = {}
    for group, split in zip(groups.tolist(), split_of.tolist(), strict=True):
        sides.setdefault(group, set()).add(split)
    shared = [g for g, s in sides.items() if len(s) > 1]
    if shared:
        log.warning(
            "%d group(s) of '%s' have rows in more than one split of its split column, e.g. %r: their rows in "
            "val or test have siblings in training",
            len(shared), source, shared[0],
        )  # fmt: skip
