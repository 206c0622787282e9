"""Semi-supervised training (``train.semi_supervised``): learning from ``data.unlabeled``'s samples as well.

Both methods give unlabelled samples targets from the model's own confident predictions, refreshed at the start of
every epoch (:class:`PseudoLabels`): a sample whose top probability for a task is at least
``train.pseudo_label_threshold`` gets that class as its label, the others get -1 (no label: the loss leaves them
out). Each training step then holds, as FixMatch's does, a labelled batch and ``train.unlabeled_ratio`` times as
many unlabelled samples, and its loss per task is the labelled samples' mean cross-entropy plus
``train.unlabeled_weight`` times the unlabelled samples' mean cross-entropy, in which a sample without a target
counts 0. An epoch is one pass over the unlabelled samples; the labelled ones
are drawn from their own endless, reshuffled stream.

- ``pseudo_label``: the unlabelled samples are trained on as they are (plus the model's own augmentation).
- ``consistency``: the targets come from the clean samples (the weak view), and the model trains on strongly
  perturbed copies (each modality's one corruption rule, omnifuse/modalities/, at a random level up to
  :data:`STRONG` of its strongest: Gaussian noise on images and audio, word dropout on text). This is FixMatch's
  confidence-thresholded consistency with the targets refreshed once an epoch instead of every step.

The targets live in a ``tf.Variable`` per data set and task that the stream reads as it runs (the unlabelled
batches carry each sample's row in it), so refreshing them needs no new stream. Where the unlabelled samples' true
labels are known (a scarce-label experiment: ``extra["true_<task>"]``), each epoch's row of ``metrics.csv`` says
how many targets were right (``pseudo_accuracy``) beside how many samples had one (``pseudo_labeled``).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from omnifuse import pipeline
from omnifuse.config import Config
from omnifuse.data import Split
from omnifuse.errors import OmnifuseError
from omnifuse.inference import Inference
from omnifuse.modalities import kind as kind_of
from omnifuse.names import WEIGHTS_OUTPUT, auxiliary_outputs, mask_name

STRONG = 0.5  # consistency: the strong view's corruption level, at most this share of the kind's MAX_LEVEL


def active(cfg: Config) -> bool:
    """Whether ``cfg`` trains on unlabelled samples."""
    return cfg.train.semi_supervised != "none"


def record(prepared: pipeline.Prepared, meta: dict) -> None:
    """Put the unlabelled samples' counts (read, dropped as copies of test samples, kept) into the run's meta,
    and print them: a test score is only clean if those copies were dropped."""
    if not prepared.unlabeled:
        return
    meta["unlabeled"] = prepared.unlabeled
    for name, found in prepared.unlabeled.items():
        print(
            f"{name}: {found['samples']} unlabelled samples ({found['read']} read from {found['source']!r}, "
            f"{found['dropped_test_copies']} dropped as copies of test samples)"
        )


class PseudoLabels(keras.callbacks.Callback):
    """At the start of each epoch, the model's confident predictions on the unlabelled samples become their
    targets (``tables``: per data set, task -> a variable of one label per sample, -1 = none)."""

    def __init__(self, prepared: pipeline.Prepared, tables: dict, threshold: float, batch_size: int):
        super().__init__()
        self.prepared, self.tables, self.threshold, self.batch_size = prepared, tables, threshold, batch_size
        self.stats: dict[str, float] = {}
        self._run: Inference | None = None

    def _inference(self, model: keras.Model) -> Inference:
        """One :class:`Inference` of ``model`` for the whole training (refreshed each epoch: a graph after a few)."""
        if self._run is None or self._run.model is not model:
            self._run = Inference(model)
        return self._run

    def refresh(self, model: keras.Model) -> dict[str, float]:
        """Label the unlabelled samples with ``model`` and store the targets; returns the share labelled and, where
        the true labels are known, the share of those targets that are right."""
        labelled = right = known = total = 0
        truths = False
        for part in self.prepared.parts:
            if part.name not in self.tables:
                continue
            stream, _ = pipeline.stream(self.prepared, [_indexed(part)], batch_size=self.batch_size)
            outputs = self._inference(model).many(x for x, _y in stream)
            for task, table in self.tables[part.name].items():
                probs = np.asarray(outputs[task])
                targets = np.where(probs.max(axis=1) >= self.threshold, probs.argmax(axis=1), -1)
                table.assign(targets.astype(np.int64))
                labelled += int((targets >= 0).sum())
                total += len(targets)
                truth = part.unlabeled.extra.get(f"true_{task}")
                if truth is not None:
                    truths = True
                    chosen = targets >= 0
                    right += int((targets[chosen] == truth[chosen]).sum())
                    known += int(chosen.sum())
        self.stats = {"pseudo_labeled": labelled / max(1, total)}
        if truths:  # every epoch's row has the column (NaN while no sample has a target)
            self.stats["pseudo_accuracy"] = right / known if known else float("nan")
        return self.stats

    def on_epoch_begin(self, epoch, logs=None):
        self.refresh(self.model)

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs.update({k: round(v, 6) for k, v in self.stats.items()})


def _indexed(part: pipeline.Part) -> Split:
    """``part``'s unlabelled samples with each one's row as the label of each of the part's tasks."""
    rows = np.arange(len(part.unlabeled), dtype=np.int64)
    u = part.unlabeled
    return Split(inputs=u.inputs, labels={t: rows for t in part.train.labels}, masks=u.masks)


def _look_up(tables: dict[str, tf.Variable]):
    def look_up(x, y):
        y = dict(y)
        for task, table in tables.items():
            y[task] = tf.gather(table, y[task])
        return x, y

    return look_up


def _strong(modalities: dict[str, str], seed: int):
    """A batch-level map: every present modality corrupted at a level drawn up to ``STRONG`` of its strongest."""
    names = sorted(m for m, kind in modalities.items() if hasattr(kind_of(kind, m), "corrupt"))

    def perturb(step, batch):
        x, y = batch
        keys = tf.random.experimental.stateless_split(
            tf.stack([tf.constant(seed, tf.int64), step]), 2 * len(names)
        )
        out = dict(x)
        for i, m in enumerate(names):
            rule = kind_of(modalities[m], m)
            present = x[mask_name(m)] > 0
            level = tf.random.stateless_uniform(tf.shape(present), seed=keys[2 * i]) * (
                STRONG * rule.MAX_LEVEL
            )
            level = tf.where(present, level, 0.0)
            changed = rule.corrupt(x[m], level, keys[2 * i + 1])
            out[m] = tf.where(present, changed, x[m]) if rule.DTYPE == "string" else changed
        return out, y

    return perturb


def _join(weight: float):
    """(labelled batch, unlabelled batch) -> one batch of both, with per-output sample weights that make the
    masked loss (a mean over the samples with a label) FixMatch's: labelled mean + weight * unlabelled sum / B_u."""

    def join(labelled, unlabelled):
        (xl, yl), (xu, yu) = labelled, unlabelled
        x = {k: tf.concat([xl[k], xu[k]], axis=0) for k in xl}
        y = {k: tf.concat([yl[k], yu[k]], axis=0) for k in yl}
        size_l = tf.shape(next(iter(yl.values())))[0]
        size_u = tf.shape(next(iter(yu.values())))[0]
        is_labelled = tf.range(size_l + size_u) < size_l
        weights = {}
        for name, labels in y.items():
            valid = tf.maximum(tf.reduce_sum(tf.cast(tf.reshape(labels, [-1]) >= 0, tf.float32)), 1.0)
            weights[name] = tf.where(
                is_labelled,
                valid / tf.cast(size_l, tf.float32),
                weight * valid / tf.cast(size_u, tf.float32),
            )
        return x, y, weights

    return join


def attach(cfg: Config, prepared: pipeline.Prepared, model: keras.Model, streams, epoch: int = 0) -> list:
    """Make ``streams`` (training's ``_Streams``) train on the unlabelled samples too, as ``train.semi_supervised``
    says; returns the callbacks that refresh their targets (none for ``"none"``: then nothing changes)."""
    t = cfg.train
    if not active(cfg):
        return []
    if not 0.0 < t.pseudo_label_threshold <= 1.0 or t.unlabeled_weight < 0 or t.unlabeled_ratio < 1:
        raise OmnifuseError(
            "Expected train.pseudo_label_threshold in (0, 1], train.unlabeled_weight >= 0 and "
            f"train.unlabeled_ratio >= 1. Received: {t.pseudo_label_threshold!r}, {t.unlabeled_weight!r}, "
            f"{t.unlabeled_ratio!r}"
        )
    if t.distribution != "none":
        raise OmnifuseError(
            f"train.semi_supervised = {t.semi_supervised!r} trains in one process. Received: train.distribution = "
            f"{t.distribution!r}"
        )
    parts = [p for p in prepared.parts if p.unlabeled is not None and len(p.unlabeled) and p.train.labels]
    if not parts:
        raise OmnifuseError(
            f"train.semi_supervised = {t.semi_supervised!r} needs unlabelled samples. Expected data.unlabeled "
            "('unsup', a CSV file or a folder). Received: no unlabelled samples"
        )
    seed = t.seed + epoch
    with_weights = WEIGHTS_OUTPUT in model.output_names
    auxiliary = auxiliary_outputs(model.output_names, prepared.tasks)
    size = t.batch_size * t.unlabeled_ratio
    tables, streams_u, counts = {}, [], []
    for i, part in enumerate(parts):
        n = len(part.unlabeled)
        tables[part.name] = {
            task: tf.Variable(np.full(n, -1, np.int64), trainable=False, name=f"pseudo_{part.name}_{task}")
            for task in part.train.labels
        }
        ds, steps = pipeline.stream(
            prepared,
            [_indexed(part)],
            batch_size=size,
            shuffle=True,
            seed=seed + 104729 * (i + 1),
            with_weights=with_weights,
            repeat=True,
            length_buckets=cfg.data.length_buckets,
        )
        ds = ds.map(_look_up(tables[part.name]))
        if t.semi_supervised == "consistency":
            ds = ds.enumerate().map(
                _strong(prepared.modalities, seed + 7), num_parallel_calls=tf.data.AUTOTUNE
            )
        if auxiliary:
            ds = ds.map(pipeline._auxiliary_labels(auxiliary))
        streams_u.append(ds)
        counts.append(steps)
    order = np.repeat(np.arange(len(parts), dtype=np.int64), counts)
    choice = tf.data.Dataset.from_tensor_slices(order).shuffle(len(order), seed=seed).repeat()
    unlabelled = tf.data.Dataset.choose_from_datasets(streams_u, choice) if len(parts) > 1 else streams_u[0]
    joined = tf.data.Dataset.zip(streams.train, unlabelled).map(_join(t.unlabeled_weight))
    streams.train = joined.prefetch(tf.data.AUTOTUNE)
    streams.steps = int(len(order))
    return [PseudoLabels(prepared, tables, t.pseudo_label_threshold, t.batch_size)]
