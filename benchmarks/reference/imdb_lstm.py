"""The plain-Keras reference for IMDb: the Keras examples' Embedding -> LSTM classifier, as a user would write it.

Its own TextVectorization (20,000 words, 200 tokens), Embedding(128) -> LSTM(128) -> sigmoid, Adam, batch 32, as in
the example. The reviews come from omnifuse's loader, so both sides read the same files; the record (``--json``) is
written with omnifuse's benchmark recorder, so both are timed the same way. Run by
``omnifuse bench NAME --compare imdb_lstm``, or alone:

    python benchmarks/reference/imdb_lstm.py --epochs 2 --data-dir DATA --json out.json
"""

import time

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from omnifuse.bench import EpochRecorder, finish_reference, reference_parser
from omnifuse.data import imdb
from omnifuse.evaluation import task_metrics


def main() -> None:
    parser = reference_parser(__doc__, epochs=2, batch_size=32)
    parser.add_argument("--max-tokens", type=int, default=20000)
    parser.add_argument("--maxlen", type=int, default=200)
    args = parser.parse_args()
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)

    data = imdb.load(args.data_dir)
    x_train, y_train = data["train"].inputs["text"], data["train"].labels["sentiment"]
    x_test, y_test = data["test"].inputs["text"], data["test"].labels["sentiment"]
    if args.limit_train:  # the files are ordered by label: take a random subset
        keep = np.random.default_rng(args.seed).permutation(len(x_train))[: args.limit_train]
        x_train, y_train = x_train[keep], y_train[keep]

    vectorize = layers.TextVectorization(max_tokens=args.max_tokens, output_sequence_length=args.maxlen)
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(x_train.astype(str)).batch(1024))
    train_ds = (
        tf.data.Dataset.from_tensor_slices((x_train.astype(str), y_train))
        .shuffle(len(x_train), seed=args.seed)
        .batch(args.batch_size)
        .map(lambda x, y: (vectorize(x), y), num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )
    test_ids = vectorize(x_test.astype(str)).numpy()

    model = keras.Sequential(
        [
            keras.Input((args.maxlen,), dtype="int64"),
            layers.Embedding(args.max_tokens, 128),
            layers.LSTM(128, dropout=0.2),
            layers.Dense(1, activation="sigmoid"),
        ]
    )
    model.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    recorder = EpochRecorder(test_ids, {"sentiment": y_test}, batch_size=256)
    model.fit(train_ds, epochs=args.epochs, callbacks=[recorder], verbose=2)

    p = model.predict(test_ids, batch_size=256, verbose=0)[:, 0]
    final = task_metrics(y_test, np.stack([1 - p, p], axis=1), data.tasks["sentiment"])
    finish_reference(
        args, recorder, "sentiment", final, start, np.sum([np.prod(w.shape) for w in model.trainable_weights])
    )


if __name__ == "__main__":
    main()
