"""Text encoders over token ids (B, L) from the model's TextVectorization; id 0 is padding."""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np
from keras import layers, ops

from omnifuse.encoders import build_chain


@dataclass(frozen=True)
class RNNConfig:
    embed_dim: int = 128
    cell: str = "lstm"  # lstm | gru
    units: int = 64
    bidirectional: bool = False
    # last (final state) | max (over all steps, padding excluded) | maxmean (max and mean over the steps, concatenated)
    pooling: str = "last"
    conv_filters: int = (
        0  # > 0: Conv1D + max-pool before the RNN (the CNN-LSTM combination), shortening the sequence
    )
    conv_pool: int = 4
    dropout: float = 0.2  # on each embedding value and on the output
    word_dropout: float = 0.0  # training: each token's whole embedding is dropped with this probability
    # > 0: each position also gets the learned embedding of its bigram (the word before and this one), hashed into
    # this many buckets and added to the word's embedding, so the recurrent net reads "not good" as one unit
    bigram_buckets: int = 0


@dataclass(frozen=True)
class BagConfig:
    embed_dim: int = 64
    dropout: float = 0.2


@dataclass(frozen=True)
class TfidfConfig:
    vocab_size: int = 100000  # n-grams kept (most frequent in the training texts)
    ngrams: int = 2  # unigrams up to this length
    units: int = 64
    dropout: float = 0.5


@dataclass(frozen=True)
class NBConfig:
    vocab_size: int = 1000000  # n-grams kept (the most frequent in the training texts)
    ngrams: int = 3  # unigrams up to this length
    fit: str = "nbsvm"  # nbsvm: weights fitted once from the training texts, then fixed | learn: trained with the model
    c: float = 0.1  # nbsvm: inverse L2 strength of the logistic regression on the ratio-scaled n-grams
    beta: float = 0.25  # nbsvm: interpolation between the mean weight (0) and the fitted weights (1)
    folds: int = (
        5  # nbsvm: a training text gets the margins of the fit on the other folds (0: of the full fit)
    )
    prior: float = 0.4  # learn: each present n-gram's weight starts at prior * its log-count ratio
    scale: float = 0.1  # learn: the summed evidence is multiplied by this before fusion
    l2: float = 1e-6  # learn: penalty on the learned corrections to the prior weights
    dropout: float = 0.0  # learn: each n-gram of a training text is left out with this probability
    smoothing: float = 1.0  # alpha added to every n-gram's count per class


def trim_padding(ids, multiple=1, reach=0):
    """``ids`` (B, L) without the padding columns (id 0) after the batch's longest text: the columns up to its last
    real id, rounded up to a ``multiple`` of columns, plus ``reach`` more, at least ``multiple`` and at most L.
    An encoder whose answer ignores padding gives the same answer on the trimmed ids and does less work, the more so
    in batches of texts of similar length (``data.length_buckets``, and evaluation's shortest-first order)."""
    positions = ops.arange(1, ops.shape(ids)[1] + 1, dtype="int32")[None, :]
    longest = ops.max(ops.where(ops.not_equal(ids, 0), positions, 0))
    keep = ops.maximum((longest + multiple - 1) // multiple, 1) * multiple + reach
    return ids[:, : ops.minimum(ops.shape(ids)[1], keep)]


@keras.saving.register_keras_serializable(package="omnifuse")
class TextRNN(layers.Layer):
    """Embedding -> [Conv1D + pool] -> LSTM/GRU (optionally bidirectional). Output (B, units * directions).

    ``bigram_buckets > 0``: a second embedding table, indexed by a hash of each position's (previous word, word) ids
    (:meth:`bigram_ids`), is added to the word embedding.
    """

    output_kind = "vector"

    def __init__(
        self,
        vocab_size=20000,
        embed_dim=128,
        cell="lstm",
        units=64,
        bidirectional=False,
        pooling="last",
        conv_filters=0,
        conv_pool=4,
        dropout=0.2,
        word_dropout=0.0,
        bigram_buckets=0,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in ("lstm", "gru"):
            raise ValueError(f"Expected cell 'lstm' or 'gru'. Received: {cell!r}")
        if pooling not in ("last", "max", "maxmean"):
            raise ValueError(f"Expected pooling 'last', 'max' or 'maxmean'. Received: {pooling!r}")
        if not 0.0 <= word_dropout < 1.0:
            raise ValueError(f"Expected word_dropout in [0, 1). Received: {word_dropout!r}")
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.cell = cell
        self.units = units
        self.bidirectional = bidirectional
        self.pooling = pooling
        self.conv_filters = conv_filters
        self.conv_pool = conv_pool
        self.dropout = dropout
        self.word_dropout = word_dropout
        self.bigram_buckets = int(bigram_buckets)
        self.output_dim = units * (2 if bidirectional else 1) * (2 if pooling == "maxmean" else 1)
        self.embedding = layers.Embedding(vocab_size, embed_dim)
        # bucket 0: no bigram (the first word, padding)
        self.bigram_embedding = (
            layers.Embedding(self.bigram_buckets + 1, embed_dim) if self.bigram_buckets else None
        )
        self.word_drop = layers.Dropout(word_dropout, noise_shape=(None, None, 1)) if word_dropout else None
        self.embed_drop = layers.Dropout(dropout)
        self.conv = (
            layers.Conv1D(conv_filters, 5, padding="same", activation="relu") if conv_filters else None
        )
        self.conv_pooling = layers.MaxPooling1D(conv_pool) if conv_filters else None
        rnn_cls = layers.LSTM if cell == "lstm" else layers.GRU
        rnn = rnn_cls(units, return_sequences=pooling != "last")
        self.rnn = layers.Bidirectional(rnn) if bidirectional else rnn
        self.out_drop = layers.Dropout(dropout)

    def build(self, input_shape):
        if self.bigram_embedding is not None:
            self.bigram_embedding.build(input_shape)
        build_chain([self.embedding, self.conv, self.conv_pooling, self.rnn], input_shape)

    def bigram_ids(self, ids):
        """Per position, the bucket (1..bigram_buckets) of the bigram that ends there: the pair of word ids
        ``previous * 1000003 + id`` (distinct for vocabularies under a million) modulo the bucket count, plus 1;
        0 where the position or the one before is padding, and at the first position."""
        ids = ops.cast(ids, "int64")
        previous = ops.pad(ids[:, :-1], [[0, 0], [1, 0]])
        buckets = ops.mod(previous * 1000003 + ids, self.bigram_buckets) + 1
        return ops.where(ops.logical_and(ops.not_equal(previous, 0), ops.not_equal(ids, 0)), buckets, 0)

    def _trim_padding(self, ids):
        """``ids`` without the padding columns after the batch's longest text, but for what the convolution
        around the last pooled step reads: a short sentence then runs a few recurrent steps instead of
        ``sequence_length / conv_pool``. Padding is masked everywhere after that, so the output is the same, and in
        training no gradient reaches the columns dropped. Batches of texts of similar length
        (``data.length_buckets``) make this pay in training too."""
        pool, reach = (self.conv_pool, 2) if self.conv is not None else (1, 0)  # the conv's kernel is 5 wide
        return trim_padding(ids, pool, reach)

    def call(self, ids, training=None):
        ids = self._trim_padding(ids)
        present = ops.cast(ops.not_equal(ids, 0), "bool")
        x = self.embedding(ids)
        if self.bigram_embedding is not None:
            x = x + self.bigram_embedding(self.bigram_ids(ids))
        if self.word_drop is not None:
            x = self.word_drop(x, training=training)
        x = self.embed_drop(x, training=training)
        if self.conv is not None:
            x = self.conv_pooling(self.conv(x))
            # a pooled step is padding only if every token it covers was padding
            steps = ops.shape(x)[1]
            present = ops.any(
                ops.reshape(present[:, : steps * self.conv_pool], (-1, steps, self.conv_pool)), axis=-1
            )
        x = self.rnn(x, mask=present, training=training)
        if self.pooling != "last":
            x = self._pool(x, present)
        return self.out_drop(x, training=training)

    def _pool(self, x, present):
        """Max (and for ``maxmean`` also mean) over the steps that are not padding; an empty text gives zeros."""
        keep = present[..., None]
        top = ops.max(ops.where(keep, x, -1e9), axis=1)
        top = ops.where(ops.any(present, axis=1, keepdims=True), top, 0.0)
        if self.pooling == "max":
            return top
        weights = ops.cast(keep, x.dtype)
        mean = ops.sum(x * weights, axis=1) / ops.maximum(ops.sum(weights, axis=1), 1.0)
        return ops.concatenate([top, mean], axis=-1)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "cell": self.cell,
            "units": self.units,
            "bidirectional": self.bidirectional,
            "pooling": self.pooling,
            "conv_filters": self.conv_filters,
            "conv_pool": self.conv_pool,
            "dropout": self.dropout,
            "word_dropout": self.word_dropout,
            "bigram_buckets": self.bigram_buckets,
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class TextBag(layers.Layer):
    """Bag of (n-gram) embeddings, masked mean over the tokens (fastText-style). Output (B, embed_dim)."""

    output_kind = "vector"

    def __init__(self, vocab_size=20000, embed_dim=64, dropout=0.2, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.embed_dim = embed_dim
        self.dropout = dropout
        self.output_dim = embed_dim
        self.embedding = layers.Embedding(vocab_size, embed_dim)
        self.drop = layers.Dropout(dropout)

    def build(self, input_shape):
        self.embedding.build(input_shape)

    def call(self, ids, training=None):
        ids = trim_padding(ids)  # the mean is over the real tokens only
        present = ops.cast(ops.not_equal(ids, 0), self.compute_dtype)[..., None]
        total = ops.sum(self.embedding(ids) * present, axis=1)
        return self.drop(total / ops.maximum(ops.sum(present, axis=1), 1.0), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "vocab_size": self.vocab_size,
            "embed_dim": self.embed_dim,
            "dropout": self.dropout,
        }


@keras.saving.register_keras_serializable(package="omnifuse")
class TextTfidf(layers.Layer):
    """A linear layer over a TF-IDF n-gram vector (B, V), the classic strong baseline for long reviews.

    Output (B, units). Its input comes from a ``TextVectorization(output_mode="tf_idf", ngrams=...)`` in the model.
    """

    output_kind = "vector"

    def __init__(self, units=64, dropout=0.5, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.dropout = dropout
        self.output_dim = units
        self.drop = layers.Dropout(dropout)
        self.dense = layers.Dense(units)

    def build(self, input_shape):
        self.dense.build(input_shape)

    def call(self, x, training=None):
        return self.dense(self.drop(ops.cast(x, self.compute_dtype), training=training))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {**super().get_config(), "units": self.units, "dropout": self.dropout}


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

    output_kind = "vector"

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
