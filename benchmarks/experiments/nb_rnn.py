"""A BiGRU that reads NBSVM's evidence word by word (IMDb), alone and blended with NBSVM.

Each position of a review gets, beside its learned word embedding, three fixed numbers: NBSVM's weights of the
unigram, bigram and trigram that end there (``nbsvm_tokenizers.py``'s NBSVM on word 1-3-grams: log-count ratio times
the interpolated coefficient, so a review's margin is the sum of its distinct n-grams' weights). The head also reads
the review's NBSVM margin. So the recurrent net can learn what the bag cannot: where in the review the evidence sits,
what negates or contrasts it. The weights a training review sees are cross-fitted: they come from the NBSVM fitted
on the other folds (whole films apart), so they are as noisy as on unseen reviews; validation and test reviews see
the NBSVM fitted on all the fit reviews. 5% of the training reviews (whole films) are held out for the blend weight.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/nb_rnn.py --epochs 2
"""

import argparse
import collections
import time

import numpy as np
from nbsvm_tokenizers import words  # beside this script
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedGroupKFold

from omnifuse.data import imdb
from omnifuse.data.splits import holdout


def nbsvm_weights(rows, y, c=0.1, beta=0.25):
    """Per-n-gram weights (V,) and bias of an NBSVM on binary rows: margin = rows @ weights + bias."""
    pos = np.asarray(rows[y == 1].sum(0)).ravel() + 1.0
    neg = np.asarray(rows[y == 0].sum(0)).ravel() + 1.0
    ratio = np.log((pos / pos.sum()) / (neg / neg.sum()))
    fit = LogisticRegression(C=c, solver="liblinear", dual=True, max_iter=1000).fit(
        rows.multiply(ratio).tocsr(), y
    )
    w = fit.coef_.ravel()
    return (ratio * (beta * w + (1 - beta) * np.abs(w).mean())).astype(np.float32), beta * fit.intercept_[0]


def gram_positions(tokens, index, max_len):
    """(L, 3) vocabulary indices (or -1) of the uni-, bi- and trigram ending at each of the first max_len tokens."""
    tokens = tokens[:max_len] or [""]
    out = np.full((len(tokens), 3), -1, np.int64)
    for t in range(len(tokens)):
        for n in (1, 2, 3):
            if t + 1 >= n:
                out[t, n - 1] = index.get(" ".join(tokens[t + 1 - n : t + 1]), -1)
    return out


def batches(n_items, lengths, batch, shuffle, rng):
    order = np.argsort(lengths, kind="stable")
    groups = [order[i : i + batch] for i in range(0, n_items, batch)]
    if shuffle:
        rng.shuffle(groups)
    return groups


def build(vocab_size, embed, units, dropout):
    import keras
    from keras import layers, ops

    class NBRNN(keras.Model):
        def __init__(self):
            super().__init__()
            self.embedding = layers.Embedding(vocab_size, embed) if embed else None
            self.drop_in = layers.Dropout(dropout)
            self.conv = layers.Conv1D(64, 5, padding="same", activation="relu")
            self.pool = layers.MaxPooling1D(4)
            self.rnn = layers.Bidirectional(layers.GRU(units, return_sequences=True))
            self.drop_out = layers.Dropout(dropout)
            self.head = layers.Dense(1)
            self.head = layers.Dense(1, kernel_initializer="zeros")
            self.margin_weight = layers.Dense(1, use_bias=False, kernel_initializer="ones")

        def call(self, inputs, training=None):
            ids, feats, margin = inputs
            present = ops.not_equal(ids, 0)
            if self.embedding is not None:
                x = self.drop_in(self.embedding(ids), training=training)
                feats = ops.concatenate([x, feats], axis=-1)
            x = self.pool(self.conv(feats))
            steps = ops.shape(x)[1]
            mask = ops.any(ops.reshape(present[:, : steps * 4], (-1, steps, 4)), axis=-1)
            h = self.rnn(x, mask=mask, training=training)
            top = ops.max(ops.where(mask[..., None], h, -1e9), axis=1)
            z = self.drop_out(top, training=training)
            return ops.sigmoid(self.head(z) + self.margin_weight(margin))

    return NBRNN()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--embed", type=int, default=64)
    parser.add_argument("--units", type=int, default=64)
    parser.add_argument("--max-len", type=int, default=800)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    start = time.perf_counter()
    data = imdb.load()
    train = data["train"]
    texts, labels = list(train.inputs["text"]), np.asarray(train.labels["sentiment"])
    x_test, y_test = list(data["test"].inputs["text"]), np.asarray(data["test"].labels["sentiment"])
    fit_i, val_i = map(np.sort, holdout(np.arange(len(texts)), labels, 0.05, args.seed, train.extra["group"]))
    tok_fit = [words(texts[i]) for i in fit_i]
    tok_val = [words(texts[i]) for i in val_i]
    tok_test = [words(t) for t in x_test]
    y_fit, y_val = labels[fit_i], labels[val_i]

    vectorizer = CountVectorizer(
        tokenizer=lambda t: t, preprocessor=lambda t: t, lowercase=False, token_pattern=None,
        ngram_range=(1, 3), binary=True, max_features=1_000_000, dtype=np.float32,
    )  # fmt: skip
    rows_fit = vectorizer.fit_transform(tok_fit)
    rows_val, rows_test = vectorizer.transform(tok_val), vectorizer.transform(tok_test)
    index = vectorizer.vocabulary_
    print(f"n-grams: {time.perf_counter() - start:.0f} s", flush=True)

    # cross-fitted NBSVM tables: fold k's table is fitted without fold k's films
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=args.seed).split(
        tok_fit, y_fit, train.extra["group"][fit_i]))  # fmt: skip
    fold_of = np.zeros(len(fit_i), np.int64)
    tables, biases = [], []
    for k, (rest, held) in enumerate(folds):
        fold_of[held] = k
        w, b = nbsvm_weights(rows_fit[rest], y_fit[rest])
        tables.append(w)
        biases.append(b)
    full_w, full_b = nbsvm_weights(rows_fit, y_fit)
    print(f"NBSVM fits: {time.perf_counter() - start:.0f} s", flush=True)

    def margins(rows, table, bias):
        return rows @ table + bias

    m_fit = np.zeros(len(fit_i), np.float32)
    for k, (_, held) in enumerate(folds):
        m_fit[held] = margins(rows_fit[held], tables[k], biases[k])
    m_val, m_test = margins(rows_val, full_w, full_b), margins(rows_test, full_w, full_b)
    print(f"NBSVM: out-of-fold {100 * np.mean((m_fit > 0) == y_fit):.2f}%, "
          f"validation {100 * np.mean((m_val > 0) == y_val):.2f}%, "
          f"test {100 * np.mean((m_test > 0) == y_test):.2f}%", flush=True)  # fmt: skip

    counts = collections.Counter(w for tokens in tok_fit for w in set(tokens))
    vocab = {w: i + 1 for i, (w, _) in enumerate(counts.most_common(args.vocab))}

    def encode(token_lists, table_of):
        ids, feats = [], []
        for i, tokens in enumerate(token_lists):
            tokens = tokens[: args.max_len] or [""]
            ids.append(np.array([vocab.get(w, 0) for w in tokens], np.int32))
            grams = gram_positions(tokens, index, args.max_len)
            table = table_of(i)
            feats.append(np.where(grams >= 0, table[np.maximum(grams, 0)], 0.0).astype(np.float32))
        return ids, feats

    ids_fit, f_fit = encode(tok_fit, lambda i: tables[fold_of[i]])
    ids_val, f_val = encode(tok_val, lambda i: full_w)
    ids_test, f_test = encode(tok_test, lambda i: full_w)
    print(f"sequences: {time.perf_counter() - start:.0f} s", flush=True)

    def pad(group, ids, feats, marg):
        longest = int(np.ceil(max(len(ids[i]) for i in group) / 64) * 64)
        x = np.zeros((len(group), longest), np.int32)
        f = np.zeros((len(group), longest, 3), np.float32)
        for row, i in enumerate(group):
            x[row, : len(ids[i])] = ids[i]
            f[row, : len(ids[i])] = feats[i]
        return x, f, marg[group][:, None]

    model = build(len(vocab) + 1, args.embed, args.units, args.dropout)
    optimizer = keras.optimizers.Adam(args.lr)
    loss_fn = keras.losses.BinaryCrossentropy()

    @tf.function(reduce_retracing=True)
    def step(x, f, m, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[:, None], model([x, f, m], training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    @tf.function(reduce_retracing=True)
    def predict(x, f, m):
        return model([x, f, m], training=False)[:, 0]

    def probabilities(ids, feats, marg):
        out = np.zeros(len(ids), np.float32)
        for group in batches(len(ids), [len(x) for x in ids], 256, False, None):
            out[group] = predict(*pad(group, ids, feats, marg)).numpy()
        return out

    rng = np.random.default_rng(args.seed)
    train_time = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for group in batches(len(ids_fit), [len(x) for x in ids_fit], args.batch, True, rng):
            step(*pad(group, ids_fit, f_fit, m_fit), y_fit[group].astype(np.float32))
        train_time += time.perf_counter() - t0
        p_val, p_test = probabilities(ids_val, f_val, m_val), probabilities(ids_test, f_test, m_test)
        print(f"epoch {epoch + 1}: validation {100 * np.mean((p_val > 0.5) == y_val):.2f}%, "
              f"test {100 * np.mean((p_test > 0.5) == y_test):.2f}%, training {train_time:.0f} s", flush=True)  # fmt: skip
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
