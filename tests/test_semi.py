"""Semi-supervised training (train.semi_supervised): on a tiny task with 4 labels per class and the rest unlabelled,
pseudo-labelling selects confident, correct targets and trains on them; consistency perturbs only the unlabelled
batches; "none" leaves training as it was."""

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest

from omnifuse import pipeline, semi
from omnifuse.config import load_config
from omnifuse.data.catalog import load_datasets
from omnifuse.errors import OmnifuseError
from omnifuse.training import train

THRESHOLD = 0.9
RATIO = 2  # unlabelled samples per labelled one in a step: batches of 32 + 64


@pytest.fixture(scope="module")
def blobs(tmp_path_factory):
    """Two Gaussian blobs 6 std apart, 400 rows; 4 labels per class are kept, the other training rows unlabelled."""
    root = tmp_path_factory.mktemp("blobs")
    rng = np.random.default_rng(0)
    path = root / "blobs.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["a", "y"])
        for i in range(400):
            label = i % 2
            a = rng.normal(3.0 if label else -3.0, 1.0)
            writer.writerow([f"{a:.4f}", "pos" if label else "neg"])
    overrides = [
        f"data.csv={path}",
        "data.label=y",
        "data.labels_per_class=4",
        "data.unlabeled=unsup",
        "model.fusion=concat",
        "model.tabular.mlp.units=[16]",
        "train.epochs=4",
        "train.batch_size=32",
        "train.learning_rate=0.01",
        "train.early_stopping=0",
        "train.verbose=0",
        "track.tensorboard=false",  # no TensorBoard logs: tests/test_tracking.py checks them
        f"train.pseudo_label_threshold={THRESHOLD}",
        f"train.unlabeled_ratio={RATIO}",
    ]
    return overrides, root


def _config(blobs, *more):
    overrides, _ = blobs
    return load_config("table", [*overrides, *more])


@pytest.fixture(scope="module")
def runs(blobs):
    _, root = blobs
    return {
        "pseudo_label": train(_config(blobs, "train.semi_supervised=pseudo_label"), runs_root=root / "runs")
    }


def _metrics(run):
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_pseudo_labels_are_confident_correct_and_trained_on(runs):
    meta = json.loads((runs["pseudo_label"] / "meta.json").read_text())
    pool = meta["unlabeled"]["blobs"]
    assert pool["samples"] > 200 and pool["dropped_test_copies"] == 0
    # an epoch is a pass over the unlabelled samples, 64 a step
    assert meta["progress"]["steps_per_epoch"] == -(-pool["samples"] // (32 * RATIO))
    rows = _metrics(runs["pseudo_label"])
    first, last = float(rows[0]["pseudo_labeled"]), float(rows[-1]["pseudo_labeled"])
    assert last > 0.5 and last >= first  # the model labels more of the pool as it learns from it
    assert (
        float(rows[-1]["pseudo_accuracy"]) > 0.97
    )  # targets above the threshold are right (blobs 6 std apart)


def test_refresh_selects_exactly_the_predictions_above_the_threshold(runs, blobs):
    from omnifuse.modelio import load_model

    cfg = _config(blobs, "train.semi_supervised=pseudo_label")
    prepared = pipeline.prepare(cfg, load_datasets(cfg))
    model = load_model(runs["pseudo_label"] / "model.keras")
    streams = SimpleNamespace(train=_labelled(prepared), steps=1)
    (callback,) = semi.attach(cfg, prepared, model, streams)
    stats = callback.refresh(model)
    targets = callback.tables["blobs"]["y"].numpy()
    stream, _ = pipeline.stream(prepared, [semi._indexed(prepared.parts[0])], batch_size=64)
    probs = model.predict(stream.map(lambda x, y: x), verbose=0)["y"]
    confident = probs.max(axis=1) >= THRESHOLD
    np.testing.assert_array_equal(targets >= 0, confident)
    np.testing.assert_array_equal(targets[confident], probs.argmax(axis=1)[confident])
    assert stats["pseudo_labeled"] == pytest.approx(confident.mean())


def _cross_entropy(probs, labels):
    return -np.log(np.clip(probs[np.arange(len(labels)), np.maximum(labels, 0)], 1e-7, 1.0)) * (labels >= 0)


def test_the_training_loss_is_fixmatchs(runs, blobs):
    """Labelled mean + weight * (unlabelled cross-entropy summed over the targets given) / unlabelled count."""
    from omnifuse.model.compile import compile_model
    from omnifuse.modelio import load_model

    cfg = _config(blobs, "train.semi_supervised=pseudo_label", "train.unlabeled_weight=0.25")
    prepared = pipeline.prepare(cfg, load_datasets(cfg))
    model = load_model(runs["pseudo_label"] / "model.keras")
    compile_model(model, cfg, prepared.tasks, steps_per_epoch=1)
    streams = SimpleNamespace(train=_labelled(prepared), steps=1)
    (callback,) = semi.attach(cfg, prepared, model, streams)
    pool = prepared.parts[0].unlabeled
    wrong = np.where(np.arange(len(pool)) % 2 == 0, 1 - pool.extra["true_y"], -1)  # half with a wrong target
    for table in (wrong, np.full(len(pool), -1)):
        callback.tables["blobs"]["y"].assign(table)
        x, y, w = next(iter(streams.train))
        probs = np.asarray(model(x, training=False)["y"])
        ce = _cross_entropy(probs, np.asarray(y["y"]))
        expected = ce[:32].mean() + 0.25 * ce[32:].sum() / (32 * RATIO)
        got = float(model.compute_loss(x, y, model(x, training=False), sample_weight=w))
        assert got == pytest.approx(expected, rel=1e-4)
    assert (wrong >= 0).any() and ce[32:].sum() == 0  # the second pass: no targets, only the labelled term


def _labelled(prepared):
    ds, _ = pipeline.stream(
        prepared, [p.train for p in prepared.parts], batch_size=32, shuffle=True, repeat=True
    )
    return ds


@pytest.mark.parametrize("method", ["pseudo_label", "consistency"])
def test_unlabelled_batches_carry_the_targets_and_their_weight(blobs, method):
    cfg = _config(blobs, f"train.semi_supervised={method}", "train.unlabeled_weight=0.25")
    prepared = pipeline.prepare(cfg, load_datasets(cfg))
    streams = SimpleNamespace(train=_labelled(prepared), steps=1)
    (callback,) = semi.attach(cfg, prepared, SimpleNamespace(output_names=["y"]), streams)
    pool = prepared.parts[0].unlabeled
    table = np.where(np.arange(len(pool)) % 3 == 0, -1, pool.extra["true_y"])  # some rows without a target
    callback.tables["blobs"]["y"].assign(table)
    by_row = {tuple(np.round(x, 4)): t for x, t in zip(pool.inputs["tabular"], table)}
    targets, changed = [], 0
    for x, y, w in streams.train.take(streams.steps):
        labels = np.asarray(y["y"])
        assert (
            len(labels) == 32 + 32 * RATIO and (labels[:32] >= 0).all()
        )  # a labelled batch, then unlabelled
        valid = (labels >= 0).sum()
        np.testing.assert_allclose(w["y"][:32], valid / 32, rtol=1e-6)
        np.testing.assert_allclose(w["y"][32:], 0.25 * valid / (32 * RATIO), rtol=1e-6)
        targets += labels[32:].tolist()
        for row, target in zip(np.asarray(x["tabular"])[32:], labels[32:]):
            key = tuple(np.round(row, 4))
            if key not in by_row:
                changed += 1
            elif method == "pseudo_label":
                assert by_row[key] == target  # the table's target for that sample, -1 where it has none
    assert streams.steps == -(-len(pool) // (32 * RATIO))
    assert sorted(targets[: len(table)]) == sorted(
        table.tolist()
    )  # a pass over the pool, each with its target
    if method == "pseudo_label":
        assert changed == 0  # trained on as they are
    else:
        assert changed > len(pool) // 2  # strongly perturbed copies


def test_none_changes_nothing_and_bad_settings_are_errors(blobs):
    cfg = _config(blobs)
    prepared = pipeline.prepare(cfg, load_datasets(cfg))
    stream = _labelled(prepared)
    streams = SimpleNamespace(train=stream, steps=1)
    assert semi.attach(cfg, prepared, SimpleNamespace(output_names=["y"]), streams) == []
    assert streams.train is stream and streams.steps == 1
    meta = {}
    semi.record(prepared, meta)  # the unlabelled samples are counted in the run's meta whether used or not
    assert meta["unlabeled"]["blobs"]["samples"] == len(prepared.parts[0].unlabeled) > 200
    with pytest.raises(OmnifuseError, match="pseudo_label_threshold"):
        semi.attach(
            cfg.replace(["train.semi_supervised=pseudo_label", "train.pseudo_label_threshold=0"]),
            prepared,
            None,
            streams,
        )
    bare = cfg.replace(["data.unlabeled=", "train.semi_supervised=consistency"])
    with pytest.raises(OmnifuseError, match="data.unlabeled"):
        semi.attach(bare, pipeline.prepare(bare, load_datasets(bare)), None, streams)
