"""Numbers: float32 (B, F) features, NaN = an empty cell; corruption is Gaussian noise scaled by each column's
spread over the samples given (empty cells left out of it, and left empty)."""

from __future__ import annotations

from omnifuse.modalities.image import _digest, _noisy

DTYPE = "float32"
CORRUPTION = "Gaussian noise, std / column std"
MAX_LEVEL = 2.0
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)
VOCABULARY = False  # no vocabulary learnt from the training data
CELL = "columns"  # a CSV holds a numbers modality as its own number and category columns
SUFFIXES = ()  # never a file
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

    from omnifuse.data.cells import encode_tabular
    from omnifuse.errors import OmnifuseError

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
