"""`omnifuse label next`: a trained run ranks an unlabelled pool (CSV or folder) by uncertainty, diversity or the
disagreement of its per-modality heads, and writes a queue that is a valid `--data` CSV once labelled."""

import csv

import numpy as np
import pytest
from label_fixtures import sample, shared_sky, write_csv
from typer.testing import CliRunner

import omnifuse
import omnifuse.label
from omnifuse.cli import app
from omnifuse.data.table import load_csv
from omnifuse.errors import OmnifuseError
from omnifuse.label.next import (
    badge_order,
    disagreement_scores,
    kcenter_order,
    last_input_model,
    margin_scores,
    typiclust_order,
)


@pytest.fixture(scope="module")
def sky(tmp_path_factory):
    root = tmp_path_factory.mktemp("sky")
    return root, shared_sky(tmp_path_factory, root)


@pytest.fixture(scope="module")
def pool(sky):
    """Clear rows of either class, 8 copies of one ambiguous row, and rows whose image and text disagree."""
    root, _ = sky
    rng = np.random.default_rng(1)
    rows, kinds = [], []
    for i in range(16):
        cls = ("moon", "sun")[i % 2]
        rows.append(sample(root, f"p{i:03d}", cls, cls, cls, rng))
        kinds.append("clear")
    ambiguous = sample(root, "amb", "mid", "mid", "mid", rng)
    for _ in range(8):
        rows.append(dict(ambiguous))
        kinds.append("copy")
    for i in range(6):
        image, text = ("sun", "moon") if i % 2 else ("moon", "sun")
        rows.append(sample(root, f"c{i:03d}", image, text, None, rng))
        kinds.append("conflict")
    path = root / "pool.csv"
    write_csv(path, rows)
    return path, np.array(kinds)


def test_the_trained_fixture_tells_the_classes_apart(sky):
    root, run = sky
    p = omnifuse.load(run)
    assert (
        p.predict(image=str(root / "imgs" / "l001.png"), text="bright warm day")["tasks"]["label"]["class"]
        == "sun"
    )
    assert (
        p.predict(image=str(root / "imgs" / "l000.png"), text="dark cold night")["tasks"]["label"]["class"]
        == "moon"
    )


def test_margin_and_entropy_rank_by_the_model_s_own_probabilities(sky, pool):
    _, run = sky
    path, kinds = pool
    p = omnifuse.load(run)
    ranked = omnifuse.label.rank(p, path, budget=10, strategy="margin")
    assert [r["rank"] for r in ranked] == list(range(1, 11))
    scores = [r["score"] for r in ranked]
    assert scores == sorted(scores, reverse=True)
    # the scores are 1 - (p1 - p2) of the probabilities the Predictor gives for the same row
    first = ranked[0]
    probs = sorted(first["probabilities"].values(), reverse=True)
    assert first["score"] == pytest.approx(1 - (probs[0] - probs[1]), abs=1e-5)
    assert first["guess"] == max(first["probabilities"], key=first["probabilities"].get)
    # every clear row is surer than the least sure row the ranking picked
    all_rows = omnifuse.label.rank(p, path, budget=len(kinds), strategy="margin")
    by_row = {r["row"]: r["score"] for r in all_rows}
    lines = np.arange(len(kinds)) + 2  # line of each pool row (header = 1)
    clear = [by_row[int(line)] for line in lines[kinds == "clear"]]
    unclear = [by_row[int(line)] for line in lines[kinds != "clear"]]
    assert np.mean(unclear) > np.mean(clear)
    entropy = omnifuse.label.rank(p, path, budget=len(kinds), strategy="entropy")
    assert {r["row"] for r in entropy[:8]} == {r["row"] for r in all_rows[:8]}  # same order for two classes


def test_diverse_strategies_do_not_fill_a_batch_with_copies(sky, pool):
    _, run = sky
    path, kinds = pool
    copies = {int(line) for line in (np.flatnonzero(kinds == "copy") + 2)}
    p = omnifuse.load(run)
    margin = omnifuse.label.rank(p, path, budget=6, strategy="margin")
    assert sum(r["row"] in copies for r in margin) >= 3  # uncertainty alone asks for the same sample again
    for strategy in ("kcenter", "hybrid", "typiclust", "badge"):
        ranked = omnifuse.label.rank(p, path, budget=6, strategy=strategy)
        assert len({r["row"] for r in ranked}) == 6
        assert sum(r["row"] in copies for r in ranked) <= 1, strategy


def test_typiclust_hybrid_ranks_as_typiclust_until_enough_samples_are_labelled(sky, pool):
    _, run = sky
    path, kinds = pool
    p = omnifuse.load(run)

    def rows(strategy, labelled=None):
        return [r["row"] for r in omnifuse.label.rank(p, path, 5, strategy, labelled=labelled)]

    assert rows("typiclust_hybrid") == rows("typiclust")  # nothing labelled yet: the cold start
    labelled = path.parent / "labelled_three.csv"  # beside the pool: its image paths are relative
    with path.open() as f:
        write_csv(labelled, list(csv.DictReader(f))[:3])  # 3 labelled of 2 classes: 1.5 a class
    assert rows("typiclust_hybrid:1", labelled) == rows("hybrid")
    assert rows("typiclust_hybrid", labelled) == rows("typiclust", labelled)  # fewer than 9 a class
    assert rows("hybrid") != rows("typiclust")


def test_kcenter_keeps_away_from_labelled_samples(sky, pool):
    _, run = sky
    path, kinds = pool
    copies = np.flatnonzero(kinds == "copy") + 2
    p = omnifuse.load(run)
    free = [r["row"] for r in omnifuse.label.rank(p, path, budget=len(kinds), strategy="kcenter")]
    # once the ambiguous row is labelled, its copies are picked last (they sit at distance 0)
    labelled = path.parent / "labelled.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    write_csv(labelled, [rows[copies[0] - 2]])
    kept = [r["row"] for r in omnifuse.label.rank(p, path, len(kinds), "kcenter", labelled=labelled)]
    assert set(kept[-len(copies) :]) == {int(c) for c in copies}
    assert free != kept


def test_disagreement_ranks_rows_whose_modalities_conflict_first(sky, pool):
    _, run = sky
    path, kinds = pool
    conflicts = {int(line) for line in (np.flatnonzero(kinds == "conflict") + 2)}
    ranked = omnifuse.label.rank(run, path, budget=6, strategy="disagreement")
    assert sum(r["row"] in conflicts for r in ranked) >= 5


def test_scores_on_known_values():
    assert margin_scores(np.array([[0.5, 0.5, 0], [1.0, 0.0, 0], [0.7, 0.2, 0.1]])) == pytest.approx(
        [1, 0, 0.5]
    )
    same = np.array([[0.9, 0.1]])
    other = np.array([[0.1, 0.9]])
    js = disagreement_scores([same, other], [np.ones(1), np.ones(1)])
    expected = 0.9 * np.log(0.9 / 0.5) + 0.1 * np.log(0.1 / 0.5)
    assert js == pytest.approx([expected])
    assert disagreement_scores([same, other], [np.ones(1), np.zeros(1)]) == pytest.approx(
        [0.0]
    )  # one head only
    assert disagreement_scores([same, same], [np.ones(1), np.ones(1)]) == pytest.approx([0.0], abs=1e-9)
    points = np.array([[0.0, 0], [0, 0.1], [10, 0], [0, 10]])
    order, dist = kcenter_order(points, 3)
    assert set(order.tolist()) == {2, 3} | {order[2]} and order[2] in (0, 1)
    assert dist[0] >= dist[1] >= dist[2]


def test_cli_writes_a_queue_that_is_valid_data_once_labelled(sky, pool, tmp_path):
    root, run = sky
    path, _ = pool
    out = tmp_path / "queue" / "next.csv"
    result = CliRunner().invoke(
        app,
        [
            "label",
            "next",
            str(run),
            "--pool",
            str(path),
            "--budget",
            "5",
            "--strategy",
            "entropy",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    with out.open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 and [r["_rank"] for r in rows] == ["1", "2", "3", "4", "5"]
    assert {"image", "text", "size", "_row", "_score", "_guess", "_p_moon", "_p_sun"} <= set(rows[0])
    # paths were rebased on the queue's folder: they still name the pool's images
    for row in rows:
        if row["image"]:
            assert (out.parent / row["image"]).resolve().is_file()
    labelled = tmp_path / "labelled.csv"
    write_csv(
        labelled,
        [
            dict(r, image=str((out.parent / r["image"]).resolve()) if r["image"] else "", label=r["_guess"])
            for r in rows
        ],
        ("image", "text", "size", "label"),
    )
    assert (
        len(
            load_csv(labelled, "label", test_fraction=0.4, val_fraction=0.0, allow_outside_paths=True)[
                "train"
            ]
        )
        >= 1
    )


def test_a_folder_pool_is_read_like_a_data_folder(sky, tmp_path):
    root, run = sky
    rng = np.random.default_rng(3)
    folder = tmp_path / "pool"
    (folder / "a").mkdir(parents=True)
    for i, cls in enumerate(["sun", "moon", "sun"]):
        row = sample(tmp_path, f"f{i}", cls, cls, None, rng)
        (folder / "a" / f"f{i}.png").write_bytes((tmp_path / row["image"]).read_bytes())
        (folder / "a" / f"f{i}.txt").write_text(row["text"])
    (folder / "only_text.txt").write_text("dark cold night")
    ranked = omnifuse.label.rank(run, folder, budget=10, strategy="margin")
    assert sorted(r["row"] for r in ranked) == ["a/f0", "a/f1", "a/f2", "only_text"]
    guesses = {r["row"]: r["guess"] for r in ranked}
    assert guesses["a/f0"] == "sun" and guesses["a/f1"] == "moon"


def test_mistakes_name_what_was_received(sky, pool, tmp_path):
    root, run = sky
    path, _ = pool
    runner = CliRunner()
    args = ["label", "next", str(run), "--pool", str(path), "--budget", "3"]
    for extra, message in (
        (["--strategy", "smart"], "Received: 'smart'"),
        (["--budget", "0"], "--budget of at least 1"),
    ):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code != 0 and message in str(result.exception)
    wrong = tmp_path / "wrong.csv"
    write_csv(wrong, [{"photo": "x.png", "words": "hi"}], ("photo", "words"))
    with pytest.raises(
        OmnifuseError, match=r"columns named after the run's modalities.*Received: .*photo, words"
    ):
        omnifuse.label.rank(run, wrong, 2)
    missing = tmp_path / "missing.csv"
    write_csv(missing, [{"image": "imgs/nope.png", "text": "hi", "size": "1"}])
    with pytest.raises(OmnifuseError, match=r"line 2, column 'image': file not found: 'imgs/nope.png'"):
        omnifuse.label.rank(run, missing, 2)
    with pytest.raises(OmnifuseError, match="Unknown task 'colour'"):
        omnifuse.label.rank(run, path, 2, task="colour")


def _blobs(rng, sizes=(40, 25, 10), outliers_per_blob=3):
    """Well-separated 2-d blobs, each a tight core and a few far-flung members; returns points and blob ids."""
    points, blob, core = [], [], []
    for b, n in enumerate(sizes):
        centre = np.array([30.0 * b, 0.0])
        points.append(centre + rng.normal(0, 0.3, (n, 2)))
        points.append(centre + rng.normal(0, 4.0, (outliers_per_blob, 2)))
        blob += [b] * (n + outliers_per_blob)
        core += [True] * n + [False] * outliers_per_blob
    return np.concatenate(points), np.array(blob), np.array(core)


def test_typiclust_picks_a_typical_sample_of_each_uncovered_cluster_largest_first():
    x, blob, core = _blobs(np.random.default_rng(0))
    order, typicality = typiclust_order(x, budget=3, seed=0)
    assert list(blob[order]) == [0, 1, 2]  # one per blob, largest blob first
    assert core[order].all()  # the dense core of each blob, not its far-flung members
    assert np.all(typicality > 0)
    assert not core[kcenter_order(x, 3)[0]].all()  # k-center, for contrast, starts at an extreme point


def test_typiclust_skips_clusters_the_labelled_samples_cover():
    x, blob, _ = _blobs(np.random.default_rng(1))
    labelled = x[blob == 0][:2]
    order, _ = typiclust_order(x, budget=2, labelled=labelled, seed=0)
    assert sorted(blob[order]) == [1, 2]


def test_badge_reads_the_input_of_the_task_s_output_layer(sky):
    _, run = sky
    p = omnifuse.load(run)
    task = next(iter(p.tasks))
    sub = last_input_model(p.model, task)
    layer = {layer.name: layer for layer in p.model.layers}.get(f"{task}_logits") or p.model.get_layer(task)
    assert sub is not None and sub.outputs[0].shape[-1] == layer.kernel.shape[0]
    assert last_input_model(p.model, "no_such_task") is None


def _badge_reference(h, probs, budget, seed):
    """BADGE spelt out: the gradient embeddings built, k-means++ seeding on them with the same draws."""
    a = probs.copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    g = (a[:, :, None] * h[:, None, :]).reshape(len(h), -1)
    rng = np.random.default_rng(seed)
    picks = [int(np.argmax((g**2).sum(1)))]
    while len(picks) < budget:
        d = ((g[:, None, :] - g[picks][None]) ** 2).sum(2).min(1)
        d[picks] = 0.0
        picks.append(int(rng.choice(len(g), p=d / d.sum())))
    return picks


def test_badge_draws_as_k_means_plus_plus_on_the_gradient_embeddings_without_building_them():
    rng = np.random.default_rng(3)
    h = rng.normal(size=(60, 5))
    probs = rng.dirichlet(np.ones(4), size=60)
    order, scores = badge_order(h, probs, budget=12, seed=7)
    assert order.tolist() == _badge_reference(h, probs, 12, 7)
    assert len(set(order.tolist())) == 12 and np.all(scores > 0)


def test_badge_asks_for_unsure_samples_and_for_at_most_one_sure_one():
    rng = np.random.default_rng(4)
    h = rng.normal(size=(200, 8))
    probs = np.zeros((200, 3))
    probs[np.arange(200), rng.integers(0, 3, 200)] = 1.0  # 180 samples the model is sure of: g = 0
    unsure = np.arange(180, 200)
    probs[unsure] = rng.dirichlet(np.ones(3), size=20)
    order, _ = badge_order(h, probs, budget=15, seed=0)
    assert order[0] in unsure  # the longest gradient first
    assert np.isin(order, unsure).sum() >= 14  # every sure sample sits at g = 0: one of them at most
