"""A region-embedding CNN on IMDb (after Johnson & Zhang's seq-CNN), alone and blended with NBSVM.

The seq-CNN applies a convolution straight to one-hot words: a region of ``--region`` words maps to the sum of one
learned vector per (word, position in the region), plus a bias, then ReLU; max (and mean) over the review; dropout;
one sigmoid unit. That is an embedding of width ``region * maps`` whose slices are shifted and summed, so it costs
table look-ups, not matrix products. The NBSVM is ``nbsvm_tokenizers.py``'s. Both train on the same 95% of the
training reviews; the blend weight is chosen on the other 5% (single reviews, or with ``--holdout films`` whole
films, as omnifuse holds them out by default), never on the test set.

    OMNIFUSE_DATA=DATA python benchmarks/experiments/seq_cnn.py --epochs 3
"""

import argparse
import collections
import time

import numpy as np
from nbsvm_tokenizers import letters, nbsvm_margins, ngram_rows  # beside this script

from omnifuse.data import imdb
from omnifuse.data.splits import holdout


def word_ids(token_lists, vocab: dict[str, int], max_len: int) -> list[np.ndarray]:
    return [
        np.array([vocab[w] for w in tokens if w in vocab][:max_len] or [0], np.int32)
        for tokens in token_lists
    ]


def batches(ids: list[np.ndarray], labels: np.ndarray, batch: int, shuffle: bool, rng):
    """Batches of reviews of similar length, padded with 0 to the longest in the batch."""
    order = np.argsort([len(x) for x in ids], kind="stable")
    groups = [order[i : i + batch] for i in range(0, len(order), batch)]
    if shuffle:
        rng.shuffle(groups)
    for group in groups:
        longest = max(len(ids[i]) for i in group)
        longest = int(np.ceil(longest / 64) * 64)  # a few distinct shapes, so few traces
        x = np.zeros((len(group), longest), np.int32)
        for row, i in enumerate(group):
            x[row, : len(ids[i])] = ids[i]
        yield x, labels[group].astype(np.float32), group


def build(vocab_size: int, maps: int, region: int, dropout: float):
    import keras
    from keras import layers, ops

    class RegionConv(layers.Layer):
        """A convolution over one-hot words: per region, the sum of one vector per (word, position), bias, ReLU."""

        def build(self, input_shape):
            init = keras.initializers.RandomNormal(0, 0.01)
            self.table = self.add_weight((vocab_size, region * maps), initializer=init, name="table")
            self.bias = self.add_weight((maps,), initializer="zeros", name="bias")

        def call(self, ids):
            e = ops.take(self.table, ids, axis=0)  # (B, L, region * maps)
            length = ops.shape(ids)[1]
            e = ops.pad(e, [[0, 0], [region - 1, region - 1], [0, 0]])
            h = sum(e[:, k : k + length + region - 1, k * maps : (k + 1) * maps] for k in range(region))
            return ops.relu(h + self.bias)

    ids = keras.Input((None,), dtype="int32")
    h = RegionConv()(ids)  # (B, L + region - 1, maps): every region that holds at least one position
    real = ops.cast(ids > 0, "float32")
    # a region counts when any of its words is a real word (not padding)
    mask = ops.max(ops.stack([ops.pad(real, [[0, 0], [k, region - 1 - k]]) for k in range(region)], 0), 0)[
        ..., None
    ]
    pooled_max = ops.max(h * mask, axis=1)
    pooled_mean = ops.sum(h * mask, axis=1) / ops.maximum(ops.sum(mask, axis=1), 1.0)
    z = layers.Dropout(dropout)(ops.concatenate([pooled_max, pooled_mean], -1))
    out = layers.Dense(1, activation="sigmoid")(z)
    return keras.Model(ids, out)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--vocab", type=int, default=30000)
    parser.add_argument("--maps", type=int, default=300)
    parser.add_argument("--region", type=int, default=3)
    parser.add_argument("--max-len", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--dropout", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--holdout", choices=("reviews", "films"), default="reviews")
    parser.add_argument("--save", default="", help="write validation and test probabilities to this .npz")
    args = parser.parse_args()

    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(args.seed)
    data = imdb.load()
    texts, labels = list(data["train"].inputs["text"]), np.asarray(data["train"].labels["sentiment"])
    x_test, y_test = list(data["test"].inputs["text"]), np.asarray(data["test"].labels["sentiment"])
    # 5% held out as omnifuse holds it out: single reviews, or whole films (data.group_holdout, the default)
    groups = data["train"].extra["group"] if args.holdout == "films" else None
    fit_i, val_i = map(np.sort, holdout(np.arange(len(texts)), labels, 0.05, args.seed, groups))
    x_fit, y_fit = [texts[i] for i in fit_i], labels[fit_i]
    x_val, y_val = [texts[i] for i in val_i], labels[val_i]

    start = time.perf_counter()
    tok_fit, tok_val, tok_test = ([letters(t) for t in xs] for xs in (x_fit, x_val, x_test))
    counts = collections.Counter(w for tokens in tok_fit for w in set(tokens))
    vocab = {w: i + 1 for i, (w, _) in enumerate(counts.most_common(args.vocab))}
    ids_fit, ids_val, ids_test = (word_ids(t, vocab, args.max_len) for t in (tok_fit, tok_val, tok_test))
    print(f"tokens: {time.perf_counter() - start:.0f} s", flush=True)

    model = build(len(vocab) + 1, args.maps, args.region, args.dropout)
    optimizer = keras.optimizers.Adam(args.lr)
    loss_fn = keras.losses.BinaryCrossentropy()

    @tf.function(reduce_retracing=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y[:, None], model(x, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    @tf.function(reduce_retracing=True)
    def predict(x):
        return model(x, training=False)[:, 0]

    def probabilities(ids):
        out = np.zeros(len(ids), np.float32)
        for x, _, group in batches(ids, np.zeros(len(ids)), 256, False, None):
            out[group] = predict(x).numpy()
        return out

    rng = np.random.default_rng(args.seed)
    train_time = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        for x, y, _ in batches(ids_fit, y_fit, args.batch, True, rng):
            step(x, y)
        train_time += time.perf_counter() - t0
        p_val, p_test = probabilities(ids_val), probabilities(ids_test)
        print(
            f"epoch {epoch + 1}: val {100 * np.mean((p_val > 0.5) == y_val):.2f}%, "
            f"test {100 * np.mean((p_test > 0.5) == y_test):.2f}%, training {train_time:.0f} s",
            flush=True,
        )

    t0 = time.perf_counter()
    rows = ngram_rows(letters, x_fit, x_val + x_test)
    margins = nbsvm_margins(rows[0], y_fit, rows[1])
    nb_val, nb_test = margins[: len(x_val)], margins[len(x_val) :]
    print(
        f"NBSVM test {100 * np.mean((nb_test > 0) == y_test):.2f}% ({time.perf_counter() - t0:.0f} s)",
        flush=True,
    )

    def logit(p):
        p = np.clip(p, 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    cnn_val, cnn_test = logit(p_val), logit(p_test)
    scale_nb, scale_cnn = np.std(nb_val), np.std(cnn_val)
    best = max(
        np.linspace(0, 1, 21),
        key=lambda w: np.mean(((w * nb_val / scale_nb + (1 - w) * cnn_val / scale_cnn) > 0) == y_val),
    )
    blend = best * nb_test / scale_nb + (1 - best) * cnn_test / scale_cnn
    print(
        f"blend (NBSVM weight {best:.2f}, chosen on validation): test {100 * np.mean((blend > 0) == y_test):.2f}%"
    )
    for w in (0.3, 0.4, 0.5, 0.6, 0.7):
        b = w * nb_test / scale_nb + (1 - w) * cnn_test / scale_cnn
        print(f"  weight {w:.1f}: test {100 * np.mean((b > 0) == y_test):.2f}%")
    if args.save:
        np.savez(
            args.save, cnn_val=cnn_val, cnn_test=cnn_test, nb_val=nb_val, nb_test=nb_test, val_index=val_i
        )


if __name__ == "__main__":
    main()
