"""From loaded data sets to tf.data streams the model trains on.

Several data sets can train one model (``data.sets = ["cifar10", "imdb"]``): the union of their modalities and tasks
becomes the model's. Each data set is batched on its own, a batch fills the modalities that set lacks with zeros and
mask 0 and the tasks it lacks with label -1, and the batches of all sets are interleaved in a seeded random order, so
one epoch is exactly one pass over every set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from omnifuse.config import Config
from omnifuse.data import Dataset, Split
from omnifuse.errors import OmnifuseError
from omnifuse.models import WEIGHTS_OUTPUT, mask_name


@dataclass
class Part:
    """One data set, split for training."""

    name: str
    train: Split
    val: Split
    test: Split


@dataclass
class Prepared:
    parts: list[Part]
    modalities: dict[str, str]  # name -> kind
    tasks: dict[str, list[str]]  # name -> class names
    image_shape: tuple[int, int, int] | None
    sources: dict[str, str]


def _holdout(split: Split, fraction: float, seed: int, stratify: np.ndarray | None) -> tuple[Split, Split]:
    from sklearn.model_selection import train_test_split

    index = np.arange(len(split))
    if fraction <= 0:
        return split, split.take(index[:0])
    try:
        train_idx, val_idx = train_test_split(index, test_size=fraction, random_state=seed, stratify=stratify)
    except ValueError:  # too few samples per class to stratify
        train_idx, val_idx = train_test_split(index, test_size=fraction, random_state=seed)
    return split.take(np.sort(train_idx)), split.take(np.sort(val_idx))


def _limit(split: Split, limit: int, seed: int) -> Split:
    if not limit or limit >= len(split):
        return split
    rng = np.random.default_rng(seed)
    return split.take(np.sort(rng.permutation(len(split))[:limit]))


def prepare(cfg: Config, datasets: list[Dataset]) -> Prepared:
    """Hold out validation data, apply limits and merge the data sets' modalities and tasks."""
    modalities: dict[str, str] = {}
    tasks: dict[str, list[str]] = {}
    parts = []
    image_shape = None
    for ds in datasets:
        for name, kind in ds.modalities.items():
            if modalities.setdefault(name, kind) != kind:
                raise OmnifuseError(
                    f"Modality {name!r} is {modalities[name]!r} in one data set and {kind!r} in {ds.name!r}."
                )
        for task, classes in ds.tasks.items():
            if tasks.setdefault(task, list(classes)) != list(classes):
                raise OmnifuseError(f"Task {task!r} has different classes in {ds.name!r}: {classes}")
        train = ds.splits["train"]
        if "val" in ds.splits:
            val = ds.splits["val"]
        else:
            first_task = next(iter(train.labels.values()), None)
            train, val = _holdout(train, cfg.data.val_fraction, cfg.train.seed, first_task)
        train = _limit(train, cfg.data.limit_train, cfg.train.seed)
        val = _limit(val, cfg.data.limit_test and max(1, cfg.data.limit_test // 2), cfg.train.seed)
        test = _limit(ds.splits["test"], cfg.data.limit_test, cfg.train.seed)
        for kind_name, kind in ds.modalities.items():
            if kind == "image":
                shape = tuple(train.inputs[kind_name].shape[1:])
                if len(shape) == 2:
                    shape = (*shape, 1)
                if image_shape is not None and image_shape != shape:
                    raise OmnifuseError(
                        f"Images of {ds.name!r} are {shape}, another data set's are {image_shape}."
                    )
                image_shape = shape
        parts.append(Part(ds.name, train, val, test))
    return Prepared(parts, modalities, tasks, image_shape, {d.name: d.source for d in datasets})


def _fill(modalities: dict[str, str], tasks: list[str], present: set[str], image_shape, with_weights: bool):
    """A batch-level map adding zeros + mask 0 for absent modalities and label -1 for absent tasks."""

    def fill(x, y):
        batch = tf.shape(next(iter(y.values())) if y else next(iter(x.values())))[0]
        out_x = {}
        for name, kind in modalities.items():
            if name in present:
                out_x[name] = x[name]
                out_x[mask_name(name)] = tf.ones([batch], tf.float32)
            else:
                if kind == "image":
                    out_x[name] = tf.zeros([batch, *image_shape], tf.uint8)
                elif kind == "text":
                    out_x[name] = tf.fill([batch], "")
                else:
                    raise OmnifuseError(f"Cannot fill absent modality {name!r} of kind {kind!r}")
                out_x[mask_name(name)] = tf.zeros([batch], tf.float32)
        out_y = {t: y[t] if t in y else tf.fill([batch], tf.constant(-1, tf.int64)) for t in tasks}
        if with_weights:
            # Keras's compiled metrics want a target for every output; the weights output has no loss or metric.
            out_y[WEIGHTS_OUTPUT] = tf.zeros([batch], tf.float32)
        return out_x, out_y

    return fill


def _inputs(split: Split, modalities: dict[str, str], image_shape) -> dict[str, np.ndarray]:
    out = {}
    for name, arr in split.inputs.items():
        if modalities.get(name) == "image" and arr.ndim == 3:
            arr = arr[..., None]
        if modalities.get(name) == "text":
            arr = arr.astype(str) if len(arr) else np.zeros((0,), dtype=str)
        out[name] = arr
    return out


def stream(
    prepared: Prepared,
    splits: list[Split],
    batch_size: int,
    shuffle: bool,
    seed: int,
    with_weights: bool,
    repeat: bool = False,
    fractions: tuple[float, ...] = (),
) -> tuple[tf.data.Dataset, int]:
    """A tf.data stream over ``splits`` (one per part) in batches that each come from one split; and its length.

    With ``repeat`` the stream is endless and its length is one epoch: ``fractions[i]`` of a pass over split ``i``
    (default 1.0 each), drawn afresh every epoch; without it, the stream is exactly one pass over every split.
    """
    tasks = list(prepared.tasks)
    if fractions and len(fractions) != len(splits):
        raise OmnifuseError(
            f"Expected one data.epoch_fraction per data set ({len(splits)}). Received: {list(fractions)}"
        )
    streams, counts = [], []
    for i, split in enumerate(splits):
        n = len(split)
        if n == 0:
            continue
        x = _inputs(split, prepared.modalities, prepared.image_shape)
        y = {t: split.labels[t].astype(np.int64) for t in split.labels}
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(n, seed=seed + i, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        ds = ds.batch(batch_size).map(
            _fill(prepared.modalities, tasks, set(x), prepared.image_shape, with_weights),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
        streams.append(ds)
        batches = -(-n // batch_size)
        counts.append(max(1, round(batches * fractions[i])) if (repeat and fractions) else batches)
    if not streams:
        raise OmnifuseError("No samples to train or evaluate on (every split is empty).")
    order = np.repeat(np.arange(len(streams), dtype=np.int64), counts)
    choice = tf.data.Dataset.from_tensor_slices(order)
    if shuffle:
        choice = choice.shuffle(len(order), seed=seed, reshuffle_each_iteration=True)
    if repeat:
        choice = choice.repeat()
    combined = tf.data.Dataset.choose_from_datasets(streams, choice) if len(streams) > 1 else streams[0]
    return combined.prefetch(tf.data.AUTOTUNE), int(sum(counts))
