"""Predictions for a whole table: a CSV file (``omnifuse predict RUN --data new.csv --out predictions.csv``) or a
pandas DataFrame (``omnifuse.load(run).predict(df)``) in, one row of answers per row out.

The table has the columns the model was trained on (the training CSV's, read the same way: image and audio cells
are paths, relative to the CSV's folder; texts; numbers; categories), the label column is optional, and other
columns are ignored. A model trained on a preset reads columns named after its modalities (``image``, ``text``,
...). An empty cell is a missing modality, as in training; a row with every input empty, a missing or undecodable
file, or a number column that holds no number is a bad row: every bad row is reported (its line, column and what
was expected) and the prediction fails, unless ``skip_bad_rows`` leaves them out (and lists them).

Out: the user's id column (``id_column``, else the one the training CSV had: an ignored column with a distinct value
in every row; without one, the CSV's ``line`` or the DataFrame's ``row``), the label column where the table has it, then per task the
predicted class (``<task>_predicted``) and one probability per class (``<task>_p_<class>``), as in the evaluation's
``predictions.csv``, and the modalities each row was answered from.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data.cells import BadRow, Decoder
from omnifuse.data.schema import read_csv, safe_name
from omnifuse.data.table import MAX_LISTED
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import held_as, of_column
from omnifuse.names import mask_name
from omnifuse.rundir import atomic_write_text


@dataclass
class TableAnswers:
    """The answers for a table: ``columns`` in order, one dict per answered row, and the rows left out."""

    columns: list[str]
    rows: list[dict[str, Any]]
    skipped: list[BadRow] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # input columns the table does not have
    index: list[Any] = field(default_factory=list)  # a DataFrame's index labels of the answered rows
    unit: str = "line"  # what a row id is: a CSV's line, a DataFrame's row

    def notes(self) -> list[str]:
        """What the command line says besides the answers: the columns the table lacks, each skipped row."""
        out = (
            [f"note: no column {', '.join(self.missing)} (those inputs are absent in every row)"]
            if self.missing
            else []
        )
        return out + [f"skipped: {describe(bad, self.unit)}" for bad in self.skipped]

    def summary(self) -> str:
        return f"{len(self.rows)} row(s) ({len({b.row for b in self.skipped})} skipped)"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.columns, restval="", lineterminator="\n")
        writer.writeheader()
        writer.writerows(self.rows)
        return buffer.getvalue()

    def write_csv(self, path: str | Path) -> Path:
        atomic_write_text(Path(path), self.to_csv())
        return Path(path)

    def to_frame(self):
        """A pandas DataFrame (pandas is imported here only: an optional dependency)."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=self.columns, index=self.index or None)


def input_columns(predictor) -> dict[str, tuple[str, str]]:
    """Column -> (modality, kind) for every column the model reads: kind ``image``, ``text``, ``audio``, or a
    numbers modality's ``number`` / ``category``."""
    tables = predictor.meta.get("tables") or {}
    named = {m: c for t in tables.values() for m, c in (t.get("modality_columns") or {}).items()}
    out = {}
    for name, kind in predictor.modalities.items():
        if held_as(kind) in ("path", "text"):  # one column holds the modality (numbers: its own columns)
            out[named.get(name, name)] = (name, kind)
            continue
        columns = (predictor.numbers.get(name) or {}).get("columns")
        if not columns:
            raise OmnifuseError(
                f"Expected a model trained on a table to predict from one. Received: a model whose {name!r} input "
                "is an array of features, not columns; use Predictor.predict with arrays"
            )
        out.update({c["name"]: (name, c["kind"]) for c in columns})
    return out


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or not str(value).strip()


def predict_rows(
    predictor,
    header: list[str],
    rows: list[tuple[int | str, dict[str, Any]]],
    base: Path,
    *,
    id_column: str | None = None,
    skip_bad_rows: bool = False,
    allow_outside_paths: bool = False,
    where: str = "the table",
    unit: str = "line",
) -> TableAnswers:
    """Answers for ``rows`` (row id -> column -> cell) of a table with ``header``; file paths resolve against
    ``base``. A row id is a line number (a CSV) or an index label (a DataFrame)."""
    columns = input_columns(predictor)
    present = [c for c in columns if c in header]
    if not present:
        raise OmnifuseError(
            f"Expected the model's input columns in {where}: {', '.join(columns)}. "
            f"Received the columns: {', '.join(map(str, header))}"
        )
    id_column = _id_column(predictor, header, id_column, where)
    label = [c for c in header if safe_name(str(c)) in predictor.tasks]
    decoder = Decoder(base, None, predictor.sample_rate, predictor.num_samples, allow_outside_paths)
    pieces: dict[str, list[np.ndarray]] = {}
    kept, bad = [], []
    for row_id, cells in rows:
        feed, problems = _encode_row(predictor, columns, present, row_id, cells, decoder)
        if problems:
            bad += problems
            continue
        kept.append((row_id, cells))
        for key, value in feed.items():
            pieces.setdefault(key, []).append(value)
    if bad and not skip_bad_rows:
        raise OmnifuseError(_bad_rows_message(bad, where, unit))
    answers = TableAnswers(
        _out_columns(predictor, id_column, label),
        [],
        bad,
        [c for c in columns if c not in present],
        unit=unit,
    )
    if not kept:
        return answers
    feed = {key: np.concatenate(values) for key, values in pieces.items()}
    for (row_id, cells), answer in zip(kept, predictor.predict_feed(feed)):
        row: dict[str, Any] = {id_column or unit: cells.get(id_column, "") if id_column else row_id}
        row.update({c: cells.get(c, "") for c in label})
        for task, found in answer["tasks"].items():
            row[f"{task}_predicted"] = found["class"]
            row.update({f"{task}_p_{c}": round(p, 6) for c, p in found["probabilities"].items()})
        row["modalities_used"] = "+".join(answer["modalities_used"])
        answers.rows.append(row)
        answers.index.append(row_id)
    return answers


def _id_column(predictor, header: list, given: str | None, where: str) -> str | None:
    if given:
        if given not in header:
            raise OmnifuseError(
                f"Expected the id column {given!r} in {where}. Received the columns: {', '.join(map(str, header))}"
            )
        return given
    trained = [t.get("id_column") for t in (predictor.meta.get("tables") or {}).values()]
    return next((c for c in trained if c and c in header), None)


def _out_columns(predictor, first: str, label: list[str]) -> list[str]:
    out = [first, *label]
    for task, classes in predictor.tasks.items():
        out += [f"{task}_predicted", *(f"{task}_p_{c}" for c in classes)]
    return [*out, "modalities_used"]


def _encode_row(
    predictor, columns, present, row_id, cells, decoder
) -> tuple[dict[str, np.ndarray], list[BadRow]]:
    """One row's model inputs (every modality, absent ones blank) and its problems; each cell is decoded on its
    own, so that an error names its column."""
    problems, encoded, numbers = [], {}, {}
    for column in present:
        modality, kind = columns[column]
        cell = cells.get(column)
        if _empty(cell):
            continue
        try:
            if held_as(kind) == "value":  # a numbers modality's number or category column
                of_column(kind).check_cell(cell, kind)
                numbers.setdefault(modality, {})[column] = cell
                continue
            value = str(decoder.file(str(cell))) if held_as(kind) == "path" else str(cell)
            encoded[modality] = predictor.encode_column(modality, [value])
        except OmnifuseError as exc:
            problems.append(BadRow(row_id, column, str(exc)))
    for modality, row in numbers.items():
        encoded[modality] = predictor.encode_column(modality, [row])
    if not problems and not any(mask[0] > 0 for _, mask in encoded.values()):
        problems.append(BadRow(row_id, "(all)", "every input column is empty"))
    if problems:
        return {}, problems
    feed = {}
    for name in predictor.modalities:
        feed[name], feed[mask_name(name)] = encoded.get(name) or predictor.encode_column(name, [None])
    return feed, []


def _bad_rows_message(bad: list[BadRow], where: str, unit: str) -> str:
    rows = len({b.row for b in bad})
    listed = "\n".join(f"  {describe(b, unit)}" for b in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    return (
        f"Found {rows} bad row(s) in {where}:\n{listed}{more}\n"
        "Fix them, or leave them out with --skip-bad-rows (skip_bad_rows=True)."
    )


def describe(bad: BadRow, unit: str = "line") -> str:
    """``line 7, column 'photo': file not found: ...`` (a CSV's line) or ``row 3, column ...`` (a DataFrame's)."""
    return f"{unit} {bad.row}, column '{bad.column}': {bad.reason}"


def predict_csv(
    predictor,
    path: str | Path,
    *,
    id_column: str | None = None,
    skip_bad_rows: bool = False,
    allow_outside_paths: bool = False,
) -> TableAnswers:
    """Answers for every row of the CSV (or TSV) file ``path``, read as the training CSV was."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise OmnifuseError(f"Expected a CSV file. Received: '{path}', which does not exist or is not a file")
    header, lines = read_csv(path)
    rows = [(line, dict(zip(header, (c.strip() for c in cells)))) for line, cells in lines]
    return predict_rows(
        predictor,
        header,
        rows,
        path.parent,
        id_column=id_column,
        skip_bad_rows=skip_bad_rows,
        allow_outside_paths=allow_outside_paths,
        where=f"'{path}'",
    )


def predict_frame(
    predictor, frame, *, id_column: str | None = None, skip_bad_rows: bool = False, base: str | Path = "."
) -> TableAnswers:
    """Answers for every row of the pandas DataFrame ``frame`` (file paths relative to ``base``; NaN = empty)."""
    if not (hasattr(frame, "columns") and hasattr(frame, "to_dict")):
        raise OmnifuseError(f"Expected a pandas DataFrame. Received: {type(frame).__name__}")
    header = [str(c) for c in frame.columns]
    records = frame.rename(columns=str).to_dict(orient="records")
    rows = list(zip(frame.index.tolist(), records))
    return predict_rows(
        predictor,
        header,
        rows,
        Path(base),
        id_column=id_column,
        skip_bad_rows=skip_bad_rows,
        allow_outside_paths=True,  # a DataFrame's paths are the caller's own, as in Predictor.predict
        where="the DataFrame",
        unit="row",
    )
