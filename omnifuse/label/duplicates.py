"""Exact and near-duplicate samples of a data set, within a split and across train / validation / test.

Each modality gives a sample two keys: an exact one (a hash of its decoded content) and a near one (images: the
group of :func:`omnifuse.data.duplicates.near_duplicate_groups`, thumbnails that correlate; texts: the words,
lower-cased, without punctuation or extra spaces; numbers: rounded to 4 significant digits; audio: the
waveform at 1/8 of its rate, rounded to 2 decimals). Two samples are duplicates when every key matches, an absent
modality matching only an absent one. A group is ``exact`` when the exact keys match too. A group spanning
splits leaks (a test sample's twin is in training); one with several labels is a labelling conflict.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from omnifuse.modalities import kind as modality_kind


def _keys(kind: str, values: np.ndarray, present: np.ndarray, threshold: float) -> tuple[list, list]:
    """Each sample's exact and near key for one modality (its kind's ``duplicate_keys``; None where absent)."""
    exact: list[Any] = [None] * len(values)
    near: list[Any] = [None] * len(values)
    idx = np.flatnonzero(present > 0)
    if len(idx):
        for i, (e, v) in zip(idx, modality_kind(kind).duplicate_keys(values[idx], threshold)):
            exact[i], near[i] = e, v
    return exact, near


def duplicate_groups(
    inputs: dict[str, np.ndarray],
    masks: dict[str, np.ndarray],
    modalities: dict[str, str],
    ids: np.ndarray,
    labels: np.ndarray,
    splits: np.ndarray,
    threshold: float = 0.95,
) -> list[dict[str, Any]]:
    """The groups of two or more duplicate samples: each a dict with ``ids``, ``labels``, ``splits`` (sorted,
    distinct), ``exact`` (bool), ``leak`` (spans splits) and ``conflict`` (several labels); leaks first."""
    n = len(ids)
    exact_keys: list[tuple] = [() for _ in range(n)]
    near_keys: list[tuple] = [() for _ in range(n)]
    for name, kind in sorted(modalities.items()):
        present = masks.get(name, np.ones(n, np.float32))
        exact, near = _keys(kind, inputs[name], present, threshold)
        exact_keys = [k + (e,) for k, e in zip(exact_keys, exact)]
        near_keys = [k + (v,) for k, v in zip(near_keys, near)]
    members: dict[tuple, list[int]] = {}
    for i, key in enumerate(near_keys):
        members.setdefault(key, []).append(i)
    out = []
    for rows in members.values():
        if len(rows) < 2:
            continue
        out.append(
            {
                "ids": [ids[i].item() if hasattr(ids[i], "item") else ids[i] for i in rows],
                "labels": sorted({str(labels[i]) for i in rows}),
                "splits": sorted({str(splits[i]) for i in rows}),
                "exact": len({exact_keys[i] for i in rows}) == 1,
            }
        )
    for group in out:
        group["leak"] = len(group["splits"]) > 1
        group["conflict"] = len(group["labels"]) > 1
    return sorted(out, key=lambda g: (not g["leak"], not g["conflict"], str(g["ids"][0])))
