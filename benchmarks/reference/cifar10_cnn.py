"""The plain-Keras reference for CIFAR-10: the Keras examples' CNN, as a user would write it.

conv32-conv32-pool-dropout-conv64-conv64-pool-dropout-dense512-dropout-softmax, random flip + shift augmentation,
RMSprop(1e-4) and batch 32 as in the example (or ``--optimizer adam``). The data comes from omnifuse's loader, so
both sides read the same files; the record (``--json``) is written with omnifuse's benchmark recorder, so both are
timed the same way. Run by ``omnifuse bench NAME --compare cifar10_cnn``, or alone:

    python benchmarks/reference/cifar10_cnn.py --epochs 25 --data-dir DATA --json out.json
"""

import time

import keras
import numpy as np
from keras import layers

from omnifuse.bench import EpochRecorder, finish_reference, reference_parser
from omnifuse.data import cifar10
from omnifuse.evaluation import task_metrics


def build_model() -> keras.Model:
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            layers.RandomFlip("horizontal"),
            layers.RandomTranslation(0.1, 0.1),
            layers.Conv2D(32, 3, padding="same", activation="relu"),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Conv2D(64, 3, padding="same", activation="relu"),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Dropout(0.25),
            layers.Flatten(),
            layers.Dense(512, activation="relu"),
            layers.Dropout(0.5),
            layers.Dense(10, activation="softmax"),
        ]
    )


def main() -> None:
    parser = reference_parser(__doc__, epochs=50, batch_size=32)
    parser.add_argument("--optimizer", choices=["rmsprop", "adam"], default="rmsprop")
    args = parser.parse_args()
    start = time.perf_counter()
    keras.utils.set_random_seed(args.seed)

    data = cifar10.load(args.data_dir)
    x_train, y_train = data["train"].inputs["image"], data["train"].labels["cifar10"]
    x_test, y_test = data["test"].inputs["image"], data["test"].labels["cifar10"]
    if args.limit_train:
        x_train, y_train = x_train[: args.limit_train], y_train[: args.limit_train]
    x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255

    model = build_model()
    optimizer = keras.optimizers.RMSprop(1e-4) if args.optimizer == "rmsprop" else keras.optimizers.Adam(1e-3)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    recorder = EpochRecorder(x_test, {"cifar10": y_test}, batch_size=256)
    model.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[recorder], verbose=2
    )

    probs = model.predict(x_test, batch_size=256, verbose=0)
    final = task_metrics(y_test, probs, data.tasks["cifar10"])
    finish_reference(
        args, recorder, "cifar10", final, start, np.sum([np.prod(w.shape) for w in model.trainable_weights])
    )


if __name__ == "__main__":
    main()
