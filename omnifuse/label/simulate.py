"""The labelling loop, simulated on a labelled data set: which strategy of :func:`omnifuse.label.rank` buys the most
accuracy per label. The labels of a pool are hidden; a seeded ``start`` share of them is revealed; each round a
head is trained on the revealed samples, scored on a test set, and asked (by one of :data:`STRATEGIES`) for the
next ``batch`` samples, whose labels are then revealed.

The head is a multinomial logistic regression on frozen pretrained features: the linear softmax layer an omnifuse
model puts on a frozen encoder (``fusion_dim = 0``), fitted to convergence by L-BFGS rather than by epochs of
Adam with early stopping, which on 20-1,000 labels would need a validation split of its own and add training
noise to the comparison of strategies. The fused embedding of such a model is its features concatenated, so
``kcenter``, ``hybrid``, ``typiclust`` and ``badge`` read those (for ``badge`` they are also the output layer's
input); ``disagreement`` fits one head per modality as ``train.unimodal_loss``
does. With ``pseudo`` > 0 the head is self-trained each round on the pool's confident guesses as well
(:func:`self_trained`). The scores and orders are :mod:`omnifuse.label.next`'s own.

>>> curve = simulate({"audio": x}, y, {"audio": x_test}, y_test, "margin", seed=0)   # [{"labels", "accuracy"}, ...]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.label.next import (  # noqa: F401  (STRATEGIES: also imported from here)
    STRATEGIES,
    badge_order,
    disagreement_scores,
    effective_strategy,
    entropy_scores,
    hybrid_order,
    kcenter_order,
    margin_scores,
    parse_strategy,
    typiclust_order,
)


class Head:
    """A logistic-regression head on standardised features, giving probabilities over all ``classes`` classes
    (0 for a class no revealed sample has; a single revealed class gets probability 1)."""

    def __init__(self, classes: int, c: float = 1.0, seed: int = 0):
        self.classes, self.c, self.seed = classes, c, seed

    def fit(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> Head:
        from sklearn.linear_model import LogisticRegression

        self.seen = np.unique(y)
        self.model = None
        if len(self.seen) > 1:
            self.model = LogisticRegression(C=self.c, max_iter=2000, random_state=self.seed)
            self.model.fit(x, y, sample_weight=sample_weight)
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((x.shape[0], self.classes))
        if self.model is None:
            out[:, self.seen[0]] = 1.0
        else:
            out[:, self.model.classes_] = self.model.predict_proba(x)
        return out


class KerasHead(Head):
    """The Keras head an omnifuse model puts on frozen features with ``fusion_dim = 0`` and no hidden layer: one
    dense softmax layer, trained by AdamW (rate 1e-2, weight decay 1e-2, batches of 64) for at most ``epochs``
    epochs, the weights of the epoch of least validation loss kept (a seeded tenth of the revealed samples held
    out, patience 20). Slower and noisier than :class:`Head`, which stands in for it; this one checks that it may."""

    def __init__(self, classes: int, c: float = 1.0, seed: int = 0, epochs: int = 200):
        super().__init__(classes, c, seed)
        self.epochs = epochs

    def fit(self, x: np.ndarray, y: np.ndarray) -> KerasHead:
        import keras

        self.net = None
        if len(np.unique(y)) < 2 or len(y) < 4:
            return super().fit(x, y)
        keras.utils.set_random_seed(self.seed)
        order = np.random.default_rng(self.seed).permutation(len(y))
        cut = max(1, len(y) // 10)
        held, kept = order[:cut], order[cut:]
        net = keras.Sequential(
            [keras.Input((x.shape[1],)), keras.layers.Dense(self.classes, activation="softmax")]
        )
        net.compile(keras.optimizers.AdamW(1e-2, weight_decay=1e-2), "sparse_categorical_crossentropy")
        net.fit(
            x[kept], y[kept], batch_size=64, epochs=self.epochs, verbose=0,
            validation_data=(x[held], y[held]),
            callbacks=[keras.callbacks.EarlyStopping(patience=20, restore_best_weights=True)],
        )  # fmt: skip
        self.net = net
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if self.net is None:
            return super().predict_proba(x)
        return np.asarray(self.net.predict(x, batch_size=4096, verbose=0), np.float64)


HEADS = {"logistic": Head, "keras": KerasHead}


def confident_rows(probs: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``probs`` to pseudo-label and their guessed classes: the ``count`` whose top probability is
    highest, shared equally among the classes guessed (each class's most confident rows, so a confident majority
    class does not crowd out the rest), best first within each class."""
    guess = probs.argmax(1)
    top = probs.max(1)
    classes = np.unique(guess)
    each = count // max(1, len(classes))
    rows = [np.flatnonzero(guess == k)[np.argsort(-top[guess == k], kind="stable")[:each]] for k in classes]
    rows = np.concatenate(rows) if rows else np.zeros(0, int)
    return rows, guess[rows]


def _stacked(a: Any, b: Any) -> Any:
    import scipy.sparse

    return scipy.sparse.vstack([a, b], format="csr") if scipy.sparse.issparse(a) else np.concatenate([a, b])


def self_trained(
    make, x: Any, labels: np.ndarray, idx: np.ndarray, ratio: float, weight: float = 0.5, refreshes: int = 2
) -> Head:
    """A head fitted on the revealed rows ``idx`` of ``x`` and, when ``ratio`` > 0, on pseudo-labels of the
    unrevealed ones as well (self-training; Wang et al.'s cost-effective active learning): ``refreshes`` times, the
    last head guesses every unrevealed row, its ``ratio`` x ``len(idx)`` most confident guesses
    (:func:`confident_rows`) join the revealed labels at ``weight`` each, and the head is refitted. ``make()`` gives
    a new unfitted head."""
    model = make().fit(x[idx], labels[idx])
    if ratio <= 0 or getattr(model, "model", None) is None:
        return model
    rest = np.setdiff1d(np.arange(x.shape[0]), idx)
    count = min(len(rest), round(ratio * len(idx)))
    for _ in range(refreshes):
        rows, guess = confident_rows(model.predict_proba(x[rest]), count)
        weights = np.concatenate([np.ones(len(idx)), np.full(len(rows), weight)])
        model = make().fit(
            _stacked(x[idx], x[rest[rows]]), np.concatenate([labels[idx], guess]), sample_weight=weights
        )
    return model


def standardise(pool: dict[str, np.ndarray], *others: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """Each modality's features scaled by the pool's mean and std (no label used): ``[pool, *others]``."""
    stats = {m: (x.mean(0), x.std(0) + 1e-6) for m, x in pool.items()}
    return [{m: (x - stats[m][0]) / stats[m][1] for m, x in d.items()} for d in (pool, *others)]


def _joined(x: dict[str, Any]) -> Any:
    """The modalities' features side by side (sorted by name); sparse if any of them is (a CSR matrix)."""
    import scipy.sparse

    parts = [x[m] for m in sorted(x)]
    if any(scipy.sparse.issparse(p) for p in parts):
        return scipy.sparse.hstack(parts, format="csr")
    return np.concatenate(parts, axis=1)


def tfidf_features(
    pool_texts: Sequence[str],
    *other_texts: Sequence[str],
    vocabulary: int = 100_000,
    ngrams: int = 2,
    dims: int = 256,
    seed: int = 0,
) -> tuple[list[Any], np.ndarray]:
    """Label-free text features for the loop: the tf-idf vectors of words and word n-grams up to ``ngrams`` (the
    ``vocabulary`` most frequent in the pool, idf from the pool, sublinear tf, rows L2-normalised; the vocabulary
    size and n-grams of the ``tfidf`` text encoder), sparse, for the pool and each of ``other_texts``; and the pool's dense embedding for
    the diversity strategies: the first ``dims`` components of a truncated SVD of its tf-idf (latent semantic
    analysis), rows L2-normalised. Fitted on the pool's texts only."""
    from sklearn.decomposition import TruncatedSVD
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.preprocessing import normalize

    vectoriser = TfidfVectorizer(
        ngram_range=(1, ngrams), max_features=vocabulary, sublinear_tf=True, dtype=np.float32
    )
    pool = vectoriser.fit_transform([str(t) for t in pool_texts])
    others = [vectoriser.transform([str(t) for t in texts]) for texts in other_texts]
    dims = max(1, min(dims, pool.shape[1] - 1, pool.shape[0] - 1))
    embedding = TruncatedSVD(dims, random_state=seed).fit_transform(pool)
    return [pool, *others], normalize(embedding).astype(np.float32)


def choose(
    strategy: str,
    probs: np.ndarray,
    embedding: np.ndarray,
    labelled_embedding: np.ndarray,
    budget: int,
    seed: int,
    heads: list[np.ndarray] | None = None,
    present: list[np.ndarray] | None = None,
) -> np.ndarray:
    """Indices (into the unlabelled rows given) of the ``budget`` samples ``strategy`` asks for, best first."""
    budget = min(budget, len(probs))
    strategy = effective_strategy(strategy, labelled_embedding.shape[0], probs.shape[1])
    if strategy == "random":
        return np.random.default_rng(seed).permutation(len(probs))[:budget]
    if strategy in ("margin", "entropy"):
        scores = margin_scores(probs) if strategy == "margin" else entropy_scores(probs)
        return np.argsort(-scores, kind="stable")[:budget]
    if strategy == "kcenter":
        return kcenter_order(embedding, budget, labelled_embedding)[0]
    if strategy == "hybrid":
        return hybrid_order(embedding, margin_scores(probs), budget, seed)
    if strategy == "typiclust":
        return typiclust_order(embedding, budget, labelled_embedding, seed)[0]
    if strategy == "badge":
        return badge_order(embedding, probs, budget, seed)[0]
    if strategy == "disagreement":
        if not heads or len(heads) < 2:
            raise OmnifuseError("Expected two or more modalities for the 'disagreement' strategy.")
        scores = disagreement_scores(heads, present)
        return np.argsort(-scores, kind="stable")[:budget]
    raise AssertionError(f"strategy {strategy!r} passed parse_strategy but has no branch")


def start_set(n: int, count: int, seed: int) -> np.ndarray:
    """The seeded first ``count`` pool rows revealed (the same for every strategy of one seed)."""
    return np.sort(np.random.default_rng(seed).permutation(n)[: max(1, count)])


def simulate(
    pool: dict[str, np.ndarray],
    labels: np.ndarray,
    test: dict[str, np.ndarray],
    test_labels: np.ndarray,
    strategy: str,
    seed: int = 0,
    start: float = 0.01,
    batch: float = 0.01,
    rounds: int = 9,
    classes: int | None = None,
    pool_masks: dict[str, np.ndarray] | None = None,
    c: float = 1.0,
    head: str = "logistic",
    embedding: dict[str, np.ndarray] | None = None,
    pseudo: float = 0.0,
    pseudo_weight: float = 0.5,
) -> list[dict[str, Any]]:
    """Run the loop for ``strategy`` and return one point per round, ``rounds + 1`` in all: ``labels`` (revealed),
    ``fraction`` (of the pool) and test ``accuracy`` of the head trained on them, and ``seconds`` (fit and ask).

    ``pool`` / ``test``: modality -> float features (N, D) (standardise them first: :func:`standardise`);
    ``start`` and ``batch``: shares of the pool revealed first and asked for each round; ``head``: which of
    :data:`HEADS` is refitted each round; ``embedding``: modality -> the pool's features that ``kcenter``,
    ``hybrid`` and ``typiclust`` spread over, where they are not the head's input (sparse tf-idf: their
    :func:`tfidf_features` embedding); ``badge`` reads the head's input and takes none. ``pseudo`` > 0: the
    head also trains on that many pseudo-labelled pool rows per revealed label, at ``pseudo_weight``
    (:func:`self_trained`; the logistic head only); the per-modality heads of ``disagreement`` do not."""
    import time

    base, _ = parse_strategy(strategy)
    if head not in HEADS:
        raise OmnifuseError(f"Expected a head in {', '.join(HEADS)}. Received: {head!r}")
    fitted = HEADS[head]
    if pseudo > 0 and head != "logistic":
        raise OmnifuseError(
            f"Expected the logistic head for pseudo-labels (pseudo = {pseudo:g}). Received: {head!r}"
        )
    if embedding is not None and base == "badge":
        raise OmnifuseError(
            "Expected no separate embedding for the 'badge' strategy: it reads the head's own input "
            "(its gradient embedding is built from it)."
        )
    n = len(labels)
    classes = int(classes or max(labels.max(), test_labels.max()) + 1)
    size = max(1, round(batch * n))
    revealed = np.zeros(n, bool)
    revealed[start_set(n, round(start * n), seed)] = True
    x, x_test = _joined(pool), _joined(test)
    spread = x if embedding is None else _joined(embedding)
    masks = pool_masks or {m: np.ones(n) for m in pool}
    curve = []
    for r in range(rounds + 1):
        began = time.perf_counter()
        idx = np.flatnonzero(revealed)
        model = self_trained(lambda: fitted(classes, c, seed), x, labels, idx, pseudo, pseudo_weight)
        accuracy = float((model.predict_proba(x_test).argmax(1) == test_labels).mean())
        point = {"labels": int(revealed.sum()), "fraction": float(revealed.mean()), "accuracy": accuracy}
        if r < rounds and (~revealed).any():
            rest = np.flatnonzero(~revealed)
            heads = present = None
            if base == "disagreement":
                heads = [
                    fitted(classes, c, seed).fit(pool[m][idx], labels[idx]).predict_proba(pool[m][rest])
                    for m in sorted(pool)
                ]
                present = [masks[m][rest] for m in sorted(pool)]
            picked = choose(
                strategy,
                model.predict_proba(x[rest]),
                spread[rest],
                spread[idx],
                size,
                seed * 1000 + r,
                heads,
                present,
            )
            revealed[rest[picked]] = True
        point["seconds"] = round(time.perf_counter() - began, 3)
        curve.append(point)
    return curve


def labels_to_reach(curve: list[dict[str, Any]], accuracy: float) -> int | None:
    """The fewest labels at which ``curve`` reached ``accuracy`` (None if it never did)."""
    return next((p["labels"] for p in curve if p["accuracy"] >= accuracy - 1e-12), None)


def out_of_fold(
    x: np.ndarray, labels: np.ndarray, folds: int = 5, seed: int = 0, c: float = 1.0
) -> np.ndarray:
    """Each row's probabilities from the head fitted on the other ``folds - 1`` stratified folds (the cross-fitting
    of ``omnifuse label audit``, with this module's head)."""
    from sklearn.model_selection import StratifiedKFold

    classes = int(labels.max() + 1)
    probs = np.zeros((len(labels), classes))
    for train, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, labels):
        probs[held] = Head(classes, c, seed).fit(x[train], labels[train]).predict_proba(x[held])
    return probs


def flip_labels(
    labels: np.ndarray, fraction: float, seed: int, pairs: list[tuple[int, int]] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``fraction`` of all rows flipped, and which rows were. Without ``pairs`` each flipped row gets a
    uniformly drawn other class; with ``pairs`` ((a, b): a <-> b) the rows are drawn among those whose class is in a
    pair and take its partner (the fraction is still of all rows)."""
    rng = np.random.default_rng(seed)
    noisy = labels.copy()
    classes = int(labels.max() + 1)
    if pairs:
        partner = {a: b for a, b in pairs} | {b: a for a, b in pairs}
        eligible = np.flatnonzero(np.isin(labels, list(partner)))
    else:
        eligible = np.arange(len(labels))
    count = round(fraction * len(labels))
    if count > len(eligible):
        raise OmnifuseError(f"Expected at most {len(eligible)} rows to flip. Received: {count}")
    flipped = np.sort(rng.choice(eligible, count, replace=False))
    for i in flipped:
        if pairs:
            noisy[i] = partner[int(labels[i])]
        else:
            noisy[i] = (labels[i] + rng.integers(1, classes)) % classes
    return noisy, flipped


def precision_recall(flagged: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Precision and recall of the ``flagged`` rows against the ``truth`` rows (both index arrays)."""
    hits = len(np.intersect1d(flagged, truth))
    return {
        "flagged": int(len(flagged)),
        "precision": hits / len(flagged) if len(flagged) else 0.0,
        "recall": hits / len(truth) if len(truth) else 0.0,
    }
