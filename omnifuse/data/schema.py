"""What a CSV's columns are: reading the file, inferring each column's kind, and the schema shown before training.

A column's kind is ``data.kinds``'s when it names it, else inferred from its cells: all image suffixes ``image``,
all ``.wav`` ``audio``, all numeric ``number`` (unless it is an id, below), few distinct short strings
``category``, anything else ``text``; a column with no value at all is ignored.

An id is not an input: a column whose every value is a distinct single word (``pet_id = "P0001"``), or whose
integers strictly increase row by row (a row number), is ``ignore`` unless ``data.kinds`` names its kind; the
schema says so, with the override that brings it back.

:func:`infer_schema` is the schema alone (``omnifuse data inspect X.csv --label y``): it reads the CSV, or lists a
folder, and decodes no file, so it answers in a moment and never imports TensorFlow.
"""

from __future__ import annotations

import csv
import logging
import re
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omnifuse import modalities
from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.modalities.numbers import CATEGORY_MAX_LENGTH, CATEGORY_MAX_VALUES, number
from omnifuse.rundir import atomic_write_json

log = logging.getLogger("omnifuse.data.table")  # the loader's logger: its warnings are the loader's

IMAGE_SUFFIXES = modalities.image.SUFFIXES  # each kind's own, named here as before
AUDIO_SUFFIXES = modalities.audio.SUFFIXES
TEXT_SUFFIXES = modalities.text.SUFFIXES
# a folder's file suffix -> the modality kind of its files
SUFFIX_KINDS = {s: name for name, rule in modalities.KINDS.items() for s in rule.SUFFIXES}
FILE_KINDS = [name for name, rule in modalities.KINDS.items() if rule.SUFFIXES]  # image, text, audio
# the column kinds of data.kinds: each modality kind's (image, text, audio, number, category), then the non-inputs
KINDS = (*modalities.COLUMNS, "ignore", "group")
TABULAR = "tabular"  # the modality holding every number and category column
ID_MIN_ROWS = 5  # fewer filled cells than this never make an id: too little to tell
MAX_VALUES_SHOWN = 20  # category values listed in the schema


@dataclass
class Column:
    """One column of the schema: its kind and why, how many cells are empty, how many distinct values."""

    name: str
    kind: str  # a KINDS entry, or "label" / "split"
    missing: int
    distinct: int
    values: list[str] = field(default_factory=list)  # a category's (or the label's) values, most common first
    why: str = "inferred"  # "inferred", "data.kinds", "an id: ..." or "empty"


@dataclass
class Schema:
    """A CSV's (or a folder's) columns as training will read them."""

    source: str
    rows: int
    label: str
    columns: list[Column]
    notes: list[str] = field(default_factory=list)  # what was decided for the user, and how to change it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_name(column: str) -> str:
    """``column`` as a Keras layer name: characters other than letters, digits, ``_ - .`` become ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", column.strip()) or "_"


def read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
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


def check_label(path: Path, header: list[str], label: str) -> None:
    if not label:
        raise OmnifuseError(
            f"Expected the name of the label column (--label / data.label) for '{path}'. "
            f"Columns: {', '.join(header)}"
        )
    if label not in header:
        raise OmnifuseError(
            f"Expected a label column {label!r} in '{path}'.{did_you_mean(label, header)} "
            f"Columns: {', '.join(header)}"
        )


def infer_kind(values: list[str]) -> str | None:
    """The kind of a column from its cells (None: every cell is empty); ids are found by :func:`id_reason`."""
    filled = [v.strip() for v in values if v.strip()]
    if not filled:
        return None
    lower = [v.lower() for v in filled]
    for name, rule in modalities.KINDS.items():  # a column of paths: image, then audio
        if rule.CELL == "path" and all(v.endswith(rule.SUFFIXES) for v in lower):
            return name
    if all(number(v) is not None for v in filled):
        return "number"
    distinct = set(filled)
    few = len(distinct) <= max(2, min(CATEGORY_MAX_VALUES, len(filled) // 2))
    return "category" if few and max(len(v) for v in distinct) <= CATEGORY_MAX_LENGTH else "text"


def id_reason(values: list[str], kind: str | None) -> str | None:
    """Why an inferred ``number`` or ``text`` column reads as an id (and is best ignored), else None."""
    filled = [v.strip() for v in values if v.strip()]
    if len(filled) < ID_MIN_ROWS or kind not in modalities.COLUMNS:
        return None
    return modalities.of_column(kind).id_reason(filled, kind)  # number: a row number; text: single words


def check_kinds(path: Path, features: list[str], kinds: dict[str, str]) -> None:
    for column, kind in kinds.items():
        if column not in features:
            raise OmnifuseError(
                f"data.kinds names column {column!r}, which '{path}' does not have (or is the label or split)."
                f"{did_you_mean(column, features)} Columns: {', '.join(features)}"
            )
        if kind not in KINDS:
            raise OmnifuseError(
                f"Expected a kind in {', '.join(KINDS)} for column {column!r}.{did_you_mean(kind, KINDS)} "
                f"Received: {kind!r}"
            )


def column_kinds(
    path: Path, features: list[str], cells: dict[str, list[str]], kinds: dict[str, str], warn: bool = True
) -> tuple[dict[str, str], dict[str, str]]:
    """column → kind for every used column (``kinds`` first, inferred for the rest), and column → reason for
    the columns ignored as ids (``warn``: each logged, with its override)."""
    check_kinds(path, features, kinds)
    columns, ids = {}, {}
    for column in features:
        kind = kinds.get(column) or infer_kind(cells[column])
        if column not in kinds:
            reason = id_reason(cells[column], kind)
            if reason:
                ids[column] = reason
                if warn:
                    log.warning("%s", id_note(column, reason, kind))
                continue
            if kind in modalities.COLUMNS and warn:  # text: most values look like file paths
                modalities.of_column(kind).warn_column(path, column, cells[column], log)
        if kind is None and warn:
            log.warning("Ignoring column %r of '%s': every cell is empty", column, path)
        elif kind != "ignore":
            columns[column] = kind
    if not columns:
        hint = "".join(f"; {id_note(c, r, infer_kind(cells[c]))}" for c, r in ids.items())
        raise OmnifuseError(
            f"Expected at least one input column besides the label in '{path}'. Received: none{hint}"
        )
    log.info("Column kinds of '%s': %s", path, ", ".join(f"{c}={k}" for c, k in columns.items()))
    return columns, ids


def id_note(column: str, reason: str, kind: str | None) -> str:
    return (
        f"Column {column!r} looks like an id ({reason}), so it is not an input. To use it, give its kind: "
        f"--set 'data.kinds={{{column} = \"{kind or 'text'}\"}}' (or data.kinds in the config)"
    )


def _column(name: str, kind: str, values: list[str], why: str = "inferred") -> Column:
    filled = Counter(v.strip() for v in values if v.strip())
    shown = [v for v, _ in filled.most_common(MAX_VALUES_SHOWN)] if kind in ("category", "label") else []
    return Column(name, kind, len(values) - sum(filled.values()), len(filled), shown, why)


def open_csv(path: str | Path, label: str, split_column: str):
    """A CSV's path, header, rows, whether it has a split column, and its feature columns (neither the label nor
    the split column), with an error naming the file when it is missing or lacks the label column."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OmnifuseError(f"Expected a CSV file. Received: '{path}', which does not exist or is not a file")
    header, rows = read_csv(path)
    check_label(path, header, label)
    has_split = split_column in header and split_column != label
    features = [c for c in header if c != label and not (has_split and c == split_column)]
    return path, header, rows, has_split, features


def inspect_csv(
    path: str | Path, label: str, kinds: dict[str, str] | None = None, split_column="split"
) -> Schema:
    """The schema of a CSV: each column's kind, empty cells, distinct values (decodes no file)."""
    path, header, rows, has_split, features = open_csv(path, label, split_column)
    cells = {c: [r[header.index(c)] if header.index(c) < len(r) else "" for _, r in rows] for c in header}
    given = dict(kinds or {})
    plain = {c: "ignore" if k == "group" else k for c, k in given.items()}
    used, ids = column_kinds(path, features, cells, plain, warn=False)
    columns = [_column(label, "label", cells[label])]
    if has_split:
        columns.append(_column(split_column, "split", cells[split_column]))
    notes = []
    for c in features:
        if c in ids:
            columns.append(_column(c, "ignore", cells[c], f"an id: {ids[c]}"))
            notes.append(id_note(c, ids[c], infer_kind(cells[c])))
        elif c in given:
            columns.append(_column(c, given[c], cells[c], "data.kinds"))
        else:
            columns.append(
                _column(c, used.get(c, "ignore"), cells[c], "inferred" if c in used else "every cell empty")
            )
    return Schema(str(path), len(rows), label, columns, notes)


def inspect_folder(root: str | Path, label: str = "class") -> Schema:
    """The schema of a folder ``root/<class>/<stem>.<ext>``: one column per kind of file, and the classes."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise OmnifuseError(
            f"Expected a folder root/<class>/<files>. Received: '{root}', which is not a folder"
        )
    stems: dict[tuple[str, str], set[str]] = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for file in folder.iterdir():
            kind = SUFFIX_KINDS.get(file.suffix.lower())
            if kind and file.is_file() and not file.name.startswith("."):
                stems.setdefault((folder.name, file.stem), set()).add(kind)
    if not stems:
        raise OmnifuseError(
            f"Expected image, .txt or .wav files in the class folders of '{root}'. Received: none"
        )
    classes = [c for c, _ in stems]
    columns = [_column(label, "label", classes)]
    for kind in FILE_KINDS:
        have = sum(kind in k for k in stems.values())
        if have:
            columns.append(Column(kind, kind, len(stems) - have, have, [], "file suffixes"))
    return Schema(str(root), len(stems), label, columns)


def infer_schema(
    csv: str = "", folder: str = "", label: str = "", kinds: dict[str, str] | None = None
) -> Schema:
    """:func:`inspect_csv` or :func:`inspect_folder`, with the arguments of ``data.csv`` / ``data.folder``."""
    if csv:
        return inspect_csv(csv, label, kinds)
    return inspect_folder(folder, label or "class")


def write_schema(run_dir: str | Path, data) -> Path | None:
    """``run_dir/schema.json``: the schema of the config's own data (``data``: its ``data`` section, with
    ``sets`` holding ``"table"``), as training reads it; None (and nothing written) for other data sets."""
    if "table" not in data.sets or not (data.csv or data.folder):
        return None
    found = infer_schema(data.csv, data.folder, data.label, dict(data.kinds))
    return atomic_write_json(Path(run_dir) / "schema.json", found.to_dict())
