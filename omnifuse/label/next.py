"""Which unlabelled samples to label next: a trained run ranks a pool, by one of :data:`STRATEGIES`.

- ``random``: a seeded shuffle (the baseline every other strategy must beat);
- ``margin``: 1 - (p1 - p2), the gap between the two likeliest classes (uncertainty);
- ``entropy``: the entropy of the probabilities, in nats (uncertainty);
- ``kcenter``: greedy k-center on the fused embedding (the fusion layer's output): each pick is the sample
  farthest from every pick before it (and from the already ``labelled`` samples), so a batch covers the pool;
  the score is that distance when it was picked (diversity);
- ``hybrid``: the pool's embeddings in ``budget`` k-means clusters, the most uncertain (margin) sample of each,
  ranked by margin: uncertain, yet not ``budget`` near-copies of one confusing sample;
- ``typiclust``: for a small budget (the cold start, where uncertainty of a weak model points at its odd samples):
  the pool and the labelled samples in ``labelled + budget`` k-means clusters; each pick is the most typical sample
  (the densest: least mean distance to its nearest neighbours in its cluster) of the largest cluster no labelled
  sample or earlier pick covers yet (Hacohen, Dekel and Weinshall, "Active learning on a budget", ICML 2022);
- ``typiclust_hybrid``: ``typiclust`` while fewer than :data:`SWITCH_PER_CLASS` samples per class are labelled, then
  ``hybrid`` (the cold start covered by typical samples, then uncertainty once the model is worth asking, as Doucet
  et al., "Bridging diversity and uncertainty in active learning with self-supervised pre-training", 2023);
  ``typiclust_hybrid:K`` switches at K per class;
- ``badge``: uncertainty and diversity in one (Ash et al., "Deep batch active learning by diverse, uncertain gradient
  lower bounds", ICLR 2020): k-means++ seeding over each sample's gradient embedding, the gradient of the loss
  with the model's guess as label with respect to the output layer's weights, ``(p - onehot(guess)) x h`` (h: the
  output layer's input). Its length is large where the model is unsure, and k-means++ spreads the picks;
- ``disagreement``: how much the per-modality heads (``train.unimodal_loss`` > 0) disagree: the Jensen-Shannon
  divergence between the probabilities of the heads whose modality the sample has (0 with fewer than two).

>>> omnifuse.label.rank("runs/pets", "pool.csv", budget=50, strategy="hybrid")   # rows to label, best first
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.label.pool import Pool, predict_pool, read_pool, rebase
from omnifuse.names import mask_name, split_member, unimodal_outputs

STRATEGIES = (
    "random",
    "margin",
    "entropy",
    "kcenter",
    "hybrid",
    "typiclust",
    "typiclust_hybrid",
    "badge",
    "disagreement",
)
# typiclust_hybrid: labelled samples per class from which hybrid takes over from typiclust; chosen on a validation
# split of CIFAR-10's training images (``omnifuse bench label-loop-cifar10-val``, benchmarks/RESULTS.md), not on
# the test curves
SWITCH_PER_CLASS = 9
# hybrid's k-means: one k-means++ start where pool size x budget passes this (50,000 samples of 1,280 features in 500
# clusters take a minute and a half a start on 2 cores), three below it
ONE_START = 10_000_000
FUSION_LAYER = "fusion"
EMBEDDING = "__embedding"  # the fused embedding's key among the pool's outputs
LAST_INPUT = "__last_input"  # the output layer's input (badge's h) among the pool's outputs
RANK_COLUMNS = (
    "_rank",
    "_row",
    "_score",
    "_guess",
)  # ranking columns start with "_"; the labels CSV drops them


def parse_strategy(name: str) -> tuple[str, int | None]:
    """``name`` as (strategy, switch): ``"typiclust_hybrid:6"`` -> ("typiclust_hybrid", 6); other strategies take
    no suffix. An unknown name, or a bad suffix, is an error naming the valid ones."""
    base, _, suffix = str(name).partition(":")
    valid = f"{', '.join(STRATEGIES)} (typiclust_hybrid:K switches at K labelled samples per class)"
    if base not in STRATEGIES or (suffix and base != "typiclust_hybrid"):
        raise OmnifuseError(f"Expected a strategy in {valid}. Received: {name!r}")
    if not suffix:
        return base, None
    if not suffix.isdigit() or int(suffix) < 1:
        raise OmnifuseError(
            f"Expected K in typiclust_hybrid:K as a whole number of at least 1. Received: {name!r}"
        )
    return base, int(suffix)


def effective_strategy(strategy: str, labelled: int, classes: int) -> str:
    """The strategy that picks now: ``strategy`` (a name :func:`parse_strategy` accepts) without its suffix, and
    for ``typiclust_hybrid`` ``typiclust`` while fewer than its switch (K, or :data:`SWITCH_PER_CLASS`) times
    ``classes`` samples are ``labelled``, ``hybrid`` from then on."""
    base, switch = parse_strategy(strategy)
    if base != "typiclust_hybrid":
        return base
    return "typiclust" if labelled < (switch or SWITCH_PER_CLASS) * classes else "hybrid"


def margin_scores(probs: np.ndarray) -> np.ndarray:
    """1 - (p1 - p2) per sample: 1 when the two likeliest classes tie, 0 when one class has all the mass."""
    top = np.sort(probs, axis=1)[:, ::-1]
    return 1.0 - (top[:, 0] - top[:, 1]) if probs.shape[1] > 1 else np.zeros(len(probs))


def entropy_scores(probs: np.ndarray) -> np.ndarray:
    """The entropy of each row of probabilities, in nats (log of the number of classes at most)."""
    p = np.clip(probs, 1e-12, 1.0)
    return -(probs * np.log(p)).sum(axis=1)


def disagreement_scores(heads: list[np.ndarray], present: list[np.ndarray]) -> np.ndarray:
    """Jensen-Shannon divergence (nats) between the per-modality heads present for each sample.

    ``heads``: one (N, C) probability array per modality; ``present``: its (N,) presence mask."""
    probs, weight = np.stack(heads, 1), np.stack(present, 1).astype(np.float64)  # (N, M, C), (N, M)
    count = weight.sum(1)
    mix = (probs * weight[..., None]).sum(1) / np.maximum(count, 1)[:, None]
    each = (probs * (np.log(np.clip(probs, 1e-12, 1)) - np.log(np.clip(mix[:, None], 1e-12, 1)))).sum(2)
    js = (each * weight).sum(1) / np.maximum(count, 1)
    return np.where(count >= 2, js, 0.0)


def kcenter_order(
    embeddings: np.ndarray, budget: int, labelled: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy k-center: ``budget`` indices, each the farthest from the centres so far, and those distances.

    The centres start as ``labelled`` (embeddings of samples already labelled); without them, from the sample
    farthest from the pool's mean."""
    x = embeddings.astype(np.float64)
    if labelled is not None and len(labelled):
        dist = _nearest(x, labelled.astype(np.float64))
    else:
        dist = np.linalg.norm(x - x.mean(0), axis=1)
    picks, scores = [], []
    for _ in range(min(budget, len(x))):
        i = int(np.argmax(dist))
        picks.append(i)
        scores.append(float(dist[i]))
        dist = np.minimum(dist, np.linalg.norm(x - x[i], axis=1))
        dist[i] = -np.inf  # never picked twice, even where samples coincide
    return np.array(picks, np.int64), np.array(scores)


def _nearest(x: np.ndarray, centres: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Each row's distance to its nearest centre, as |x|^2 + |c|^2 - 2 x.c: (chunk, centres) at a time, never the
    (chunk, centres, dim) differences (gigabytes for a thousand labelled 1280-dimensional embeddings)."""
    out = np.empty(len(x))
    squared = (centres**2).sum(1)
    for s in range(0, len(x), chunk):
        part = x[s : s + chunk]
        d = (part**2).sum(1)[:, None] + squared[None] - 2.0 * part @ centres.T
        out[s : s + chunk] = np.sqrt(np.maximum(d.min(1), 0.0))
    return out


def hybrid_order(embeddings: np.ndarray, uncertainty: np.ndarray, budget: int, seed: int = 0) -> np.ndarray:
    """The most uncertain sample of each of ``budget`` k-means clusters, most uncertain first; where clusters
    are fewer than ``budget`` (a pool of copies), the next most uncertain samples fill the batch. The k-means takes
    the best of three seeded starts, or one on a large pool (:data:`ONE_START`)."""
    from sklearn.cluster import KMeans

    budget = min(budget, len(embeddings))
    if budget == 0:
        return np.zeros(0, np.int64)
    starts = 1 if len(embeddings) * budget > ONE_START else 3
    clusters = KMeans(n_clusters=budget, n_init=starts, random_state=seed).fit_predict(
        embeddings.astype(np.float64)
    )
    picks = [
        int(idx[np.argmax(uncertainty[idx])])
        for c in np.unique(clusters)
        for idx in [np.flatnonzero(clusters == c)]
    ]
    picks = sorted(picks, key=lambda i: -uncertainty[i])
    rest = [int(i) for i in np.argsort(-uncertainty, kind="stable") if i not in set(picks)]
    return np.array((picks + rest)[:budget], np.int64)


def badge_order(
    features: np.ndarray, probs: np.ndarray, budget: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """BADGE: ``budget`` indices picked by k-means++ seeding over the gradient embeddings ``g_i = a_i x h_i`` (``a_i
    = probs_i - onehot(argmax probs_i)``, ``h_i = features_i``), and each pick's squared distance to the nearest
    pick before it. The first pick is the longest embedding (the most informative alone), each next one drawn with
    probability proportional to that squared distance, so near-copies of a pick and confident samples (g = 0: all
    at one point) are rarely asked twice.

    The (N, classes x dim) embeddings are never built: ``|g_i - g_j|^2 = |a_i|^2 |h_i|^2 + |a_j|^2 |h_j|^2 - 2 (a_i .
    a_j)(h_i . h_j)``, one (N, dim) product a pick."""
    h = features.astype(np.float64)
    a = probs.astype(np.float64).copy()
    a[np.arange(len(a)), a.argmax(1)] -= 1.0
    length = (a**2).sum(1) * (h**2).sum(1)
    budget = min(budget, len(h))
    if budget == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    rng = np.random.default_rng(seed)
    first = int(np.argmax(length))
    picks, scores = [first], [float(length[first])]
    nearest = np.full(len(h), np.inf)
    picked = np.zeros(len(h), bool)
    picked[first] = True
    while len(picks) < budget:
        c = picks[-1]
        d = length + length[c] - 2.0 * (a @ a[c]) * (h @ h[c])
        nearest = np.minimum(nearest, np.maximum(d, 0.0))
        nearest[picked] = 0.0
        total = nearest.sum()
        if total > 0:
            i = int(rng.choice(len(h), p=nearest / total))
        else:  # every sample left coincides with a pick: any of them
            i = int(rng.choice(np.flatnonzero(~picked)))
        picks.append(i)
        scores.append(float(nearest[i]))
        picked[i] = True
    return np.array(picks, np.int64), np.array(scores)


def typiclust_order(
    embeddings: np.ndarray,
    budget: int,
    labelled: np.ndarray | None = None,
    seed: int = 0,
    neighbours: int = 20,
    max_clusters: int = 500,
) -> tuple[np.ndarray, np.ndarray]:
    """TypiClust: ``budget`` indices, each the most typical unpicked sample of the largest cluster with the fewest
    labelled samples and picks, and each pick's typicality (1 / mean distance to its ``neighbours`` nearest
    neighbours within its cluster, labelled samples included).

    The clusters: k-means over the pool and ``labelled`` together, ``len(labelled) + budget`` of them (at most
    ``max_clusters``, so a large labelled set does not split the pool into singletons)."""
    from sklearn.cluster import KMeans
    from sklearn.neighbors import NearestNeighbors

    x = embeddings.astype(np.float64)
    known = (
        np.zeros((0, x.shape[1])) if labelled is None else labelled.astype(np.float64).reshape(-1, x.shape[1])
    )
    budget = min(budget, len(x))
    if budget == 0:
        return np.zeros(0, np.int64), np.zeros(0)
    both = np.concatenate([known, x])
    k = max(1, min(len(known) + budget, max_clusters, len(both)))
    clusters = KMeans(n_clusters=k, n_init=1, random_state=seed).fit_predict(both)
    covered = np.bincount(clusters[: len(known)], minlength=k)
    own = clusters[len(known) :]
    typicality = np.zeros(len(x))
    for c in np.unique(own):
        members = np.flatnonzero(clusters == c)
        if len(members) < 2:
            typicality[own == c] = 0.0
            continue
        near = NearestNeighbors(n_neighbors=min(neighbours + 1, len(members))).fit(both[members])
        distances = near.kneighbors(x[own == c])[0][:, 1:]  # its own point, at distance 0, left out
        typicality[own == c] = 1.0 / (distances.mean(1) + 1e-12)
    left = np.bincount(own, minlength=k)
    picked = np.zeros(len(x), bool)
    picks = []
    for _ in range(budget):
        open_ = np.flatnonzero(left > 0)
        c = open_[np.lexsort((-left[open_], covered[open_]))[0]]  # fewest covering, then largest
        candidates = np.flatnonzero((own == c) & ~picked)
        i = int(candidates[np.argmax(typicality[candidates])])
        picks.append(i)
        picked[i] = True
        covered[c] += 1
        left[c] -= 1
    order = np.array(picks, np.int64)
    return order, typicality[order]


def embedding_model(model):
    """A model from ``model``'s inputs to its fused embedding (an ensemble's members' embeddings, concatenated).

    Built on the model's own inputs: a sub-model whose inputs are intermediate tensors would break the saving of
    the original model."""
    import keras

    names = [layer.name for layer in model.layers if split_member(layer.name)[0] == FUSION_LAYER]
    if not names:
        raise OmnifuseError(
            f"Expected a model with a '{FUSION_LAYER}' layer for the fused embedding. Received: layers "
            f"{', '.join(layer.name for layer in model.layers[-8:])} (...)"
        )
    outputs = []
    for name in sorted(names):
        out = model.get_layer(name).output
        outputs.append(
            out[0] if isinstance(out, (list, tuple)) else out
        )  # (fused, weights) for weighting fusions
    fused = outputs[0] if len(outputs) == 1 else keras.layers.Concatenate()(outputs)
    return keras.Model(model.inputs, {EMBEDDING: fused})


def last_input_model(model, task: str):
    """A model from ``model``'s inputs to the input of ``task``'s output layer (``<task>_logits`` where the head is
    scaled, else ``<task>``), under the key :data:`LAST_INPUT`; None where ``task`` has no such dense layer (an
    ensemble's averaged output), for which the fused embedding stands in."""
    import keras

    names = {layer.name: layer for layer in model.layers}
    layer = names.get(f"{task}_logits", names.get(task))
    if not isinstance(layer, keras.layers.Dense):
        return None
    return keras.Model(model.inputs, {LAST_INPUT: layer.input})


def rank(
    run: str | Path | Any,
    pool: str | Path | Pool,
    budget: int,
    strategy: str = "margin",
    task: str | None = None,
    labelled: str | Path | Pool | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The ``budget`` pool samples to label next, best first: one dict per sample with ``rank`` (1 = first),
    ``row`` (its line in the pool CSV, or stem in a folder), ``score`` (higher = more worth labelling),
    ``guess`` (the model's class), ``probabilities`` (class -> p) and ``cells`` (the pool row's values).

    ``run``: a run directory or a loaded :class:`~omnifuse.predictor.Predictor`; ``pool``: a CSV or folder of
    unlabelled samples (or a :class:`~omnifuse.label.pool.Pool`); ``task``: which task's probabilities (default:
    the run's first); ``labelled``: samples already labelled (a CSV or folder, as the pool), which ``kcenter``
    keeps away from and ``typiclust`` counts as covering their clusters (``typiclust_hybrid`` counts them to know
    when to switch: without them it starts cold, by typiclust). ``strategy``: one of :data:`STRATEGIES` (see the module docstring).
    """
    from omnifuse.predictor import Predictor

    base, _ = parse_strategy(strategy)
    if isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1:
        raise OmnifuseError(f"Expected a budget of at least 1 sample. Received: {budget!r}")
    predictor = run if isinstance(run, Predictor) else Predictor(run)
    task = task or next(iter(predictor.tasks))
    if task not in predictor.tasks:
        raise OmnifuseError(f"Unknown task {task!r}. This run's tasks: {', '.join(predictor.tasks)}")
    pool = pool if isinstance(pool, Pool) else read_pool(pool)
    heads = _unimodal_heads(predictor, task)
    if base == "disagreement" and len(heads) < 2:
        raise OmnifuseError(
            f"The 'disagreement' strategy needs per-modality heads: a model of two or more modalities trained "
            f"with train.unimodal_loss > 0. Received: run '{predictor.run_dir}' with outputs "
            f"{', '.join(predictor.model.output_names)}"
        )
    diverse = base in ("kcenter", "hybrid", "typiclust", "typiclust_hybrid")
    embed = embedding_model(predictor.model) if diverse else None
    if base == "badge":
        embed = last_input_model(predictor.model, task) or embedding_model(predictor.model)
    out = predict_pool(predictor, pool, embed)
    probs = out[task]
    budget = min(int(budget), len(pool))
    known = None
    if labelled is not None and base in ("kcenter", "typiclust", "typiclust_hybrid"):
        known_pool = labelled if isinstance(labelled, Pool) else read_pool(labelled)
        known = predict_pool(predictor, known_pool, embed)[EMBEDDING]
    base = effective_strategy(strategy, 0 if known is None else len(known), probs.shape[1])
    if base == "random":
        scores = np.random.default_rng(seed).random(len(pool))
        order = np.argsort(-scores, kind="stable")[:budget]
    elif base in ("margin", "entropy"):
        scores = margin_scores(probs) if base == "margin" else entropy_scores(probs)
        order = np.argsort(-scores, kind="stable")[:budget]
    elif base == "disagreement":
        scores = disagreement_scores(
            [out[name] for name in heads.values()], [out[mask_name(m)] for m in heads]
        )
        order = np.argsort(-scores, kind="stable")[:budget]
    elif base == "badge":
        order, picked = badge_order(out.get(LAST_INPUT, out.get(EMBEDDING)), probs, budget, seed)
        scores = np.zeros(len(pool))
        scores[order] = picked
    elif base in ("kcenter", "typiclust"):
        if base == "kcenter":
            order, picked = kcenter_order(out[EMBEDDING], budget, known)
        else:
            order, picked = typiclust_order(out[EMBEDDING], budget, known, seed)
        scores = np.zeros(len(pool))
        scores[order] = picked
    else:  # hybrid
        scores = margin_scores(probs)
        order = hybrid_order(out[EMBEDDING], scores, budget, seed)
    classes = predictor.tasks[task]
    return [
        {
            "rank": r + 1,
            "row": pool.rows[i],
            "score": float(scores[i]),
            "guess": classes[int(probs[i].argmax())],
            "probabilities": {c: float(p) for c, p in zip(classes, probs[i])},
            "cells": pool.cells[i],
        }
        for r, i in enumerate(order.tolist())
    ]


def _unimodal_heads(predictor, task: str) -> dict[str, str]:
    """modality -> the output name of ``task``'s head on that modality alone (a lone model's, not a member's)."""
    found = unimodal_outputs(predictor.model.output_names, [task])
    return {m: name for name, (t, m) in sorted(found.items()) if split_member(name)[1] is None}


def ranked_csv(ranked: list[dict[str, Any]], pool: Pool, folder: Path) -> str:
    """The ranking as CSV text to be written in ``folder``: the pool's columns (paths rebased on ``folder``), then
    ``_rank``, ``_row``, ``_score``, ``_guess`` and ``_p_<class>`` per class."""
    classes = list(ranked[0]["probabilities"]) if ranked else []
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*pool.columns, *RANK_COLUMNS, *(f"_p_{c}" for c in classes)])
    for item in ranked:
        cells = rebase(pool, item["cells"], folder)
        writer.writerow(
            [cells[c] for c in pool.columns]
            + [item["rank"], item["row"], f"{item['score']:.6g}", item["guess"]]
            + [f"{item['probabilities'][c]:.6g}" for c in classes]
        )
    return buffer.getvalue()


def write_next(
    run, pool: str | Path, budget: int, out: str | Path, strategy: str = "margin", **options: Any
) -> list[dict[str, Any]]:
    """:func:`rank`, written to the CSV ``out`` (atomically); returns the ranking."""
    from omnifuse.rundir import atomic_write_text

    table = read_pool(pool)
    ranked = rank(run, table, budget, strategy, **options)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, ranked_csv(ranked, table, out.parent))
    return ranked
