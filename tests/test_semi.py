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
        f"train.pseudo_label_threshold={THRESHOLD}",
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
    # the unlabelled pass is part of each epoch, beside the one batch of labelled samples
    assert meta["progress"]["steps_per_epoch"] == 1 + -(-pool["samples"] // 32)
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


def test_the_training_loss_counts_unlabelled_targets_at_their_weight(runs, blobs):
    from omnifuse.model.compile import compile_model
    from omnifuse.modelio import load_model

    cfg = _config(blobs, "train.semi_supervised=pseudo_label", "train.unlabeled_weight=0.25")
    prepared = pipeline.prepare(cfg, load_datasets(cfg))
    model = load_model(runs["pseudo_label"] / "model.keras")
    compile_model(model, cfg, prepared.tasks, steps_per_epoch=1)
    streams = SimpleNamespace(train=_labelled(prepared), steps=1)
    (callback,) = semi.attach(cfg, prepared, model, streams)
    pool = prepared.parts[0].unlabeled
    wrong = 1 - pool.extra["true_y"]  # targets the model disagrees with: a large loss
    callback.tables["blobs"]["y"].assign(wrong)
    x, y, w = next(iter(b for b in streams.train.take(streams.steps) if float(b[2][0]) != 1.0))
    out = model(x, training=False)
    weighted = float(model.compute_loss(x, y, out, sample_weight=w))
    full = float(model.compute_loss(x, y, out, sample_weight=np.ones_like(w)))
    assert full > 1.0 and weighted == pytest.approx(0.25 * full, rel=1e-4)
    callback.tables["blobs"]["y"].assign(np.full(len(pool), -1))  # no targets: the batch adds nothing
    x, y, w = next(iter(b for b in streams.train.take(streams.steps) if float(b[2][0]) != 1.0))
    assert float(model.compute_loss(x, y, model(x, training=False), sample_weight=w)) == pytest.approx(
        0.0, abs=1e-6
    )


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
    weights, targets, changed = [], [], 0
    for x, y, w in streams.train.take(streams.steps):
        weights.append(float(w[0]))
        assert len(set(np.asarray(w).tolist())) == 1
        if float(w[0]) == 1.0:
            assert (np.asarray(y["y"]) >= 0).all()  # a labelled batch
            continue
        targets += np.asarray(y["y"]).tolist()
        for row, target in zip(np.asarray(x["tabular"]), np.asarray(y["y"])):
            key = tuple(np.round(row, 4))
            if key not in by_row:
                changed += 1
            elif method == "pseudo_label":
                assert by_row[key] == target  # the table's target for that sample, -1 where it has none
    assert sorted(targets[: len(table)]) == sorted(
        table.tolist()
    )  # a pass over the pool, each with its target
    assert weights.count(1.0) == 1 and weights.count(0.25) == streams.steps - 1 == -(-len(pool) // 32)
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
