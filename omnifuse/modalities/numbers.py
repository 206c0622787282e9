"""Numbers: float32 (B, F) features, NaN = an empty cell; corruption is Gaussian noise scaled by each column's
spread over the samples given (empty cells left out of it, and left empty)."""

from __future__ import annotations

import math

from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.modalities.image import _digest, _noisy

DTYPE = "float32"
CORRUPTION = "Gaussian noise, std / column std"
MAX_LEVEL = 2.0
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)
VOCABULARY = False  # no vocabulary learnt from the training data
CELL = "columns"  # a CSV holds a numbers modality as its own number and category columns
SUFFIXES = ()  # never a file
COLUMN_KINDS = ("number", "category")  # a table's columns of these kinds make up its one numbers modality
CATEGORY_MAX_VALUES = (
    50  # a category column: "few distinct short strings": at most this many distinct values ...
)
CATEGORY_MAX_LENGTH = 40  # ... none longer than this, and at most half as many values as filled cells
REQUEST = "json"  # a request sends a JSON list of the features or an object column -> value
EXPLAIN = "integrated_gradients"  # how omnifuse/evaluation/explain.py scores a sample
CONTENT_TYPES = ()  # never a file upload


def sample_shape(*, width: int = 0, **_) -> tuple[int, ...]:
    return (int(width),)


def blank(batch, shape):
    import tensorflow as tf

    return tf.zeros([batch, *shape], tf.float32)


def column_std(x):
    """The standard deviation of each column of ``x`` (B, F) over its non-empty cells (0 for an empty column).

    Per column, not per row: a row's features have different units, and one empty cell would make a row's own
    spread NaN (and the whole row NaN after adding noise)."""
    import tensorflow as tf

    present = tf.math.is_finite(x)
    count = tf.maximum(tf.reduce_sum(tf.cast(present, tf.float32), axis=0, keepdims=True), 1.0)
    mean = tf.reduce_sum(tf.where(present, x, 0.0), axis=0, keepdims=True) / count
    variance = tf.reduce_sum(tf.where(present, tf.square(x - mean), 0.0), axis=0, keepdims=True) / count
    return tf.sqrt(variance)


def corrupt(value, level, seed):
    """``value`` (B, F) with Gaussian noise of ``level`` (B,) times each column's :func:`column_std`."""
    import tensorflow as tf

    x = tf.cast(value, tf.float32)
    return tf.cast(_noisy(x, column_std(x), level, seed), value.dtype)


def describe(*, spec=None, **_) -> dict:
    spec = spec or {}
    return {
        "features": list(spec.get("features", [])),
        "columns": [c.get("name") for c in spec.get("columns", [])],
        # per column its kind and, for a category, the values seen in training (the page's fields)
        "schema": [
            {k: c[k] for k in ("name", "kind", "vocabulary") if k in c} for c in spec.get("columns", [])
        ],
        "expects": "a dict of column -> value, or an array of the features",
    }


def example(n: int, rng, *, spec=None, **_):
    import numpy as np

    return rng.standard_normal((n, len((spec or {}).get("features", [])))).astype(np.float32)


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    import json

    return "form", json.dumps([0.0] * len(info.get("features", [])))


def feed(info: dict) -> str:
    # an exported artifact takes the encoded features as one ordered array, never a dict of columns
    features = info.get("features") or []
    return f"float32 array of the {len(features)} encoded features, in this order: " + ", ".join(
        f"`{f}`" for f in features
    )


def decode(name: str, values: list, *, spec=None, **_):
    """The model's (B, F) float32 array and (B,) presence mask for ``values``: dicts (column -> value, as in the
    CSV) or 1-D arrays of the F features (``None``: absent; a row of empty cells is absent too)."""
    import numpy as np

    spec = spec or {"features": []}
    width = len(spec["features"])
    out = np.zeros((len(values), width), dtype=np.float32)
    mask = np.zeros(len(values), dtype=np.float32)
    for i, v in enumerate(values):
        if v is None:
            continue
        if isinstance(v, dict):
            if "columns" not in spec:
                raise OmnifuseError(f"Expected an array of {width} numbers for {name!r}. Received: a dict")
            row, present = encode_tabular(spec, [v])
        else:
            try:
                row = np.asarray(v, dtype=np.float32).reshape(1, -1) if np.ndim(v) == 1 else None
            except (TypeError, ValueError):
                row = None
            if row is None or row.shape[1] != width:
                raise OmnifuseError(
                    f"Expected a dict of columns or a 1-D array of {width} numbers for {name!r} "
                    f"(features: {', '.join(spec['features'])}). Received: {v!r}"
                )
            present = np.array([0.0 if np.isnan(row).all() else 1.0])
        out[i], mask[i] = row[0], present[0]
    return out, mask


def warm_up(*, spec=None, **_):
    """One sample a server predicts on before its first request (zeros)."""
    import numpy as np

    return np.zeros(len((spec or {}).get("features", [])), np.float32)


def bad_requests(name: str, info: dict, rng) -> dict[str, tuple[str, object]]:
    """Values a server must refuse with a 4xx (none of its own yet)."""
    return {}


def summarise(attribution, *, features=None, **_) -> dict:
    """One row's explanation from its attribution (F,): a score per feature column (``features``: their names)."""
    names = features or [f"feature_{j}" for j in range(len(attribution))]
    return {
        "method": "integrated_gradients",
        "columns": {name: float(v) for name, v in zip(names, attribution)},
    }


def show(value, why: dict, path=None, *, top: int = 8, **_) -> dict:
    """One row as the report shows it: the ``top`` columns of largest attribution, each [name, value, score]."""
    import numpy as np

    cols = sorted(why["columns"].items(), key=lambda kv: -abs(kv[1]))[:top]
    names = list(why["columns"])
    values = np.asarray(value, np.float64).reshape(-1)
    return {"columns": [[n, float(values[names.index(n)]), float(s)] for n, s in cols]}


def duplicate_keys(values, threshold: float) -> list[tuple]:
    """Each row's (exact, near) duplicate keys: a hash of its features, and the features rounded to 4
    significant digits (an empty cell: None)."""
    import numpy as np

    rows = [np.asarray(v, np.float64) for v in values]
    return [
        (_digest(row.tobytes()), tuple(float(f"{x:.4g}") if np.isfinite(x) else None for x in row))
        for row in rows
    ]


def glimpse(value, name: str, folder, stem: str, **_) -> None:
    """A row of features is not shown in a Markdown table cell."""
    return None


def as_input(array):
    """A data set's rows (N, F) are the model's input as they are."""
    return array


def number(text: str) -> float | None:
    """``text`` as a finite float, else None."""
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_cell(cell: str, files, column_kind: str):
    """A table's non-empty ``cell`` of a ``number`` column as a float, of a ``category`` column as its text."""
    if column_kind == "number":
        value = number(cell.strip())
        if value is None:
            raise OmnifuseError(f"expected a number. Received: {cell.strip()!r}")
        return value
    return cell.strip()


def check_cell(cell, column_kind: str) -> None:
    """A served table's non-empty ``cell`` (a CSV's text, or a DataFrame's value) of a ``number`` column must
    read as a number (a category's may be any value: one not seen in training is all zeros)."""
    if column_kind == "number" and number(str(cell).strip()) is None:
        raise OmnifuseError(f"expected a number. Received: {cell!r}")


def id_reason(filled: list[str], column_kind: str) -> str | None:
    """Why a column of ``filled`` cells inferred as ``number`` reads as an id (a row number), else None."""
    if column_kind != "number":
        return None
    numbers = [number(v) for v in filled]
    if all(n is not None and n == int(n) for n in numbers) and all(
        a < b for a, b in zip(numbers, numbers[1:])
    ):
        return "its integers increase row by row"
    return None


def warn_column(path, column: str, values: list[str], log) -> bool:
    """Nothing to warn about in a column of numbers or categories."""
    return False


def tabular_spec(columns: dict[str, str], decoded, train) -> dict:
    """The numbers modality of a table's ``columns`` (column -> ``number`` or ``category``), as
    :func:`encode_tabular` reads it: its columns and features; category vocabularies come from the ``train``
    rows of ``decoded`` (column -> value per row) only."""
    spec_columns, features = [], []
    for column, column_kind in columns.items():
        if column_kind == "number":
            spec_columns.append({"name": column, "kind": "number"})
            features.append(column)
        else:
            vocab = sorted({v[column] for v, t in zip(decoded, train) if t and column in v})
            spec_columns.append({"name": column, "kind": "category", "vocabulary": vocab})
            features += [f"{column}={value}" for value in vocab]
    return {"columns": spec_columns, "features": features}


def encode_tabular(spec: dict, rows: list[dict]):
    """Rows (column → value; missing key, ``None`` or ``""`` = empty cell) as float32 (N, F) + presence (N,).

    ``spec`` is ``Dataset.meta["numbers"]["tabular"]`` (also in a run's meta.json): its ``columns`` in order,
    each a number or a category with its ``vocabulary``. The loader and the Predictor both use it, so they agree.
    """
    import numpy as np

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
                    parsed = number(text)
                    if parsed is None:
                        raise OmnifuseError(
                            f"Expected a number for column {col['name']!r}. Received: {value!r}"
                        )
                    out[i, j], mask[i] = parsed, 1.0
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
