"""Seeded hold-outs, stratified by label where the classes allow it, keeping groups whole where samples have them.

A group is whatever makes two samples too alike to sit on both sides of a split: IMDb's film of a review, a
patient in a medical CSV (``data.kinds = {patient = "group"}``). ``omnifuse.pipeline`` holds validation out of
training with :func:`holdout`; the CSV loader splits train / val / test with it.
"""

from __future__ import annotations

import logging

import numpy as np

log = logging.getLogger(__name__)

# share of a data set's train split held out for validation where the set has no val split (data.val_fraction and
# the CSV loader's default)
VAL_FRACTION = 0.05


def holdout(
    index: np.ndarray,
    labels: np.ndarray | None,
    fraction: float,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``index`` cut into (kept, held out), about ``fraction`` of it held out.

    Stratified by ``labels`` where every class can be; with ``groups`` (one per entry of ``index``), each group
    falls wholly on one side: a stratified group k-fold's first fold (k = 1 / fraction, rounded), or, with too few
    groups for that, a seeded shuffle of the groups.
    """
    from sklearn.model_selection import GroupShuffleSplit, StratifiedGroupKFold, train_test_split

    index = np.asarray(index)
    if fraction <= 0 or len(index) < 2:
        return index, index[:0]
    if groups is not None and len(np.unique(groups)) < 2:
        log.warning(
            "Every sample is in one group, which cannot be split: holding out samples one by one instead"
        )
    elif groups is not None:
        folds = max(2, round(1 / fraction))
        try:
            if labels is None or len(np.unique(groups)) < folds:
                raise ValueError("too few groups to stratify")
            splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
            kept, held = next(splitter.split(index, labels, groups))
        except ValueError:
            splitter = GroupShuffleSplit(1, test_size=fraction, random_state=seed)
            kept, held = next(splitter.split(index, groups=groups))
        return index[kept], index[held]
    try:
        return tuple(train_test_split(index, test_size=fraction, random_state=seed, stratify=labels))
    except ValueError:  # a class too small to stratify, or too few samples for one per class
        return tuple(train_test_split(index, test_size=fraction, random_state=seed))
