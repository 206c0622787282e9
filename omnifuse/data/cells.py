"""A table's cells as arrays: each cell decoded by its column's kind, the tabular features, and the rows that fail.

Shared by the CSV and folder loaders of :mod:`omnifuse.data.table` (see there for what the kinds mean) and by the
Predictor, which encodes a request's numbers and categories with :func:`encode_tabular` (the numbers kind's, in
:mod:`omnifuse.modalities.numbers`) as training did. Each cell is read by its column's modality kind (``read_cell``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data.schema import TABULAR
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import of_column
from omnifuse.modalities.numbers import encode_tabular, tabular_spec

__all__ = ["BadRow", "Decoder", "Sample", "arrays", "decode_sample", "encode_tabular"]


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


class Decoder:
    """What a kind's ``read_cell`` reads a table's cells with: the table's folder (:meth:`file` checks a path),
    the image size (the first image fixes it when none is given), the audio rate and length."""

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
            value = of_column(kind).read_cell(cell, decode, kind)
        except OmnifuseError as exc:
            sample.problems.append(BadRow(sample.row, column, str(exc)))
            continue
        if value is not None:  # None: an empty text
            values[column] = value
    if not values and not sample.problems:
        sample.problems.append(BadRow(sample.row, "(all)", "every input column is empty"))
    return values


def arrays(columns, modality_of, decoded, train: np.ndarray, decode: Decoder):
    """``inputs`` and ``masks`` per modality (zeros / "" / NaN where absent), and the meta describing them."""
    inputs, masks, meta = {}, {}, {"columns": dict(columns), "modality_columns": {}}
    n = len(decoded)
    for column, modality in modality_of.items():
        array = of_column(columns[column]).column_array(n, decode)
        for i, values in enumerate(decoded):
            if column in values:
                array[i] = values[column]
        inputs[modality] = array
        masks[modality] = np.array([column in v for v in decoded], dtype=np.float32)
        meta["modality_columns"][modality] = column
    tabular = [c for c, k in columns.items() if of_column(k).CELL == "columns"]
    if tabular:
        spec = tabular_spec({c: columns[c] for c in tabular}, decoded, train)
        rows = [{c: v[c] for c in tabular if c in v} for v in decoded]
        inputs[TABULAR], masks[TABULAR] = encode_tabular(spec, rows)
        meta["numbers"] = {TABULAR: spec}
        meta["modality_columns"][TABULAR] = tabular
    return inputs, masks, meta
