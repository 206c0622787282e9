"""From loaded data sets to tf.data streams the model trains on.

Several data sets can train one model (``data.sets = ["cifar10", "imdb"]``): the union of their modalities and tasks
becomes the model's. Each data set is batched on its own, a batch fills the modalities that set lacks with zeros and
mask 0 and the tasks it lacks with label -1, and the batches of all sets are interleaved in a seeded random order, so
one epoch is exactly one pass over every set.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

from omnifuse.config import Config
from omnifuse.data import Dataset, Split
from omnifuse.data.splits import holdout
from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.modalities import kind as kind_of
from omnifuse.modalities import sample_shape, with_vocabulary
from omnifuse.modality_noise import corrupt_modalities, drop_modalities
from omnifuse.names import WEIGHTS_OUTPUT, mask_name


@dataclass
class Part:
    """One data set, split for training."""

    name: str
    train: Split
    val: Split
    test: Split
    unlabeled: Split | None = None  # data.unlabeled's samples, no labels (omnifuse/semi.py trains on them)


@dataclass
class Prepared:
    parts: list[Part]
    modalities: dict[str, str]  # name -> kind
    tasks: dict[str, list[str]]  # name -> class names
    image_shape: tuple[int, int, int] | None
    sources: dict[str, str]
    audio_length: int = 0
    # numbers modality -> {"features": [names], "columns": [...]} (its width F is len(features))
    numbers: dict[str, dict] = field(default_factory=dict)
    skipped_rows: dict[str, dict] = field(
        default_factory=dict
    )  # data set -> {"count", "rows"}: bad rows skipped
    # a CSV's data set -> its "columns" (kinds), "modality_columns" and "id_column" (omnifuse/predict_table.py)
    tables: dict[str, dict] = field(default_factory=dict)
    # data set -> {"source", "read", "dropped_test_copies"}: its unlabelled samples (omnifuse/data/unlabeled.py)
    unlabeled: dict[str, dict] = field(default_factory=dict)


def _holdout(
    split: Split, fraction: float, seed: int, stratify: np.ndarray | None, by_group: bool = True
) -> tuple[Split, Split]:
    """Hold ``fraction`` of ``split`` out for validation, stratified by ``stratify`` and seeded.

    Where the split names a group per sample (``extra["group"]``: IMDb's film of each review, a CSV's group
    column) and ``by_group`` is on, whole groups are held out (about ``fraction`` of the samples), so that
    validation, like a test set of other films or patients, cannot be passed by remembering them.
    """
    groups = split.extra.get("group") if by_group else None
    train_idx, val_idx = holdout(np.arange(len(split)), stratify, fraction, seed, groups)
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
    datasets = select_modalities(datasets, cfg.data.modalities)
    for ds in datasets:
        for name, kind in ds.modalities.items():
            if modalities.setdefault(name, kind) != kind:
                raise OmnifuseError(
                    f"Modality {name!r} is {modalities[name]!r} in one data set and {kind!r} in {ds.name!r}."
                )
        for task, classes in ds.tasks.items():
            if tasks.setdefault(task, list(classes)) != list(classes):
                raise OmnifuseError(f"Task {task!r} has different classes in {ds.name!r}: {classes}")
        splits = _cross_validation(ds, cfg) if "train" not in ds.splits else ds.splits
        train = splits["train"]
        if "val" in splits:
            val = splits["val"]
        else:
            first_task = next(iter(train.labels.values()), None)
            train, val = _holdout(
                train, cfg.data.val_fraction, cfg.train.seed, first_task, cfg.data.group_holdout
            )
        train = _limit(train, cfg.data.limit_train, cfg.train.seed)
        val = _limit(val, cfg.data.limit_test and max(1, cfg.data.limit_test // 2), cfg.train.seed)
        test = _limit(splits["test"], cfg.data.limit_test, cfg.train.seed)
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
        unlabeled = splits.get("unlabeled")
        unlabeled = None if unlabeled is None else _limit(unlabeled, cfg.data.limit_train, cfg.train.seed)
        parts.append(Part(ds.name, train, val, test, unlabeled))
    prepared = Prepared(
        parts, modalities, tasks, image_shape, {d.name: d.source for d in datasets}, cfg.data.num_samples
    )
    for ds, part in zip(datasets, parts):
        _record_numbers(prepared, ds, part)
        if "unlabeled" in ds.meta:
            prepared.unlabeled[ds.name] = {**ds.meta["unlabeled"], "samples": len(part.unlabeled or ())}
        if ds.meta.get("skipped_rows"):
            skipped = {"count": ds.meta["skipped_rows"], "rows": ds.meta.get("bad_rows", [])}
            prepared.skipped_rows[ds.name] = skipped
        if "modality_columns" in ds.meta:
            keys = ("columns", "modality_columns", "id_column")
            prepared.tables[ds.name] = {k: ds.meta[k] for k in keys if k in ds.meta}
    return prepared


def select_modalities(datasets: list[Dataset], keep: tuple[str, ...]) -> list[Dataset]:
    """The data sets with only the modalities named in ``data.modalities`` (all of them when it is empty).

    A sample left with none of the kept modalities present (possible where ``Split.masks`` marks some absent) is
    left out: it has nothing to predict from.
    """
    if not keep:
        return datasets
    known = sorted({m for ds in datasets for m in ds.modalities})
    unknown = [m for m in keep if m not in known]
    if unknown:
        raise OmnifuseError(
            f"Unknown modality {unknown[0]!r} in data.modalities.{did_you_mean(unknown[0], known)} "
            f"The data sets have: {', '.join(known)}"
        )
    out = []
    for ds in datasets:
        kept = {m: kind for m, kind in ds.modalities.items() if m in keep}
        if not kept:
            raise OmnifuseError(
                f"data.modalities = {list(keep)} leaves data set {ds.name!r} without a modality "
                f"(it has: {', '.join(ds.modalities)})"
            )
        splits = {}
        for name, split in ds.splits.items():
            split = dataclasses.replace(
                split,
                inputs={m: v for m, v in split.inputs.items() if m in kept},
                masks={m: v for m, v in split.masks.items() if m in kept},
            )
            # where every kept modality may be absent, leave out the samples that have none of them
            if all(m in split.masks for m in kept):
                split = split.take(np.flatnonzero(np.any([split.masks[m] > 0 for m in kept], axis=0)))
            splits[name] = split
        out.append(dataclasses.replace(ds, splits=splits, modalities=kept))
    return out


def _record_numbers(prepared: Prepared, ds: Dataset, part: Part) -> None:
    """The feature names (and, for a CSV, column specs) of each numbers modality; one width per name."""
    for name, kind in ds.modalities.items():
        if kind != "numbers":
            continue
        spec = ds.meta.get("numbers", {}).get(name)
        if spec is None:
            width = part.train.inputs[name].shape[1]
            spec = {"features": [f"{name}[{i}]" for i in range(width)]}
        known = prepared.numbers.setdefault(name, spec)
        if len(known["features"]) != len(spec["features"]):
            raise OmnifuseError(
                f"Numbers modality {name!r} has {len(spec['features'])} features in {ds.name!r}, "
                f"{len(known['features'])} in another data set."
            )


def _cross_validation(ds: Dataset, cfg: Config) -> dict[str, Split]:
    """train/test for a data set without an official split: fold ``data.fold`` of its k folds is the test set."""
    whole = ds.splits.get("all")
    if whole is None or "fold" not in whole.extra:
        raise OmnifuseError(
            f"Data set {ds.name!r} has no train split and no folds. Splits: {', '.join(ds.splits)}"
        )
    folds = sorted(set(whole.extra["fold"].tolist()))
    if cfg.data.fold not in folds:
        raise OmnifuseError(f"Expected data.fold in {folds} for {ds.name!r}. Received: {cfg.data.fold}")
    test = whole.extra["fold"] == cfg.data.fold
    return {"train": whole.take(np.flatnonzero(~test)), "test": whole.take(np.flatnonzero(test))}


def _fill(
    modalities: dict[str, str],
    tasks: list[str],
    present: set[str],
    image_shape,
    audio_length,
    with_weights: bool,
    widths: dict[str, int] | None = None,
):
    """A batch-level map adding blanks + mask 0 for absent modalities and label -1 for absent tasks."""
    shapes = {
        name: sample_shape(
            kind, image_shape=image_shape, num_samples=audio_length, width=(widths or {}).get(name, 0)
        )
        for name, kind in modalities.items()
    }

    def fill(x, y):
        batch = tf.shape(next(iter(y.values())) if y else next(iter(x.values())))[0]
        out_x = {}
        for name, kind in modalities.items():
            if name in present:
                out_x[name] = x[name]
                # a split with per-sample presence (Split.masks) carries its masks in x; otherwise all present
                out_x[mask_name(name)] = x.get(mask_name(name), tf.ones([batch], tf.float32))
            else:
                out_x[name] = kind_of(kind, name).blank(batch, shapes[name])
                out_x[mask_name(name)] = tf.zeros([batch], tf.float32)
        out_y = {t: y[t] if t in y else tf.fill([batch], tf.constant(-1, tf.int64)) for t in tasks}
        if with_weights:
            # Keras's compiled metrics want a target for every output; the weights output has no loss or metric.
            out_y[WEIGHTS_OUTPUT] = tf.zeros([batch], tf.float32)
        return out_x, out_y

    return fill


def _inputs(split: Split, modalities: dict[str, str]) -> dict[str, np.ndarray]:
    out = {}
    for name, arr in split.inputs.items():
        kind = modalities.get(name)
        out[name] = kind_of(kind, name).as_input(arr) if kind is not None else arr
    return out


def stream(
    prepared: Prepared,
    splits: list[Split],
    *,
    batch_size: int,
    shuffle: bool = False,
    seed: int = 0,
    with_weights: bool = False,
    repeat: bool = False,
    fractions: tuple[float, ...] = (),
    modality_dropout: float = 0.0,
    modality_noise: float = 0.0,
    auxiliary: dict[str, tuple[str, str | None]] | None = None,
    length_buckets: int = 0,
) -> tuple[tf.data.Dataset, int]:
    """A tf.data stream over ``splits`` (one per part) in batches that each come from one split; and its length.

    ``shuffle``: samples (and the order of the splits' batches) shuffled, seeded by ``seed``; ``with_weights``:
    each batch carries a blank target for the model's modality-weights output (see :func:`_fill`).
    With ``repeat`` the stream is endless and its length is one epoch: ``fractions[i]`` of a pass over split ``i``
    (default 1.0 each), drawn afresh every epoch; without it, the stream is exactly one pass over every split.
    ``modality_dropout``: see :func:`drop_modalities`; ``modality_noise``: see :func:`corrupt_modalities` (both for
    the training stream only; corruption comes first, so a dropped modality is blank, not noisy).
    ``auxiliary``: the model's outputs trained beside its tasks (output -> (task, modality or None), see
    :func:`omnifuse.names.auxiliary_outputs`); each gets its task's labels, and one that names a modality gets -1
    where that modality is absent (after dropout).
    ``length_buckets``: with ``shuffle``, a split with texts is batched by length (see :func:`_length_batches`).
    """
    tasks = list(prepared.tasks)
    if length_buckets < 0:
        raise OmnifuseError(
            f"Expected data.length_buckets of at least 0 (0 = batches of random texts). Received: {length_buckets}"
        )
    if fractions and len(fractions) != len(splits):
        raise OmnifuseError(
            f"Expected one data.epoch_fraction per data set ({len(splits)}). Received: {list(fractions)}"
        )
    streams, counts = [], []
    for i, split in enumerate(splits):
        n = len(split)
        if n == 0:
            continue
        x = _inputs(split, prepared.modalities)
        for name, presence in split.masks.items():
            if name in x:
                x[mask_name(name)] = presence.astype(np.float32)
        y = {t: split.labels[t].astype(np.int64) for t in split.labels}
        ds = tf.data.Dataset.from_tensor_slices((x, y))
        if shuffle:
            ds = ds.shuffle(n, seed=seed + i, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        texts = text_inputs(x, prepared.modalities)
        if shuffle and length_buckets > 0 and texts:
            ds = _length_batches(ds, texts, batch_size, length_buckets)
        else:
            ds = ds.batch(batch_size)
        ds = ds.map(
            _fill(
                prepared.modalities,
                tasks,
                set(x),
                prepared.image_shape,
                prepared.audio_length,
                with_weights,
                {m: len(spec["features"]) for m, spec in prepared.numbers.items()},
            ),
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
    if modality_noise:
        combined = corrupt_modalities(combined, prepared.modalities, modality_noise, seed + 7919)
    if modality_dropout:
        combined = drop_modalities(combined, prepared.modalities, modality_dropout, seed)
    if auxiliary:
        combined = combined.map(_auxiliary_labels(auxiliary), num_parallel_calls=tf.data.AUTOTUNE)
    return combined.prefetch(tf.data.AUTOTUNE), int(sum(counts))


def text_inputs(inputs: dict[str, np.ndarray], modalities: dict[str, str]) -> list[np.ndarray]:
    """The arrays of ``inputs`` that hold a text modality (one per text modality present)."""
    return [inputs[m] for m in with_vocabulary(modalities) if m in inputs]


def _word_counts(texts: list[np.ndarray]) -> np.ndarray:
    """Words per sample (runs of non-whitespace), summed over its text modalities; an empty text counts 0. Texts
    may be str or, as a tf.data stream gives them back, UTF-8 bytes."""
    return np.sum(
        [
            [len(t.split()) if isinstance(t, (str, bytes)) else len(str(t).split()) for t in column]
            for column in texts
        ],
        axis=0,
    )


def length_order(texts: list[np.ndarray]) -> np.ndarray:
    """The samples' order by word count (summed over ``texts``, one array per text modality), shortest first,
    stable: predicting in this order lets a recurrent encoder drop the padding after each batch's longest text."""
    return np.argsort(_word_counts(texts), kind="stable")


def _length_batches(
    ds: tf.data.Dataset, texts: list[np.ndarray], batch_size: int, buckets: int
) -> tf.data.Dataset:
    """``ds`` (shuffled samples) in batches of texts of similar length: each sample goes to one of ``buckets``
    buckets by its word count (cut at the quantiles of ``texts``' counts), and a bucket is emitted as a batch when it
    holds ``batch_size`` samples, so the batches come in random order. A recurrent encoder that drops the padding
    after the batch's longest text (:class:`omnifuse.encoders.text.TextRNN`) then runs a few steps more than the
    typical text instead of ``sequence_length``. The stream recounts each sample's words with
    ``tf.strings.split`` (runs of non-whitespace, as here)."""
    counts = _word_counts(texts)
    cuts = np.quantile(counts, np.linspace(0.0, 1.0, buckets + 1)[1:-1]) if buckets > 1 else []
    boundaries = sorted({int(c) + 1 for c in cuts})  # bucket i: boundaries[i - 1] <= words < boundaries[i]
    names = [name for name, value in ds.element_spec[0].items() if value.dtype == tf.string]

    def words(x, y):
        return tf.add_n([tf.size(tf.strings.split(x[name]), out_type=tf.int32) for name in names])

    if not boundaries:
        return ds.batch(batch_size)
    return ds.bucket_by_sequence_length(
        words, boundaries, [batch_size] * (len(boundaries) + 1), no_padding=True
    )


def _auxiliary_labels(auxiliary: dict[str, tuple[str, str | None]]):
    """A batch-level map: each auxiliary output's labels, -1 where the modality it needs is absent."""

    def add(x, y):
        y = dict(y)
        for name, (task, modality) in auxiliary.items():
            if modality is None:
                y[name] = y[task]
            else:
                y[name] = tf.where(x[mask_name(modality)] > 0, y[task], tf.constant(-1, tf.int64))
        return x, y

    return add
