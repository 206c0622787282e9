"""A table's cells as arrays: each cell decoded by its column's kind, the tabular features, and the rows that fail.

Shared by the CSV and folder loaders of :mod:`omnifuse.data.table` (see there for what the kinds mean) and by the
Predictor, which encodes a request's numbers and categories with :func:`encode_tabular` as training did.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data import schema
from omnifuse.data.decode import check_text, decode_image, read_text
from omnifuse.data.schema import TABULAR
from omnifuse.data.wav import decode_wav
from omnifuse.errors import OmnifuseError, did_you_mean


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


@dataclass
class Sample:
    row: int | str
    label: str
    cells: dict[str, Any]  # column -> raw cell ("" = empty); a Path for a folder sample's files
    split: str = ""
    problems: list[BadRow] = field(default_factory=list)
    group: str | None = None  # the group column's value ("" = empty); None without a group column


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
            raise OmnifuseError(
                f"Unknown tabular column {unknown[0]!r}.{did_you_mean(unknown[0], names)} "
                f"Columns: {', '.join(sorted(names))}"
            )
        j = 0
        for col in spec["columns"]:
            value = row.get(col["name"])
            text = "" if value is None else str(value).strip()
            if isinstance(value, float) and math.isnan(value):
                text = ""
            if col["kind"] == "number":
                if text:
                    number = schema.number(text)
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


class Decoder:
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
            number = schema.number(value.strip())
            if number is None:
                raise OmnifuseError(f"expected a number. Received: {value.strip()!r}")
            return number
        return value.strip()  # category


def decode_sample(sample: Sample, columns: dict[str, str], label: str, decode: Decoder) -> dict[str, Any]:
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


def arrays(columns, modality_of, decoded, train: np.ndarray, decode: Decoder):
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
