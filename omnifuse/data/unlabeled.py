"""Unlabelled samples beside a data set's labelled ones (``data.unlabeled``, ``data.labels_per_class``,
``data.labeled_where``), as its split ``unlabeled``: a :class:`Split` with inputs and no labels.

Where they come from: the data set's own unlabelled split (a loader that has one makes it when asked,
``data.unlabeled = "unsup"``: IMDb's ``train/unsup``); the training samples whose labels a scarce-label setting
leaves out (``labels_per_class``, ``labeled_where``; their true labels kept in ``extra["true_<task>"]`` for reports
only); or the user's CSV / folder of texts. Whatever the source, a sample identical to a test sample is dropped
(byte for byte; for text, also after lower-casing and collapsing whitespace), so a test score never rests on having
trained on a test input, and the count dropped is recorded in ``Dataset.meta["unlabeled"]``.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path

import numpy as np

from omnifuse.data import Dataset, Split
from omnifuse.data.decode import read_text
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import held_as

log = logging.getLogger(__name__)

OWN = "unsup"  # data.unlabeled: the data set's own unlabelled samples
SPLIT = "unlabeled"  # the split they are in
_SPACES = re.compile(r"\s+")


def apply(
    ds: Dataset, unlabeled: str = "", labels_per_class: int = 0, labeled_where: str = "", seed: int = 0
):
    """``ds`` with the labels kept as the scarce-label settings say and its ``unlabeled`` split as
    ``unlabeled`` says ("" none, "unsup" its own, else a CSV or folder path), deduplicated against its test split.
    """
    splits = dict(ds.splits)
    ds = Dataset(
        ds.name, splits, ds.tasks, ds.modalities, ds.source, dict(ds.meta)
    )  # the caller's stays as it is
    own = splits.pop(SPLIT, None)
    held = None
    if (labels_per_class or labeled_where) and "train" in splits:
        keep = _kept(splits["train"], labels_per_class, labeled_where, seed, ds.name)
        train = splits["train"]
        splits["train"] = train.take(np.flatnonzero(keep))
        held = _unlabel(train.take(np.flatnonzero(~keep)))
        ds.meta["labels_kept"] = int(keep.sum())
    if not unlabeled:
        return _with(ds, splits)
    if unlabeled == OWN:
        found = [s for s in (own, held) if s is not None and len(s)]
        if not found:
            raise OmnifuseError(
                f"data.unlabeled = 'unsup', but data set {ds.name!r} has no unlabelled split of its own. "
                "Expected data.labels_per_class or data.labeled_where (which unlabel part of train), or a CSV "
                "file or folder of unlabelled samples"
            )
        pool = found[0] if len(found) == 1 else concat(found)
    else:
        pool = read_path(unlabeled, ds)
    test = splits.get("test") or splits.get("all")
    kept, dropped = drop_test_copies(pool, test, ds.modalities)
    splits[SPLIT] = kept
    ds.meta["unlabeled"] = {"source": unlabeled, "read": len(pool), "dropped_test_copies": dropped}
    log.info("%s: %d unlabelled samples, %d dropped as copies of test samples", ds.name, len(kept), dropped)
    return _with(ds, splits)


def _with(ds: Dataset, splits: dict[str, Split]) -> Dataset:
    return Dataset(ds.name, splits, ds.tasks, ds.modalities, ds.source, ds.meta)


def _kept(train: Split, per_class: int, where: str, seed: int, name: str) -> np.ndarray:
    """Which training samples keep their labels."""
    keep = np.ones(len(train), bool)
    if where:
        column, _, values = where.partition("=")
        if not values or column not in train.extra:
            raise OmnifuseError(
                f"Expected data.labeled_where as '<column>=<value>[,<value>]' with a column of {name!r}'s samples "
                f"({', '.join(sorted(train.extra)) or 'none'}). Received: {where!r}"
            )
        wanted = [v.strip() for v in values.split(",")]
        found = np.asarray(train.extra[column]).astype(str)
        keep &= np.isin(found, wanted)
        if not keep.any():
            raise OmnifuseError(
                f"data.labeled_where = {where!r} keeps no training sample of {name!r}. "
                f"Values of {column!r}: {', '.join(sorted(set(found.tolist()))[:20])}"
            )
    if per_class:
        if per_class < 0 or not train.labels:
            raise OmnifuseError(
                f"Expected data.labels_per_class >= 0 on a labelled set. Received: {per_class}"
            )
        labels = next(iter(train.labels.values()))
        rng = np.random.default_rng(seed)
        chosen = np.zeros(len(train), bool)
        for c in np.unique(labels[labels >= 0]):
            rows = np.flatnonzero((labels == c) & keep)
            chosen[rng.permutation(rows)[:per_class]] = True
        keep = chosen
    return keep


def _unlabel(split: Split) -> Split:
    """``split`` without labels; the true labels stay in ``extra["true_<task>"]`` (to score pseudo-labels)."""
    extra = dict(split.extra)
    extra.update({f"true_{task}": labels for task, labels in split.labels.items()})
    return Split(inputs=split.inputs, labels={}, ids=split.ids, extra=extra, masks=split.masks)


def concat(splits: list[Split]) -> Split:
    """The samples of ``splits`` one after the other (inputs and extras they all have)."""
    keys = set.intersection(*(set(s.extra) for s in splits))
    ids = None if any(s.ids is None for s in splits) else np.concatenate([s.ids for s in splits])
    return Split(
        inputs={k: np.concatenate([s.inputs[k] for s in splits]) for k in splits[0].inputs},
        labels={},
        ids=ids,
        extra={k: np.concatenate([s.extra[k] for s in splits]) for k in keys},
    )


def normalise(text: str) -> str:
    """``text`` lower-cased, with runs of whitespace as one space and none at the ends."""
    return _SPACES.sub(" ", str(text)).strip().lower()


def _keys(split: Split, modalities: dict[str, str]) -> list[set[bytes]]:
    """Per sample, the keys under which it counts as a copy: each modality's bytes, and a text's normal form."""
    out: list[set[bytes]] = [set() for _ in range(len(split))]
    for name, values in split.inputs.items():
        is_text = values.dtype == object or values.dtype.kind in "US"
        for i, value in enumerate(values):
            if is_text:
                text = str(value)
                out[i] |= {b"t" + text.encode("utf-8"), b"n" + normalise(text).encode("utf-8")}
            else:
                out[i].add(
                    b"a" + name.encode() + hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest()
                )
    return out


def drop_test_copies(pool: Split, test: Split | None, modalities: dict[str, str]) -> tuple[Split, int]:
    """``pool`` without the samples identical to a ``test`` sample in any modality, and how many were dropped."""
    if test is None or not len(pool):
        return pool, 0
    seen = set().union(*_keys(test, modalities)) if len(test) else set()
    keep = np.array([not (keys & seen) for keys in _keys(pool, modalities)], bool)
    return pool.take(np.flatnonzero(keep)), int((~keep).sum())


def read_path(path: str, ds: Dataset) -> Split:
    """The user's unlabelled texts: a CSV with a column named after each text modality, or a folder of .txt files
    (every ``*.txt`` under it, one sample each) for a data set with one text modality."""
    file = Path(path).expanduser()
    texts = [m for m, kind in ds.modalities.items() if held_as(kind) == "text"]
    if not texts or len(ds.modalities) != len(texts):
        raise OmnifuseError(
            f"Expected data.unlabeled = 'unsup' for {ds.name!r} (modalities: {', '.join(ds.modalities)}): "
            f"unlabelled files are read for text-only data sets. Received: {path!r}"
        )
    if file.is_dir():
        if len(texts) != 1:
            raise OmnifuseError(
                f"Expected a CSV for {ds.name!r}'s text columns {texts}. Received: folder '{file}'"
            )
        files = sorted(p for p in file.rglob("*.txt") if p.is_file() and not p.name.startswith("."))
        if not files:
            raise OmnifuseError(f"Expected .txt files in data.unlabeled's folder '{file}'. Received: none")
        values = {texts[0]: [read_text(p) for p in files]}
        ids = [p.relative_to(file).as_posix() for p in files]
    elif file.is_file():
        from omnifuse.data.table import _read_csv

        header, rows = _read_csv(file)
        missing = [m for m in texts if m not in header]
        if missing:
            raise OmnifuseError(
                f"Expected columns {', '.join(texts)} in data.unlabeled's CSV '{file}'. Received: {', '.join(header)}"
            )
        values = {
            m: [row[header.index(m)] if header.index(m) < len(row) else "" for _, row in rows] for m in texts
        }
        ids = [f"line {line}" for line, _ in rows]
    else:
        raise OmnifuseError(
            f"Expected data.unlabeled to be '', 'unsup', a CSV file or a folder. Received: {path!r} (not found)"
        )
    inputs = {}
    for name, column in values.items():
        inputs[name] = np.empty(len(column), dtype=object)
        inputs[name][:] = column
    return Split(inputs=inputs, labels={}, ids=np.array(ids))
