"""Naive-Bayes n-gram text encoder (NBSVM) over token ids (B, L); id 0 is padding."""

from __future__ import annotations

import keras
import numpy as np
from keras import layers, ops

from omnifuse.encoders.text.padding import trim_padding


@keras.saving.register_keras_serializable(package="omnifuse")
class TextNB(layers.Layer):
    """Naive-Bayes-weighted bag of n-grams (NBSVM, Wang & Manning 2012) as a layer. Output (B, classes).

    Input: n-gram ids (B, L) from a ``TextVectorization(output_mode="int", ngrams=...)``; each distinct n-gram of a
    text counts once. Feature c of a text is ``scale * (sum_j r[j, c] * (prior + w[j, c]) + b[c])`` over its
    n-grams j, where ``r[:, c]`` is the n-gram's log-count ratio for class c against the rest, set from labelled
    training texts by :meth:`adapt`. With ``fit="nbsvm"``, :meth:`adapt` also fits ``w`` and ``b`` (one logistic
    regression per class on the ratio-scaled n-grams, scikit-learn's liblinear, interpolated towards the mean weight
    by ``beta`` as in NBSVM) and they stay fixed: the features are NBSVM's margins. With ``fit="learn"``, ``w`` starts
    at zero and is trained with the model under an L2 penalty. Without :meth:`adapt` the ratios are 1.
    """

    def __init__(
        self,
        vocab_size=1000000,
        classes=2,
        fit="nbsvm",
        c=0.1,
        beta=0.25,
        folds=5,
        prior=0.4,
        scale=0.1,
        l2=1e-6,
        dropout=0.0,
        smoothing=1.0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if classes < 2:
            raise ValueError(f"Expected at least 2 classes. Received: classes={classes!r}")
        if fit not in ("nbsvm", "learn"):
            raise ValueError(f"Expected fit 'nbsvm' or 'learn'. Received: {fit!r}")
        self.vocab_size = vocab_size
        self.classes = classes
        self.fit = fit
        self.c = c
        self.beta = beta
        self.folds = folds if fit == "nbsvm" else 0
        self.prior = prior
        self.scale = scale
        self.l2 = l2
        self.dropout = dropout
        self.smoothing = smoothing
        self.output_dim = classes
        self.seed_generator = keras.random.SeedGenerator()
        # margins are sums over thousands of n-grams: computed in float32 whatever the model's precision
        self.autocast = False

    def build(self, input_shape):
        learn = self.fit == "learn"
        self.ratio = self.add_weight(
            shape=(self.vocab_size, self.classes), initializer="ones", trainable=False, name="log_count_ratio"
        )
        self.correction = self.add_weight(
            shape=(self.vocab_size, self.classes),
            initializer="zeros",
            regularizer=keras.regularizers.L2(self.l2) if self.l2 and learn else None,
            trainable=learn,
            name="correction",
        )
        self.bias = self.add_weight(shape=(self.classes,), initializer="zeros", trainable=learn, name="bias")
        if self.folds:
            self.fold_weight = self.add_weight(
                shape=(self.folds * self.vocab_size, self.classes),
                initializer="zeros",
                trainable=False,
                name="fold_weight",
            )
            self.fold_bias = self.add_weight(
                shape=(self.folds, self.classes), initializer="zeros", trainable=False, name="fold_bias"
            )

    @staticmethod
    def distinct(ids):
        """``ids`` (B, L) sorted per row, with every repeat of an id (and padding, id 0) replaced by 0."""
        ids = ops.sort(ids, axis=-1)
        repeat = ops.concatenate([ops.zeros_like(ids[:, :1]), ids[:, :-1]], axis=-1)
        return ops.where(ops.equal(ids, repeat), ops.zeros_like(ids), ids)

    def adapt(self, batches) -> None:
        """Set the log-count ratios (and, with ``fit="nbsvm"``, the weights) from training texts: ``batches`` yields
        (n-gram ids (n, L), class index (n,)). Texts whose label is negative (none for this task) are left out."""
        from scipy import sparse

        rows, kept = [], []
        for ids, labels in batches:
            ids, labels = np.asarray(ids), np.asarray(labels)
            if len(ids) != len(labels):
                raise ValueError(
                    f"Expected one label per text. Received: {len(ids)} texts, {len(labels)} labels"
                )
            if labels.size and labels.max() >= self.classes:
                raise ValueError(f"Expected class indices below {self.classes}. Received: {labels.max()}")
            ids = np.asarray(self.distinct(ids[labels >= 0]))
            rows += [row[row > 0] for row in ids]
            kept.append(labels[labels >= 0])
        labels = np.concatenate(kept) if kept else np.zeros(0, "int64")
        lengths = [len(row) for row in rows]
        x = sparse.csr_matrix(
            (np.ones(sum(lengths), "float32"), np.concatenate(rows or [np.zeros(0, "int64")]),
             np.concatenate([[0], np.cumsum(lengths)])),
            shape=(len(rows), self.vocab_size),
        )  # fmt: skip
        if not self.built:
            self.build((None, None))
        ratio = self._ratio(x, labels)
        self.ratio.assign(ratio.T.astype("float32"))
        if self.fit != "nbsvm":
            return
        weight, bias = self._nbsvm(x, labels, ratio)
        # scale * (r * (prior + correction) + bias) = r * w + b
        with np.errstate(divide="ignore", invalid="ignore"):
            correction = np.where(ratio.T != 0, weight / ratio.T, 0.0) / self.scale - self.prior
        self.correction.assign(correction.astype("float32"))
        self.bias.assign((bias / self.scale).astype("float32"))
        if self.folds:
            fold = self._fold_numpy(rows)
            tables, biases = [], []
            for k in range(self.folds):
                rest = fold != k
                weight, bias = self._nbsvm(x[rest], labels[rest], self._ratio(x[rest], labels[rest]))
                tables.append(weight)
                biases.append(bias)
            self.fold_weight.assign(np.stack(tables).reshape(-1, self.classes).astype("float32"))
            self.fold_bias.assign(np.stack(biases).astype("float32"))

    def _ratio(self, x, labels) -> np.ndarray:
        """Log-count ratios (classes, V) of each class against the rest, from binary n-gram rows ``x``."""
        counts = np.stack([np.asarray(x[labels == c].sum(axis=0)).ravel() for c in range(self.classes)])
        own = counts + self.smoothing
        rest = counts.sum(axis=0, keepdims=True) - counts + self.smoothing
        ratio = np.log(own / own.sum(axis=1, keepdims=True)) - np.log(rest / rest.sum(axis=1, keepdims=True))
        ratio[:, 0] = 0.0  # padding
        return ratio

    def _nbsvm(self, x, labels, ratio) -> tuple[np.ndarray, np.ndarray]:
        """NBSVM per class: (weight per n-gram (V, classes) = ratio * interpolated coefficient, bias (classes,))."""
        from sklearn.linear_model import LogisticRegression

        weight = np.zeros((self.vocab_size, self.classes))
        bias = np.zeros(self.classes)
        for c in range(self.classes):
            target = labels == c
            if target.all() or not target.any():
                continue  # a class missing from the training texts (or the only one): no evidence either way
            model = LogisticRegression(C=self.c, solver="liblinear", dual=True, max_iter=1000)
            model.fit(x.multiply(ratio[c]).tocsr(), target)
            w = model.coef_.ravel()
            weight[:, c] = ratio[c] * ((1 - self.beta) * np.abs(w).mean() + self.beta * w)
            bias[c] = self.beta * model.intercept_[0]
        return weight, bias

    def _fold_numpy(self, rows) -> np.ndarray:
        """The cross-fitting fold of each text (its distinct n-gram ids ``rows``), as :meth:`call` computes it."""
        return np.array([int((row % self.folds).sum()) % self.folds for row in rows], "int64")

    def call(self, ids, training=None):
        return ops.cast(self._margins(ids, training), self.compute_dtype)

    def _margins(self, ids, training):
        ids = self.distinct(trim_padding(ops.cast(ids, "int32")))  # padding adds nothing to a margin
        present = ops.cast(ops.not_equal(ids, 0), "float32")[..., None]
        if training and self.folds and self.fit == "nbsvm":
            # cross-fitting: a training text gets the margins of the fit that did not see it (the fold is a
            # function of its n-grams, the same as in adapt), so the rest of the model learns how far to trust
            # them on texts they were not fitted to
            fold = ops.mod(ops.sum(ops.mod(ids, self.folds), axis=1), self.folds)
            weights = ops.take(self.fold_weight, fold[:, None] * self.vocab_size + ids, axis=0)
            return ops.sum(weights * present, axis=1) + ops.take(self.fold_bias, fold, axis=0)
        if training and self.dropout > 0:
            keep = keras.random.uniform(ops.shape(present), seed=self.seed_generator) >= self.dropout
            present = present * ops.cast(keep, "float32") / (1.0 - self.dropout)
        weights = ops.take(self.ratio, ids, axis=0) * (self.prior + ops.take(self.correction, ids, axis=0))
        return self.scale * (ops.sum(weights * present, axis=1) + self.bias)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "classes": self.classes,
            "fit": self.fit,
            "c": self.c,
            "beta": self.beta,
            "folds": self.folds,
            "prior": self.prior,
            "scale": self.scale,
            "l2": self.l2,
            "dropout": self.dropout,
            "smoothing": self.smoothing,
        }
