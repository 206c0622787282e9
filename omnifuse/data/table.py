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
``category``, anything else ``text``; a column with no value at all is ignored. Relative paths are resolved
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

import csv
import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.decode import check_text, decode_image, read_text
from omnifuse.data.splits import VAL_FRACTION, holdout
from omnifuse.data.wav import decode_wav
from omnifuse.errors import OmnifuseError
from omnifuse.names import reserved_names

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
AUDIO_SUFFIXES = (".wav", ".wave")
TEXT_SUFFIXES = (".txt",)
_SUFFIX_KINDS = {
    **{s: "image" for s in IMAGE_SUFFIXES},
    **{s: "audio" for s in AUDIO_SUFFIXES},
    **{s: "text" for s in TEXT_SUFFIXES},
}
KINDS = ("image", "text", "audio", "number", "category", "ignore", "group")
TABULAR = "tabular"  # the modality holding every number and category column
SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "dev": "val", "test": "test"}
CATEGORY_MAX_VALUES = 50  # "few distinct short strings": at most this many distinct values ...
CATEGORY_MAX_LENGTH = 40  # ... none longer than this, and at most half as many values as filled cells
MAX_LISTED = 10  # bad rows named in the error message
MAX_RECORDED = 100  # bad rows kept in Dataset.meta["bad_rows"]


@dataclass(frozen=True)
class BadRow:
    """One problem with one sample: ``row`` is its line in the CSV (header = line 1) or its id in a folder."""

    row: int | str
    column: str
    reason: str

    def __str__(self) -> str:
        where = f"line {self.row}" if isinstance(self.row, int) else f"sample '{self.row}'"
        return f"{where}, column '{self.column}': {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return {"row": self.row, "column": self.column, "reason": self.reason}


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


@dataclass
class _Sample:
    row: int | str
    label: str
    cells: dict[str, Any]  # column -> raw cell ("" = empty); a Path for a folder sample's files
    split: str = ""
    problems: list[BadRow] = field(default_factory=list)
    group: str | None = None  # the group column's value ("" = empty); None without a group column


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
    path = Path(path).expanduser()
    if not path.is_file():
        raise OmnifuseError(f"Expected a CSV file. Received: '{path}', which does not exist or is not a file")
    header, rows = _read_csv(path)
    if not label:
        raise OmnifuseError(
            f"Expected the name of the label column (--label / data.label) for '{path}'. "
            f"Columns: {', '.join(header)}"
        )
    if label not in header:
        raise OmnifuseError(f"Expected a label column {label!r} in '{path}'. Columns: {', '.join(header)}")
    has_split = split_column in header and split_column != label
    features = [c for c in header if c != label and not (has_split and c == split_column)]
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
        sample = _Sample(line, values.get(label, "").strip(), {c: values.get(c, "") for c in features})
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
    columns = _column_kinds(path, features, samples, kinds)
    options = _Options(
        val_fraction,
        test_fraction,
        seed,
        skip_bad_rows,
        image_size,
        sample_rate,
        num_samples,
        allow_outside_paths,
        _id_column([c for c in features if c not in columns and c not in grouped], samples),
    )
    return _assemble(path.stem, str(path), path.parent, samples, columns, label, has_split, options)


def _id_column(ignored: list[str], samples: list[_Sample]) -> str:
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
            kind = _SUFFIX_KINDS.get(file.suffix.lower())
            if file.name.startswith(".") or not file.is_file() or kind is None:
                ignored.append(file)
                continue
            stems.setdefault(file.stem, {}).setdefault(kind, []).append(file)
        for stem, files in stems.items():
            if len(files) == 1 and len(next(iter(files.values()))) > 1:
                # x.jpg and x.png with nothing else sharing the stem: two samples of one modality, not ambiguous
                kind, found = next(iter(files.items()))
                samples += [_Sample(f"{name}/{f.name}", name, {kind: f}) for f in found]
                continue
            sample = _Sample(f"{name}/{stem}", name, {k: v[0] for k, v in files.items()})
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
    columns = {k: k for k in ("image", "text", "audio") if k in kinds_found}
    for s in samples:
        s.cells = {k: s.cells.get(k, "") for k in columns}
    options = _Options(
        val_fraction,
        test_fraction,
        seed,
        skip_bad_rows,
        image_size,
        sample_rate,
        num_samples,
        allow_outside_paths,
    )
    return _assemble(root.name, str(root), root, samples, columns, label, False, options)


def encode_tabular(spec: dict[str, Any], rows: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows (column → value; missing key, ``None`` or ``""`` = empty cell) as float32 (N, F) + presence (N,).

    ``spec`` is ``Dataset.meta["numbers"]["tabular"]`` (also in a run's meta.json): its ``columns`` in order,
    each a number or a category with its ``vocabulary``. The loader and the Predictor both use it, so they agree.
    """
    names = {c["name"] for c in spec["columns"]}
    out = np.full((len(rows), len(spec["features"])), np.nan, dtype=np.float32)
    mask = np.zeros(len(rows), dtype=np.float32)
    for i, row in enumerate(rows):
        unknown = [k for k in row if k not in names]
        if unknown:
            raise OmnifuseError(f"Unknown tabular column {unknown[0]!r}. Columns: {', '.join(sorted(names))}")
        j = 0
        for col in spec["columns"]:
            value = row.get(col["name"])
            text = "" if value is None else str(value).strip()
            if isinstance(value, float) and math.isnan(value):
                text = ""
            if col["kind"] == "number":
                if text:
                    number = _number(text)
                    if number is None:
                        raise OmnifuseError(
                            f"Expected a number for column {col['name']!r}. Received: {value!r}"
                        )
                    out[i, j], mask[i] = number, 1.0
                j += 1
            else:
                vocab = col["vocabulary"]
                if text:
                    out[i, j : j + len(vocab)] = 0.0
                    if text in vocab:
                        out[i, j + vocab.index(text)] = 1.0
                    mask[i] = 1.0
                j += len(vocab)
    return out, mask


def safe_name(column: str) -> str:
    """``column`` as a Keras layer name: characters other than letters, digits, ``_ - .`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", column.strip()) or "_"


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and ``(line, cells)`` per non-blank row; ``line``: where the row starts (header = line 1)."""
    delimiter = "\t" if path.suffix.lower() in (".tsv", ".tab") else ","
    rows = []
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f, delimiter=delimiter)
            header = next(reader, None)
            while True:
                start = reader.line_num + 1
                cells = next(reader, None)
                if cells is None:
                    break
                if any(c.strip() for c in cells):
                    rows.append((start, cells))
    except UnicodeDecodeError as exc:
        raise OmnifuseError(
            f"Expected a UTF-8 CSV file. Received: '{path}' ({exc.reason} at byte {exc.start})"
        ) from exc
    except OSError as exc:
        raise OmnifuseError(
            f"Expected a readable CSV file. Received: '{path}': {exc.strerror or exc}"
        ) from exc
    except csv.Error as exc:
        raise OmnifuseError(
            f"Expected a well-formed CSV file. Received: '{path}', line {reader.line_num}: {exc}"
        ) from exc
    if not header or not any(h.strip() for h in header):
        raise OmnifuseError(
            f"Expected a CSV file with a header row naming its columns. Received: '{path}' (empty)"
        )
    header = [h.strip() for h in header]
    nameless = [i + 1 for i, h in enumerate(header) if not h]
    if nameless:
        raise OmnifuseError(
            f"Expected a name for every column of '{path}'. Received: column {nameless[0]} has none"
        )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise OmnifuseError(f"Expected distinct column names in '{path}'. Received: {duplicates[0]!r} twice")
    if not rows:
        raise OmnifuseError(f"Expected rows below the header of '{path}'. Received: none")
    return header, rows


def _infer_kind(values: list[str]) -> str | None:
    filled = [v.strip() for v in values if v.strip()]
    if not filled:
        return None
    lower = [v.lower() for v in filled]
    if all(v.endswith(IMAGE_SUFFIXES) for v in lower):
        return "image"
    if all(v.endswith(AUDIO_SUFFIXES) for v in lower):
        return "audio"
    if all(_number(v) is not None for v in filled):
        return "number"
    distinct = set(filled)
    few = len(distinct) <= max(2, min(CATEGORY_MAX_VALUES, len(filled) // 2))
    return "category" if few and max(len(v) for v in distinct) <= CATEGORY_MAX_LENGTH else "text"


def _column_kinds(
    path: Path, features: list[str], samples: list[_Sample], kinds: dict[str, str]
) -> dict[str, str]:
    """column → kind for every used column, ``kinds`` first, inferred for the rest."""
    for column, kind in kinds.items():
        if column not in features:
            raise OmnifuseError(
                f"data.kinds names column {column!r}, which '{path}' does not have (or is the label or split). "
                f"Columns: {', '.join(features)}"
            )
        if kind not in KINDS:
            raise OmnifuseError(
                f"Expected a kind in {', '.join(KINDS)} for column {column!r}. Received: {kind!r}"
            )
    columns = {}
    for column in features:
        kind = kinds.get(column) or _infer_kind([s.cells[column] for s in samples])
        if kind == "text" and column not in kinds:
            _warn_path_like(path, column, [s.cells[column] for s in samples])
        if kind is None:
            log.warning("Ignoring column %r of '%s': every cell is empty", column, path)
        elif kind != "ignore":
            columns[column] = kind
    if not columns:
        raise OmnifuseError(
            f"Expected at least one input column besides the label in '{path}'. Received: none"
        )
    log.info("Column kinds of '%s': %s", path, ", ".join(f"{c}={k}" for c, k in columns.items()))
    return columns


_PATH_LIKE = re.compile(r"^(?:[A-Za-z]:)?[^\s]*[/\\][^\s]*$|^[^\s/\\]+\.[A-Za-z0-9]{1,5}$")


def _warn_path_like(path: Path, column: str, values: list[str]) -> bool:
    """Warn (and say True) when most values of a column read as text look like file paths: a column of files in
    a format omnifuse does not know, or with a few odd names, would otherwise be trained on as strings."""
    filled = [v.strip() for v in values if v.strip()]
    looks = [v for v in filled if _PATH_LIKE.match(v)]
    if not filled or len(looks) < 0.8 * len(filled):
        return False
    log.warning(
        "Column %r of '%s' is read as text, but %d of its %d values look like file paths (e.g. %r); if it holds "
        "files, give its kind in data.kinds (image or audio) and check the values, else set it to ignore",
        column,
        path,
        len(looks),
        len(filled),
        looks[0],
    )
    return True


def _modality_names(columns: dict[str, str], label: str) -> dict[str, str]:
    """column → modality name for the image, text and audio columns; checks no two names collide."""
    names = {c: safe_name(c) for c, k in columns.items() if k in ("image", "text", "audio")}
    taken = list(names.values()) + (
        [TABULAR] if any(k in ("number", "category") for k in columns.values()) else []
    )
    reserved = {safe_name(label), *reserved_names(taken)}
    for name in taken:
        if taken.count(name) > 1 or name in reserved:
            raise OmnifuseError(
                f"Two columns (or a column and the label/tabular modality) would both be called {name!r}; "
                "rename a column, or set its kind to ignore in data.kinds"
            )
    return names


class _Decoder:
    """Decodes one cell per kind; the first image fixes the size when none is given."""

    def __init__(
        self, base: Path, image_size, sample_rate: int, num_samples: int, allow_outside: bool = False
    ):
        self.base, self.root, self.allow_outside = base, base.resolve(), allow_outside
        if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
            image_size = (int(image_size), int(image_size)) if image_size > 0 else None
        if image_size is not None and (len(image_size) != 2 or min(image_size) <= 0):
            raise OmnifuseError(
                f"Expected image_size to be a positive side, (height, width) or 0. Received: {image_size!r}"
            )
        self.image_size = None if image_size is None else tuple(int(s) for s in image_size)
        self.sample_rate = sample_rate
        self.num_samples = num_samples

    def file(self, value) -> Path:
        path = value if isinstance(value, Path) else self.base / Path(value.strip()).expanduser()
        shown = path if isinstance(value, Path) else value.strip()
        # checked before the file is even looked at: a CSV must not learn (or train on) what lies outside its folder
        if not self.allow_outside and not path.resolve().is_relative_to(self.root):
            raise OmnifuseError(
                f"'{shown}' resolves to '{path.resolve()}', outside the data folder '{self.root}' "
                "(allow it with --allow-outside-paths / data.allow_outside_paths = true)"
            )
        if not path.is_file():
            raise OmnifuseError(f"file not found: '{shown}'")
        return path

    def __call__(self, kind: str, value):
        if kind == "image":
            image = decode_image(self.file(value), size=self.image_size, channels=3)
            if self.image_size is None:
                self.image_size = image.shape[:2]
            return image
        if kind == "audio":
            return decode_wav(self.file(value), self.sample_rate, self.num_samples)
        if kind == "text":
            if isinstance(value, Path):
                data = self.file(value).read_bytes()
                return read_text(value) if data.strip() else ""
            return check_text(value, "the text")
        if kind == "number":
            number = _number(value.strip())
            if number is None:
                raise OmnifuseError(f"expected a number. Received: {value.strip()!r}")
            return number
        return value.strip()  # category


def _assemble(
    name: str,
    source: str,
    base: Path,
    samples: list[_Sample],
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
    decode = _Decoder(
        base, options.image_size, options.sample_rate, options.num_samples, options.allow_outside_paths
    )
    decoded = [_decode_sample(s, columns, label, decode) for s in samples]
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
    if all(_number(c) is not None for c in classes):
        classes.sort(key=_number)
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

    inputs, masks, meta = _arrays(columns, modality_of, decoded, split_of == "train", decode)
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


def _decode_sample(sample: _Sample, columns: dict[str, str], label: str, decode: _Decoder) -> dict[str, Any]:
    """column -> decoded value for the sample's non-empty cells; problems go to ``sample.problems``."""
    if not sample.label:
        sample.problems.append(BadRow(sample.row, label, "empty label"))
    values = {}
    for column, kind in columns.items():
        cell = sample.cells[column]
        if isinstance(cell, str) and not cell.strip():
            continue  # an empty cell: this sample lacks the modality
        try:
            value = decode(kind, cell)
        except OmnifuseError as exc:
            sample.problems.append(BadRow(sample.row, column, str(exc)))
            continue
        if not (kind == "text" and not value.strip()):
            values[column] = value
    if not values and not sample.problems:
        sample.problems.append(BadRow(sample.row, "(all)", "every input column is empty"))
    return values


def _arrays(columns, modality_of, decoded, train: np.ndarray, decode: _Decoder):
    """``inputs`` and ``masks`` per modality (zeros / "" / NaN where absent), and the meta describing them."""
    inputs, masks, meta = {}, {}, {"columns": dict(columns), "modality_columns": {}}
    n = len(decoded)
    for column, modality in modality_of.items():
        kind = columns[column]
        if kind == "image":
            array = np.zeros((n, *(decode.image_size or (1, 1)), 3), dtype=np.uint8)
        elif kind == "audio":
            array = np.zeros((n, decode.num_samples), dtype=np.float32)
        else:
            array = np.array([""] * n, dtype=object)
        for i, values in enumerate(decoded):
            if column in values:
                array[i] = values[column]
        inputs[modality] = array
        masks[modality] = np.array([column in v for v in decoded], dtype=np.float32)
        meta["modality_columns"][modality] = column
    tabular = [c for c, k in columns.items() if k in ("number", "category")]
    if tabular:
        spec = _tabular_spec(columns, tabular, decoded, train)
        rows = [{c: v[c] for c in tabular if c in v} for v in decoded]
        inputs[TABULAR], masks[TABULAR] = encode_tabular(spec, rows)
        meta["numbers"] = {TABULAR: spec}
        meta["modality_columns"][TABULAR] = tabular
    return inputs, masks, meta


def _tabular_spec(columns: dict[str, str], tabular: list[str], decoded, train: np.ndarray) -> dict[str, Any]:
    """The tabular modality's columns and features; category vocabularies come from the train rows only."""
    spec_columns, features = [], []
    for column in tabular:
        if columns[column] == "number":
            spec_columns.append({"name": column, "kind": "number"})
            features.append(column)
        else:
            vocab = sorted({v[column] for v, t in zip(decoded, train) if t and column in v})
            spec_columns.append({"name": column, "kind": "category", "vocabulary": vocab})
            features += [f"{column}={value}" for value in vocab]
    return {"columns": spec_columns, "features": features}


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
