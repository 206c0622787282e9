"""Accuracy as omnifuse counts it, in one place: over the samples that carry a label (label -1 = no label for
this task), the predicted class being the most probable one (or, for a single sigmoid column, probability > 0.5).
The evaluation, the bench's per-epoch test pass and the member accuracies of an ensemble all use it."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from omnifuse.names import member_index, member_outputs


def predicted_class(probs: np.ndarray) -> np.ndarray:
    """The predicted class of each row of ``probs`` (N, classes); a single column is a binary sigmoid."""
    probs = np.asarray(probs)
    if probs.ndim == 2 and probs.shape[-1] == 1:
        return (probs[:, 0] > 0.5).astype(np.int64)
    return probs.argmax(axis=-1)


def accuracy(probs: np.ndarray, labels: np.ndarray, rows: np.ndarray | None = None) -> float | None:
    """The share of labelled samples (label >= 0, and ``rows`` where given) whose predicted class is their label;
    None when no sample counts.

    Example: ``accuracy(np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]]), np.array([0, 0, -1])) == 0.5``.
    """
    labels = np.asarray(labels).reshape(-1)
    keep = labels >= 0
    if rows is not None:
        keep &= np.asarray(rows, bool)
    if not keep.any():
        return None
    return float(np.mean(predicted_class(np.asarray(probs)[keep]) == labels[keep]))


def task_accuracy(
    out: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray], rows: np.ndarray | None = None
) -> dict[str, float | None]:
    """Per task of ``labels``: :func:`accuracy` of the model output of that name."""
    return {task: accuracy(out[task], y, rows) for task, y in labels.items()}


def member_accuracy(
    out: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]
) -> dict[str, list[float]]:
    """An ensemble's (``model.members`` > 1) accuracy of each member alone, per task in ``labels``, in member
    order (NaN where no sample is labelled). Empty for a single model."""
    found: dict[str, list[float]] = {}
    members = member_outputs(list(out), labels)
    for name in sorted(members, key=member_index):
        task = members[name]
        value = accuracy(out[name], labels[task])
        found.setdefault(task, []).append(float("nan") if value is None else value)
    return found
