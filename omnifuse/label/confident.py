"""Confident learning on out-of-fold probabilities (Northcutt et al., 2021): the confident joint of given and
likely true labels, and the rows it flags as likely label errors (:func:`find_issues`), by pruning by noise rate
(the default) or the joint's off-diagonal. :mod:`omnifuse.label.audit` computes the probabilities and writes the
report."""

from __future__ import annotations

import numpy as np

from omnifuse.errors import OmnifuseError

METHODS = ("off_diagonal", "prune_by_noise_rate")  # how find_issues picks the flagged rows
AGREE_TOLERANCE = 1e-6  # p(given) this close to the largest probability counts as the model agreeing


def confident_joint(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-class thresholds (C,), the confident joint (C, C) (rows: given label, columns: confident class) and
    each row's confident class (-1 where no class reaches its threshold)."""
    n, c = probs.shape
    thresholds = np.array([probs[labels == j, j].mean() if (labels == j).any() else np.inf for j in range(c)])
    above = probs >= thresholds[None, :] - 1e-12
    masked = np.where(above, probs, -np.inf)
    confident = np.where(above.any(1), masked.argmax(1), -1)
    joint = np.zeros((c, c), np.int64)
    for given, conf in zip(labels, confident):
        if conf >= 0:
            joint[given, conf] += 1
    return thresholds, joint, confident


def find_issues(
    probs: np.ndarray, labels: np.ndarray, method: str = "prune_by_noise_rate"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The flagged rows, surest first, their suggested classes and scores (p(suggested) - p(given)).

    ``method``: ``"prune_by_noise_rate"`` (the paper's PBNR, the default): the joint calibrated to the label counts,
    in whole rows that keep each given label's count, estimates how many rows of each (given i, true j) there are,
    and that many rows labelled i with the largest p(j) - p(i) are flagged, never one whose given label is the
    model's guess; this also reaches rows where no class passes its threshold (on CIFAR-10 with 10% of the labels
    flipped: the same rows as ``cleanlab.filter.find_label_issues``, benchmarks/RESULTS.md).
    ``"off_diagonal"``: the rows off the confident joint's diagonal (scores in (0, 1]): fewer flags, surer ones,
    fewer of the wrong labels found."""
    if method == "prune_by_noise_rate":
        return _prune_by_noise_rate(probs, labels)
    if method != "off_diagonal":
        raise OmnifuseError(f"Expected method {' or '.join(map(repr, METHODS))}. Received: {method!r}")
    _, _, confident = confident_joint(probs, labels)
    flagged = np.flatnonzero((confident >= 0) & (confident != labels))
    scores = probs[flagged, confident[flagged]] - probs[flagged, labels[flagged]]
    order = np.argsort(-scores, kind="stable")
    return flagged[order], confident[flagged][order], scores[order]


def _whole_rows(matrix: np.ndarray) -> np.ndarray:
    """``matrix`` rounded to integers whose rows keep their (rounded) sums: each row's floors, plus one for the
    cells with the largest remainders until the row's sum is reached (the largest-remainder method)."""
    floors = np.floor(matrix)
    out = floors.astype(np.int64)
    for r, (row, base) in enumerate(zip(matrix, floors)):
        short = int(round(row.sum() - base.sum()))
        if short > 0:
            out[r, np.argsort(-(row - base), kind="stable")[:short]] += 1
    return out


def _prune_by_noise_rate(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    _, joint, _ = confident_joint(probs, labels)
    counts = np.bincount(labels, minlength=probs.shape[1]).astype(np.float64)
    calibrated = joint / np.maximum(joint.sum(1, keepdims=True), 1) * counts[:, None]
    # rows of each (given i, true j) pair: the calibrated joint in whole rows, each given label's total its count
    estimated = _whole_rows(calibrated / max(calibrated.sum(), 1e-12) * len(labels))
    margin = np.full(len(labels), -np.inf)  # the largest p(j) - p(given) a row was flagged with
    suggested = np.full(len(labels), -1)
    for i, j in zip(*np.nonzero(~np.eye(len(estimated), dtype=bool))):
        k = int(estimated[i, j])
        rows = np.flatnonzero(labels == i)
        if k <= 0 or not len(rows):
            continue
        gap = probs[rows, j] - probs[rows, i]
        top = rows[np.argsort(-gap, kind="stable")[: min(k, len(rows) - 1)]]  # never a whole class
        better = probs[top, j] - probs[top, i] > margin[top]
        margin[top[better]] = (probs[top, j] - probs[top, i])[better]
        suggested[top[better]] = j
    # a row whose given label the model predicts (ties go to the given label) is not flagged, however many rows of
    # its class the joint asks for: where a class holds fewer rows that look like another class than the joint
    # estimates, the rest would be rows the model agrees with
    given = probs[np.arange(len(labels)), labels]
    suggested[given >= probs.max(1) - AGREE_TOLERANCE] = -1
    flagged = np.flatnonzero(suggested >= 0)
    order = np.argsort(-margin[flagged], kind="stable")
    return flagged[order], suggested[flagged][order], margin[flagged][order]
