"""The simulated labelling loop and the label-noise audit benchmark (omnifuse/label/simulate.py,
omnifuse/bench/loop.py, omnifuse/bench/loop_report.py), on tiny synthetic features: no data set is read."""

import json

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from omnifuse.bench import loop, loop_report
from omnifuse.bench.report import update_results
from omnifuse.config import load_config, presets
from omnifuse.errors import OmnifuseError
from omnifuse.label import simulate as sim
from omnifuse.label.audit import audit, find_issues


def _blobs(n, classes=4, dim=6, spread=0.6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    y = rng.integers(0, classes, n)
    return centres[y] + rng.normal(0, spread, (n, dim)), y


@pytest.fixture(autouse=True)
def one_thread():
    """BLAS / OpenMP on one thread: the tiny fits and k-means here only lose time to thread start-up and spinning."""
    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def data():
    x, y = _blobs(600)  # pool and test drawn in one go (same centres)
    pool, test = sim.standardise(
        {"a": x[:400], "b": x[:400, ::-1] + 0.1}, {"a": x[400:], "b": x[400:, ::-1] + 0.1}
    )
    xt, yt = test, y[400:]
    return {"pool": pool, "labels": y[:400], "test": xt, "test_labels": yt}


def test_every_strategy_reveals_a_batch_a_round_from_the_same_seeded_start(data):
    args = (data["pool"], data["labels"], data["test"], data["test_labels"])
    strategies = [*sim.STRATEGIES, "typiclust_hybrid:3"]
    curves = {s: sim.simulate(*args, s, seed=1, rounds=2, start=0.02, batch=0.05) for s in strategies}
    for s, curve in curves.items():
        assert [p["labels"] for p in curve] == [8, 28, 48], s
        assert all(0.0 <= p["accuracy"] <= 1.0 for p in curve)
    # the start is the same for every strategy of a seed (same head, same accuracy), another for another seed
    assert len({c[0]["accuracy"] for c in curves.values()}) == 1
    assert not np.array_equal(sim.start_set(400, 8, 1), sim.start_set(400, 8, 2))
    # separable blobs: 48 labels are plenty
    assert curves["random"][-1]["accuracy"] > 0.9


def test_a_single_revealed_class_predicts_that_class_and_missing_classes_get_zero():
    head = sim.Head(5).fit(np.zeros((3, 2)), np.array([2, 2, 2]))
    assert np.array_equal(head.predict_proba(np.ones((4, 2))).argmax(1), [2, 2, 2, 2])
    x, y = _blobs(60, classes=3)
    probs = sim.Head(5).fit(x, y).predict_proba(x)
    assert probs.shape == (60, 5) and np.allclose(probs[:, 3:], 0) and np.allclose(probs.sum(1), 1)


def test_choose_asks_for_the_least_sure_and_the_farthest_samples():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    emb = np.array([[0.0], [1.0], [2.0], [10.0]])
    assert sim.choose("margin", probs, emb, emb[:0], 2, 0).tolist() == [3, 1]
    assert sim.choose("entropy", probs, emb, emb[:0], 1, 0).tolist() == [3]
    assert sim.choose("kcenter", probs, emb, np.array([[10.0]]), 1, 0).tolist() == [0]
    # the labelled sample covers the cluster at 10; of the one at 0-2, the middle sample is the most typical
    assert sim.choose("typiclust", probs, emb, np.array([[10.0]]), 1, 0).tolist() == [1]
    with pytest.raises(OmnifuseError, match="two or more modalities"):
        sim.choose("disagreement", probs, emb, emb[:0], 1, 0, heads=[probs], present=[np.ones(4)])
    with pytest.raises(OmnifuseError, match="Expected a strategy"):
        sim.choose("oracle", probs, emb, emb[:0], 1, 0)


def test_typiclust_hybrid_switches_from_typical_to_uncertain_samples_at_k_labels_a_class():
    probs = np.array([[0.9, 0.1], [0.55, 0.45], [0.7, 0.3], [0.5, 0.5]])
    emb = np.array([[0.0], [1.0], [2.0], [10.0]])
    three = np.array([[10.0], [10.1], [9.9]])  # 3 labelled among 2 classes: 1.5 a class
    typical = sim.choose("typiclust", probs, emb, three, 1, 0).tolist()
    uncertain = sim.choose("hybrid", probs, emb, three, 1, 0).tolist()
    assert typical != uncertain
    assert sim.choose("typiclust_hybrid:2", probs, emb, three, 1, 0).tolist() == typical  # below 2 a class
    assert (
        sim.choose("typiclust_hybrid:1", probs, emb, three, 1, 0).tolist() == uncertain
    )  # at 1 a class or more
    assert (
        sim.choose("typiclust_hybrid", probs, emb, three, 1, 0).tolist() == typical
    )  # the default, 9 a class
    for bad in ("typiclust_hybrid:0", "typiclust_hybrid:x", "margin:3"):
        with pytest.raises(OmnifuseError, match=f"Received: '{bad}'"):
            sim.choose(bad, probs, emb, three, 1, 0)


def test_flipped_labels_are_counted_and_pairs_only_swap_partners():
    y = np.repeat(np.arange(6), 50)
    noisy, flipped = sim.flip_labels(y, 0.1, seed=0)
    assert len(flipped) == 30 and (noisy[flipped] != y[flipped]).all()
    assert np.array_equal(np.flatnonzero(noisy != y), flipped)
    noisy, flipped = sim.flip_labels(y, 0.1, seed=0, pairs=[(0, 1), (4, 5)])
    partner = {0: 1, 1: 0, 4: 5, 5: 4}
    assert len(flipped) == 30 and all(noisy[i] == partner[y[i]] for i in flipped)
    assert sim.precision_recall(np.array([1, 2, 3, 4]), np.array([2, 4, 6])) == {
        "flagged": 4,
        "precision": 0.5,
        "recall": 2 / 3,
    }


def test_confident_learning_on_out_of_fold_probabilities_finds_flipped_labels():
    x, y = _blobs(500, spread=0.5)
    noisy, flipped = sim.flip_labels(y, 0.08, seed=3)
    probs = sim.out_of_fold(x, noisy, folds=4)
    assert probs.shape == (500, 4) and np.allclose(probs.sum(1), 1)
    flagged = find_issues(probs, noisy, "off_diagonal")[0]
    scores = sim.precision_recall(flagged, flipped)
    assert scores["recall"] > 0.8 and scores["precision"] > 0.8


def test_every_labelling_benchmark_names_a_preset_and_valid_overrides():
    found = loop.load_labelling()
    assert {"label-loop-fsdd", "label-loop-cifar10", "label-loop-imdb", "label-audit-cifar10"} <= set(found)
    for name, spec in found.items():
        assert spec["preset"] in presets(), name
        load_config(spec["preset"], spec["overrides"])  # an unknown key or a bad value raises
        if spec["kind"] == "label-loop":
            assert "random" in spec["strategies"], name  # every loop is measured beside random


def test_a_labelling_table_with_a_mistake_is_named(tmp_path, monkeypatch):
    path = tmp_path / "suites.toml"
    monkeypatch.setattr(loop, "SUITES_FILE", path)
    path.write_text('[loops.x]\npreset = "fsdd"\nstrategy = ["random"]\n')
    with pytest.raises(OmnifuseError, match="Unknown key 'strategy' in \\[loops.x\\]"):
        loop.load_labelling()
    path.write_text('[loops.x]\npreset = "fsdd"\nstrategies = ["oracle"]\n')
    with pytest.raises(OmnifuseError, match=r"In \[loops.x\] of suites.toml: Expected a strategy.*'oracle'"):
        loop.load_labelling()


def _fake_features(spec, data_dir):
    x, y = _blobs(300, classes=3)
    pool, test = sim.standardise({"image": x[:200]}, {"image": x[200:]})
    texts = np.array([f"review {i}" for i in range(200)], object)
    return {
        "pool": pool,
        "labels": y[:200],
        "masks": {"image": np.ones(200)},
        "texts": {"text": texts},
        "test": test,
        "test_labels": y[200:],
        "classes": ["cat", "dog", "truck"],
        "encoders": {"image": "tiny (synthetic)"},
    }


def test_the_loop_and_the_audit_write_records_curves_and_their_own_tables(tmp_path, monkeypatch):
    specs = {
        "loop-x": {"kind": "label-loop", "preset": "mnist", "overrides": [], "pool": ["train"], "c": 1.0,
                   "strategies": ["random", "margin", "typiclust_hybrid:1"], "start": 0.05, "batch": 0.05,
                   "rounds": 2},
        "audit-x": {"kind": "label-audit", "preset": "mnist", "overrides": [], "pool": ["train"], "c": 1.0,
                    "folds": 3, "top": 5, "noise": [{"label": "pairs", "fraction": 0.1, "pairs": [["cat", "dog"]]}]},
    }  # fmt: skip
    monkeypatch.setattr(loop, "load_labelling", lambda: specs)
    monkeypatch.setattr(loop, "_features", _fake_features)
    results = tmp_path / "results"
    records = loop.run_labelling("loop-x", seeds=2, results=results, echo=lambda s: None)
    assert len(records) == 6 and {r["label"] for r in records} == {"random", "margin", "typiclust_hybrid:1"}
    assert len(list((results / "loop-x").glob("*.json"))) == 6
    assert (
        len(list((results / "loop-x").glob("*-typiclust_hybrid-1-seed1.json"))) == 1
    )  # no colon in a file name
    saved = json.loads(next((results / "loop-x").glob("*-margin-seed1.json")).read_text())
    assert [p["labels"] for p in saved["curve"]] == [10, 20, 30] and saved["kind"] == "label-loop"
    audit = loop.run_labelling("audit-x", seeds=1, results=results, echo=lambda s: None)[0]
    assert audit["flipped"] == 20 and set(audit["results"]) == {"omnifuse", "omnifuse-pbnr", "cleanlab"}
    assert len(audit["top"]) <= 5 and all(t["excerpt"].startswith("review") for t in audit["top"])
    md = (tmp_path / "RESULTS.md").read_text()
    assert (results / "loop-x" / loop_report.PLOT).stat().st_size > 1000
    assert "#### loop-x" in md and "![loop-x](results/loop-x/curves.png)" in md
    # the loop reaches 15% of the pool: each strategy's labels to reach random's accuracy at 10%, and the verdict
    assert "labels to reach random's 10% accuracy" in md and "Target (<= 5% of the labels): **" in md
    assert "| pairs | 1 | 20 |" in md and "#### audit-x" in md and "omnifuse (prune by noise rate)" in md
    # the training table leaves the labelling records out
    assert "| loop-x |" not in md.split(loop_report.BEGIN)[0]
    # the region is rewritten, not appended again
    update_results(results)
    assert (tmp_path / "RESULTS.md").read_text().count(loop_report.BEGIN) == 1


def test_the_target_compares_each_strategy_with_random_at_ten_percent():
    def rec(label, seed, accs):
        curve = [
            {"labels": 10 * (i + 1), "fraction": 0.01 * (i + 1), "accuracy": a} for i, a in enumerate(accs)
        ]
        return {"label": label, "seed": seed, "curve": curve}

    ramp = [0.1 * i for i in range(10)]  # random: 0.9 at 10%
    fast = [min(1.0, 0.25 * i) for i in range(10)]  # 0.9 from the 5th point on (5%)
    found = loop_report.target([rec("random", 0, ramp), rec("margin", 0, fast), rec("kcenter", 0, ramp)])
    assert found["goal"] == pytest.approx(0.9) and found["best"] == "margin" and found["met"]
    assert found["rows"]["margin"]["mean"] == (0.05, 50) and found["rows"]["kcenter"]["mean"] == (0.1, 100)
    slow = [0.05 * i for i in range(10)]
    assert not loop_report.target([rec("random", 0, ramp), rec("margin", 0, slow)])["met"]


def test_label_page_records_get_their_own_table(tmp_path):
    from omnifuse.bench.labelpage import _stats

    stats = _stats([0.001 * k for k in range(1, 101)])  # 1..100 ms
    assert stats == {"median": 50.5, "p95": 96.0, "max": 100.0}
    record = {"name": "label-page", "label": "run-x", "kind": "label-page", "started": "2026-12-06T08:00:00",
              "clicks": 100, "answer_ms": stats, "click_ms": stats, "load_average": [1.5, 2.0],
              "kill": {"acknowledged": 130, "kept_after_restart": 130, "lost": 0}}  # fmt: skip
    results = tmp_path / "results"
    (results / "label-page").mkdir(parents=True)
    (results / "label-page" / "x.json").write_text(json.dumps(record))
    update_results(results)
    md = (tmp_path / "RESULTS.md").read_text()
    assert "| run-x | 100 | 50.5 / 96 / 100 | 50.5 / 96 / 100 | 130 → 130 (0) | 1.5 / 2 |" in md
    assert "| label-page |" not in md.split(loop_report.BEGIN)[0]  # not a training run


def test_pruning_by_noise_rate_also_flags_rows_no_class_is_confident_about():
    # rows 3 and 4, labelled 1, lean to 0 without passing either threshold: off the diagonal neither is flagged;
    # the calibrated joint estimates 1.5 -> 2 rows labelled 1 that are 0, the two with the largest p(0) - p(1)
    probs = np.array([[0.95, 0.05], [0.85, 0.15], [0.9, 0.1], [0.6, 0.4], [0.55, 0.45], *[[0.1, 0.9]] * 3])
    labels = np.array([0, 0, 1, 1, 1, 1, 1, 1])
    assert find_issues(probs, labels, "off_diagonal")[0].tolist() == [2]
    pruned, suggested, scores = find_issues(probs, labels, "prune_by_noise_rate")
    assert pruned.tolist() == [2, 3] and suggested.tolist() == [0, 0] and scores == pytest.approx([0.8, 0.2])
    x, y = _blobs(500, spread=1.6, seed=2)
    noisy, flipped = sim.flip_labels(y, 0.1, seed=1)
    probs = sim.out_of_fold(x, noisy, folds=4)
    a = sim.precision_recall(find_issues(probs, noisy, "off_diagonal")[0], flipped)
    b = sim.precision_recall(find_issues(probs, noisy, "prune_by_noise_rate")[0], flipped)
    assert b["recall"] >= a["recall"] and b["precision"] > 0.5
    with pytest.raises(OmnifuseError, match="Expected method"):
        find_issues(probs, noisy, "vote")
    with pytest.raises(OmnifuseError, match="Expected method"):  # before any fold model trains
        audit("no-such.csv", "label", method="vote")


def test_pruning_by_noise_rate_never_flags_a_row_the_model_agrees_with():
    # class 1: one row like class 0 (confidently), two unsure rows that lean to 1, two sure 1s. The joint counts 1
    # of 3 confident rows as 0, calibrated to the 5 rows of class 1: 1.67 -> 2 rows to flag, but only one row of
    # class 1 looks like 0; the next by p(0) - p(1) is a row the model calls 1
    probs = np.array(
        [[0.95, 0.05], [0.85, 0.15], [0.9, 0.1], [0.45, 0.55], [0.45, 0.55], [0.0, 1.0], [0.0, 1.0]]
    )
    labels = np.array([0, 0, 1, 1, 1, 1, 1])
    pruned, suggested, _ = find_issues(probs, labels, "prune_by_noise_rate")
    assert pruned.tolist() == [2] and suggested.tolist() == [0]


def test_the_estimated_counts_keep_each_given_labels_total():
    from omnifuse.label.confident import _whole_rows

    # rounding each cell alone would give rows summing to 6 (1.5 -> 2 twice) and to 0 (0.4, 0.4, 0.2 -> 0, 0, 0)
    out = _whole_rows(np.array([[1.5, 1.5, 2.0], [0.4, 0.4, 0.2], [3.0, 0.0, 0.0]]))
    assert out.tolist() == [[2, 1, 2], [1, 0, 0], [3, 0, 0]] and out.dtype == np.int64


def test_kcenter_distances_to_labelled_samples_match_the_direct_computation():
    from omnifuse.label.next import _nearest

    rng = np.random.default_rng(4)
    x, centres = rng.normal(size=(300, 7)), rng.normal(size=(40, 7))
    direct = np.sqrt(((x[:, None] - centres[None]) ** 2).sum(-1)).min(1)
    assert np.allclose(_nearest(x, centres, chunk=64), direct, atol=1e-9)
    assert np.allclose(_nearest(centres, centres), 0.0, atol=1e-6)  # no NaN where a distance rounds below 0


def test_the_keras_head_runs_the_loop_as_the_logistic_one_does(data, monkeypatch):
    import functools

    args = (data["pool"], data["labels"], data["test"], data["test_labels"])
    monkeypatch.setitem(sim.HEADS, "keras", functools.partial(sim.KerasHead, epochs=40))  # a test's budget
    keras_curve = sim.simulate(*args, "margin", seed=0, rounds=1, start=0.06, batch=0.06, head="keras")
    logistic = sim.simulate(*args, "margin", seed=0, rounds=1, start=0.06, batch=0.06)
    assert [p["labels"] for p in keras_curve] == [p["labels"] for p in logistic] == [24, 48]
    assert keras_curve[-1]["accuracy"] > 0.9  # separable blobs: the dense softmax layer learns them too
    with pytest.raises(OmnifuseError, match="Expected a head in logistic, keras"):
        sim.simulate(*args, "margin", head="forest")


def _reviews(n, seed):
    """Two-class texts: each review draws words from its class's words and from words both classes use."""
    rng = np.random.default_rng(seed)
    words = [["superb", "moving", "brilliant", "loved"], ["dull", "awful", "boring", "hated"]]
    shared = ["film", "plot", "actor", "scene", "the", "was", "story"]
    y = rng.integers(0, 2, n)
    texts = [" ".join(rng.choice(words[c], 2).tolist() + rng.choice(shared, 6).tolist()) for c in y]
    return np.array(texts, object), y


def test_tfidf_features_are_fitted_on_the_pool_and_normalised():
    pool, _ = _reviews(120, 0)
    (x, x_other), embedding = sim.tfidf_features(pool, ["superb film", "zzz qqq"], dims=8)
    assert x.format == "csr" and x.shape[0] == 120 and x_other.shape == (2, x.shape[1])
    assert np.allclose(np.sqrt(x.multiply(x).sum(1)), 1.0)  # rows L2-normalised
    assert x_other[1].nnz == 0  # words the pool never had have no column
    assert embedding.shape == (120, 8) and np.allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def test_a_tfidf_loop_fits_its_head_on_the_vectors_and_spreads_over_their_embedding(tmp_path, monkeypatch):
    from omnifuse.bench import frozen

    pool_texts, y = _reviews(200, 1)
    test_texts, y_test = _reviews(100, 2)

    def splits(preset, overrides, data_dir, encode=True):  # what split_features returns without encoding
        assert not encode  # a tfidf loop never runs the preset's encoders

        def split(texts, labels):
            return {"x": {"text": np.zeros((len(labels), 3), np.float32)}, "y": labels,
                    "texts": {"text": texts}, "masks": {"text": np.ones(len(labels), np.float32)}}  # fmt: skip

        return {"splits": {"train": split(pool_texts, y), "test": split(test_texts, y_test)},
                "classes": ["neg", "pos"], "task": "label", "encoders": {"text": "minilm"}}  # fmt: skip

    monkeypatch.setattr(frozen, "split_features", splits)
    spec = {"kind": "label-loop", "preset": "imdb-minilm-frozen", "overrides": [], "pool": ["train"], "c": 100.0,
            "features": "tfidf", "strategies": ["random", "margin", "kcenter", "hybrid"], "start": 0.05,
            "batch": 0.05, "rounds": 2}  # fmt: skip
    monkeypatch.setattr(loop, "load_labelling", lambda: {"loop-t": spec})
    seen = []
    choose = sim.choose
    monkeypatch.setattr(sim, "choose", lambda s, p, e, le, *a: seen.append(e) or choose(s, p, e, le, *a))
    records = loop.run_labelling("loop-t", seeds=1, results=tmp_path / "results", echo=lambda s: None)
    assert {r["label"] for r in records} == {"random", "margin", "kcenter", "hybrid"}
    assert all(r["curve"][-1]["accuracy"] > 0.9 for r in records)  # the class words decide: 30 labels suffice
    assert records[0]["encoders"] == {"text": loop.TFIDF_ENCODER} and "tf-idf" in records[0]["head"]
    # the strategies are handed the dense SVD embedding (its width capped by the vocabulary's size - 1), never
    # the sparse vectors the head reads
    (vectors,), embedding = sim.tfidf_features(pool_texts)
    assert seen and all(isinstance(e, np.ndarray) and e.shape[1] == vectors.shape[1] - 1 for e in seen)
    # ... its rows: the unlabelled reviews' rows of the pool's embedding
    gaps = np.linalg.norm(seen[0][:, None, :] - embedding[None, :, :], axis=2).min(1)
    assert len(seen[0]) == 190 and np.allclose(gaps, 0.0, atol=1e-5)


def test_badge_reads_the_heads_input_and_refuses_a_separate_embedding(data):
    args = (data["pool"], data["labels"], data["test"], data["test_labels"])
    with pytest.raises(OmnifuseError, match="no separate embedding for the 'badge' strategy"):
        sim.simulate(*args, "badge", rounds=1, embedding=data["pool"])


@pytest.mark.parametrize(
    "table, message",
    [
        ('features = "bert"', "Expected features in \\[loops.x\\].*'bert'"),
        ('features = "tfidf"\nhead = "keras"', "Expected the logistic head"),
        ('features = "tfidf"\nstrategies = ["random", "badge"]', "Expected no 'badge'"),
        ("pseudo = -1", "Expected pseudo in \\[loops.x\\] of suites.toml as a number >= 0"),
        ("pseudo = true", "Expected pseudo in \\[loops.x\\] of suites.toml as a number >= 0"),
        (
            "pseudo = 2\npseudo_weight = 0",
            "Expected pseudo_weight in \\[loops.x\\] of suites.toml as a number > 0",
        ),
        (
            'pseudo = 2\nhead = "keras"',
            "Expected the logistic head in \\[loops.x\\] of suites.toml: pseudo-labels",
        ),
    ],
)
def test_a_loop_with_features_it_cannot_use_is_named(tmp_path, monkeypatch, table, message):
    path = tmp_path / "suites.toml"
    monkeypatch.setattr(loop, "SUITES_FILE", path)
    path.write_text(f'[loops.x]\npreset = "imdb-minilm-frozen"\n{table}\n')
    with pytest.raises(OmnifuseError, match=message):
        loop.load_labelling()


def test_confident_rows_take_each_guessed_class_most_confident_rows_in_equal_shares():
    probs = np.array(
        [[0.99, 0.01], [0.6, 0.4], [0.95, 0.05], [0.3, 0.7], [0.9, 0.1], [0.2, 0.8], [0.45, 0.55]]
    )
    rows, guess = sim.confident_rows(probs, 4)
    # class 0 is guessed four times and would fill all four places by confidence alone; each class gets two
    assert rows.tolist() == [0, 2, 5, 3] and guess.tolist() == [0, 0, 1, 1]
    rows, guess = sim.confident_rows(probs, 0)
    assert len(rows) == 0 and len(guess) == 0


def test_self_training_adds_the_pools_confident_guesses_at_their_weight(monkeypatch):
    x, y = _blobs(300, classes=3, spread=1.5)
    idx = np.arange(12)
    fits = []
    fit = sim.Head.fit

    def spy(self, xs, ys, sample_weight=None):
        fits.append((len(ys), None if sample_weight is None else sample_weight.copy()))
        return fit(self, xs, ys, sample_weight)

    monkeypatch.setattr(sim.Head, "fit", spy)
    plain = sim.self_trained(lambda: sim.Head(3), x, y, idx, ratio=0.0)
    assert len(fits) == 1 and fits[0] == (12, None)
    fits.clear()
    model = sim.self_trained(lambda: sim.Head(3), x, y, idx, ratio=3.0, weight=0.25)
    # the plain fit, then two refits on the 12 labels + 36 guesses (12 a class) at weight 0.25
    assert [n for n, _ in fits] == [12, 48, 48]
    for _, w in fits[1:]:
        assert np.array_equal(w, np.r_[np.ones(12), np.full(36, 0.25)])
    # both heads are trained heads over the three classes; the guesses are the model's, not the hidden labels
    assert model.predict_proba(x).shape == (300, 3) and plain.predict_proba(x).shape == (300, 3)


def test_a_loop_with_pseudo_labels_records_them_and_uses_them_every_round(data, monkeypatch):
    args = (data["pool"], data["labels"], data["test"], data["test_labels"])
    seen = []
    trained = sim.self_trained
    monkeypatch.setattr(sim, "self_trained", lambda *a, **k: seen.append(a[4:]) or trained(*a, **k))
    curve = sim.simulate(
        *args, "margin", seed=0, rounds=2, start=0.02, batch=0.05, pseudo=2.0, pseudo_weight=0.3
    )
    assert [p["labels"] for p in curve] == [8, 28, 48] and seen == [(2.0, 0.3)] * 3
    with pytest.raises(OmnifuseError, match="Expected the logistic head for pseudo-labels"):
        sim.simulate(*args, "margin", rounds=1, head="keras", pseudo=1.0)


def test_split_features_without_encoding_gives_labels_and_texts_and_builds_no_model(tmp_path, monkeypatch):
    from fixtures import aclimdb_reviews, write_aclimdb

    from omnifuse.bench import frozen
    from omnifuse.model import builder

    write_aclimdb(tmp_path, n_per_class=10)

    def no_model(*a, **k):
        raise AssertionError("a tfidf loop must not build (or run) the preset's encoders")

    monkeypatch.setattr(builder, "build_model", no_model)
    found = frozen.split_features("imdb-minilm-frozen", [], str(tmp_path), encode=False)
    splits = found["splits"]
    assert found["classes"] == ["neg", "pos"] and found["encoders"] == {}
    test = splits["test"]
    assert test["x"] == {} and len(test["y"]) == 20 and np.array_equal(test["masks"]["text"], np.ones(20))
    # the test split's texts, labels in step with them
    written = {text: label for split, label, _, _, text in aclimdb_reviews(10) if split == "test"}
    assert sorted(test["texts"]["text"]) == sorted(written)
    assert [found["classes"][y] for y in test["y"]] == [written[t] for t in test["texts"]["text"]]
    assert sum(len(splits[s]["y"]) for s in ("train", "val")) == 20
