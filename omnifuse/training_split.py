"""What a model takes from its training split before it trains: the loss weights of the classes, the rows a
tabular encoder is normalised with, the texts (and labels) a vocabulary and an n-gram encoder learn from, and the
sample of images a data-initialised image encoder adapts to. :mod:`omnifuse.training` hands them to the builder."""

from __future__ import annotations

import numpy as np

from omnifuse import pipeline
from omnifuse.config import Config
from omnifuse.modalities import with_vocabulary
from omnifuse.model.heads import balanced_class_weights


def class_weights(cfg: Config, prepared: pipeline.Prepared) -> dict[str, list[float]] | None:
    """Per task, the loss weight of each class (``train.class_weight``), from the training labels."""
    if cfg.train.class_weight == "none":
        return None
    out = {}
    for task, classes in prepared.tasks.items():
        labels = [p.train.labels[task] for p in prepared.parts if task in p.train.labels]
        out[task] = balanced_class_weights(np.concatenate(labels), len(classes))
    return out


def numbers_rows(prepared: pipeline.Prepared) -> dict[str, np.ndarray]:
    """Per numbers modality, the training rows that have it: the tabular encoder is normalised with them."""
    rows = {}
    for name, spec in prepared.numbers.items():
        chunks = [np.zeros((0, len(spec["features"])), np.float32)]
        for p in prepared.parts:
            if name in p.train.inputs:
                present = p.train.masks.get(name, np.ones(len(p.train), np.float32)) > 0
                chunks.append(p.train.inputs[name][present])
        rows[name] = np.concatenate(chunks).astype(np.float32)
    return rows


def training_texts(prepared: pipeline.Prepared) -> tuple[list[str], tuple[str, np.ndarray] | None]:
    """Every training text (one vocabulary for every text modality: a CSV may have several text columns), and
    (task, class index per text, -1 for none) for the first task that labels any of them, or None."""
    named = with_vocabulary(prepared.modalities)
    texts, labels = [], {task: [] for task in prepared.tasks}
    for p in prepared.parts:
        for m in named:
            if m not in p.train.inputs:
                continue
            found = list(p.train.inputs[m])
            texts += found
            for task, rows in labels.items():
                rows.append(np.asarray(p.train.labels.get(task, np.full(len(found), -1)), "int64"))
    for task, rows in labels.items():
        column = np.concatenate(rows) if rows else np.zeros(0, "int64")
        if (column >= 0).any():
            return texts, (task, column)
    return texts, None


def image_sample(prepared: pipeline.Prepared, seed: int, size: int = 5000) -> np.ndarray | None:
    """Up to ``size`` training images (those present), drawn with ``seed``: data-initialised encoders adapt to them."""
    rng, chunks = np.random.default_rng(seed), []
    for name, kind in prepared.modalities.items():
        for p in prepared.parts:
            if kind == "image" and name in p.train.inputs:
                present = np.flatnonzero(p.train.masks.get(name, np.ones(len(p.train), np.float32)) > 0)
                chunks.append(p.train.inputs[name][np.sort(rng.permutation(present)[:size])])
    if not chunks:
        return None
    images = np.concatenate(chunks)
    return images[np.sort(rng.permutation(len(images))[:size])]
