"""Unlabelled samples for a trained run: a CSV or a folder (the ``--data`` formats, labels not needed), read into
the inputs the run's model takes.

A **CSV**'s columns are matched to the run's modalities by name, as training named them (an image, text or audio
column is the modality of the same name; the ``tabular`` modality's number and category columns by their own
names); other columns (an id, a label) are kept but not used. Relative paths are read from the CSV's folder.
A **folder** holds ``<stem>.<ext>`` files, in sub-folders or not; files sharing a stem are one sample, giving the
modalities ``image``, ``text`` and ``audio`` (as ``--data`` folders do).

A row's ``cells`` are its original values, so a ranked list (``omnifuse label next``) and the labels CSV written
from it (the labelling page) are valid ``--data`` inputs once a label column is added.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data.decode import read_text
from omnifuse.data.schema import TABULAR, safe_name
from omnifuse.data.schema import read_csv as _read_csv
from omnifuse.errors import OmnifuseError
from omnifuse.inference import Inference
from omnifuse.modalities import KINDS, held_as

_FOLDER_KINDS = {suffix: name for name, kind in KINDS.items() for suffix in kind.SUFFIXES}
CHUNK = 256  # samples decoded and run through the model at once


@dataclass
class Pool:
    """Samples without labels: their original cells (``columns`` in order) and where each came from."""

    source: Path
    columns: list[str]
    cells: list[dict[str, str]]
    rows: list[int | str]  # line in the CSV (header = 1) or the sample's stem in a folder
    files: dict[str, str]  # column -> "image" | "audio" for the columns holding file paths
    base: Path  # relative paths in the cells are read from here

    def __len__(self) -> int:
        return len(self.cells)


def read_pool(path: str | Path) -> Pool:
    """The samples of a pool CSV or folder, unchecked against any model (see :func:`model_inputs`)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _read_folder(path)
    if not path.is_file():
        raise OmnifuseError(
            f"Expected --pool to be a CSV file or a folder. Received: '{path}', which does not exist"
        )
    header, lines = _read_csv(path)
    cells = [{c: (row[i] if i < len(row) else "") for i, c in enumerate(header)} for _, row in lines]
    files = {}
    file_kinds = [k for k in KINDS if held_as(k) == "path"]
    for column in header:
        filled = [c[column].strip().lower() for c in cells if c[column].strip()]
        for kind in file_kinds:
            if filled and all(v.endswith(KINDS[kind].SUFFIXES) for v in filled):
                files[column] = kind
    return Pool(path, header, cells, [line for line, _ in lines], files, path.parent)


def _read_folder(root: Path) -> Pool:
    stems: dict[str, dict[str, Path]] = {}
    for file in sorted(root.rglob("*")):
        kind = _FOLDER_KINDS.get(file.suffix.lower())
        if kind and file.is_file() and not file.name.startswith("."):
            key = file.relative_to(root).with_suffix("").as_posix()
            stems.setdefault(key, {}).setdefault(kind, file)
    if not stems:
        raise OmnifuseError(f"Expected image, .txt or .wav files in the pool folder '{root}'. Received: none")
    columns = [k for k in KINDS if any(k in f for f in stems.values())]
    cells = []
    for files in stems.values():
        row = {}
        for kind in columns:
            file = files.get(kind)
            if file is None:
                row[kind] = ""
            elif held_as(kind) == "text":
                row[kind] = read_text(file)  # the text itself: a CSV holds texts, not paths to them
            else:
                row[kind] = file.relative_to(root).as_posix()
        cells.append(row)
    files = {k: k for k in columns if held_as(k) == "path"}
    return Pool(root, columns, cells, list(stems), files, root)


def column_of(pool: Pool, modalities: dict[str, str], numbers: dict[str, Any]) -> dict[str, Any]:
    """Which pool column feeds each of the run's modalities: modality -> column (or the tabular columns' list).

    A modality without a column is absent for every sample; a pool that feeds none of them is an error."""
    by_name = {safe_name(c): c for c in pool.columns}
    out: dict[str, Any] = {}
    for modality, kind in modalities.items():
        if held_as(kind) == "columns":
            wanted = [c["name"] for c in (numbers.get(modality) or {}).get("columns", [])]
            found = [c for c in wanted if c in pool.columns]
            if found:
                out[modality] = found
        elif modality in by_name:
            out[modality] = by_name[modality]
    if not out:
        expected = [
            m
            if held_as(k) != "columns"
            else f"{m} ({', '.join(c['name'] for c in numbers.get(m, {}).get('columns', []))})"
            for m, k in modalities.items()
        ]
        raise OmnifuseError(
            f"Expected pool columns named after the run's modalities: {', '.join(expected)}. "
            f"Received: '{pool.source}' with columns {', '.join(pool.columns)}"
        )
    return out


def _values(pool: Pool, index: range, modalities: dict[str, str], columns: dict[str, Any]) -> dict[str, list]:
    """The Predictor's keyword inputs for the samples at ``index`` (None where a cell is empty)."""
    inputs: dict[str, list] = {}
    for modality, column in columns.items():
        kind = modalities[modality]
        values: list[Any] = []
        for i in index:
            if held_as(kind) == "columns":
                row = {c: pool.cells[i][c] for c in column if pool.cells[i][c].strip()}
                values.append(row or None)
                continue
            value = pool.cells[i][column]
            if not value.strip():
                values.append(None)
            elif held_as(kind) == "path":
                file = pool.base / value.strip()
                if not file.is_file():
                    raise OmnifuseError(
                        f"{_where(pool, i)}, column {column!r}: file not found: '{value.strip()}'"
                    )
                values.append(file)
            else:
                values.append(value)
        inputs[modality] = values
    return inputs


def _where(pool: Pool, i: int) -> str:
    row = pool.rows[i]
    return f"'{pool.source}', line {row}" if isinstance(row, int) else f"'{pool.source}', sample '{row}'"


def predict_pool(predictor, pool: Pool, extra_outputs=None) -> dict[str, np.ndarray]:
    """Every model output for every pool sample (output name -> (N, ...)), plus ``<modality>_mask``s.

    ``extra_outputs``: a Keras model on the same inputs whose outputs are added under their names (the fused
    embedding). A sample the model cannot read is an error naming its line (or stem) and column."""
    columns = column_of(pool, predictor.modalities, predictor.numbers)
    parts: list[dict[str, np.ndarray]] = []
    extra_run = None if extra_outputs is None else Inference(extra_outputs)
    for start in range(0, len(pool), CHUNK):
        index = range(start, min(start + CHUNK, len(pool)))
        feed = _encode(predictor, pool, index, columns)
        out = predictor._run(feed)
        if extra_run is not None:
            extra = extra_run(feed)
            out.update({k: np.asarray(v, np.float32) for k, v in extra.items()})
        out.update({k: v for k, v in feed.items() if k.endswith("_mask")})
        parts.append(out)
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _encode(predictor, pool: Pool, index: range, columns: dict[str, Any]) -> dict[str, np.ndarray]:
    try:
        return predictor.encode(batch=True, **_values(pool, index, predictor.modalities, columns))
    except OmnifuseError:
        if len(index) == 1:
            raise
    for i in index:  # find the sample at fault, to name it
        try:
            predictor.encode(batch=True, **_values(pool, range(i, i + 1), predictor.modalities, columns))
        except OmnifuseError as exc:
            used = ", ".join(c if isinstance(c, str) else TABULAR for c in columns.values())
            raise OmnifuseError(f"{_where(pool, i)} (columns {used}): {exc}") from exc
    raise AssertionError("unreachable: the chunk failed but none of its samples did")


def rebase(pool: Pool, cells: dict[str, str], folder: Path) -> dict[str, str]:
    """``cells`` with their file paths made relative to ``folder`` (absolute where the file is outside it), so a CSV
    written there reads the same files."""
    out = dict(cells)
    folder = Path(folder).resolve()
    for column in pool.files:
        value = out.get(column, "").strip()
        if value:
            file = (pool.base / value).resolve()
            out[column] = (
                Path(os.path.relpath(file, folder)).as_posix() if file.is_relative_to(folder) else str(file)
            )
    return out
