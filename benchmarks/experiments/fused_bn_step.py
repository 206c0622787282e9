"""Training steps of omnifuse's batch-norm CNN encoders with TensorFlow's fused batch norm (omnifuse's
``BatchNormalization`` while training, since 2026-12-07) against Keras's own (moments and element-wise ops), in one
process with the two models' steps interleaved, so that the machine's swings hit both alike.

    python benchmarks/experiments/fused_bn_step.py                 # every encoder below, 20 steps each
    python benchmarks/experiments/fused_bn_step.py --only audio-cnn --steps 40

Each encoder gets a linear head and SGD; inputs are random, of the preset's shape and batch: the step's cost does not
depend on the values. Prints the median step per side, its ratio and images (or clips) per second. Float32.
"""

from __future__ import annotations

import argparse
import statistics
import time

import keras
import numpy as np


def _encoders():
    from omnifuse.encoders.audio.cnn import AudioCNN
    from omnifuse.encoders.image import ImageFastNet
    from omnifuse.encoders.image.cnn import ImageCNN
    from omnifuse.encoders.image.resnet import ImageResNet

    # name -> (encoder factory, input shape without the batch, dtype, batch): the presets' settings
    return {
        "fastnet-narrow (cifar10-fast-variants:wide-muon-5ep-lowres)": (
            lambda: ImageFastNet(
                widths=(32, 128, 192), bn_momentum=0.8, whiten_bias_epochs=1, activation="quick_gelu"
            ),
            (32, 32, 3),
            "uint8",
            256,
        ),
        "fastnet (cifar10-94, cifar10-fast)": (
            lambda: ImageFastNet(widths=(64, 256, 256)),
            (32, 32, 3),
            "uint8",
            256,
        ),
        "cnn (cifar10-cnn)": (lambda: ImageCNN(filters=(32, 64), dense_units=512), (32, 32, 3), "uint8", 128),
        "resnet (pneumonia)": (
            lambda: ImageResNet(widths=(32, 64, 128), dense_units=128, dropout=0.3),
            (28, 28, 1),
            "uint8",
            64,
        ),
        "audio-cnn (fsdd)": (lambda: AudioCNN(sample_rate=8000), (8000,), "float32", 32),
    }


def _model(factory, shape, dtype):
    inputs = keras.Input(shape, dtype=dtype)
    outputs = keras.layers.Dense(10)(factory()(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer=keras.optimizers.SGD(0.01, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def measure(name, factory, shape, dtype, batch, steps, warmup=3):
    import tensorflow as tf

    from omnifuse.encoders.layers import BatchNormalization

    rng = np.random.default_rng(0)
    if dtype == "uint8":
        x = tf.constant(rng.integers(0, 256, (batch, *shape), dtype=np.uint8))
    else:
        x = tf.constant(rng.normal(0.0, 0.1, (batch, *shape)).astype(dtype))
    y = tf.constant(rng.integers(0, 10, (batch,)))
    models = {}
    fusable = BatchNormalization._fusable
    for side in ("fused", "keras"):
        if side == "keras":  # the step is traced now, with Keras's own batch norm, and keeps it
            BatchNormalization._fusable = lambda self, inputs, mask: False
        try:
            models[side] = _model(factory, shape, dtype)
            for _ in range(warmup):
                models[side].train_on_batch(x, y)
        finally:
            BatchNormalization._fusable = fusable
    times = {side: [] for side in models}
    for _ in range(steps):
        for side, model in models.items():
            began = time.perf_counter()
            model.train_on_batch(x, y)
            times[side].append(time.perf_counter() - began)
    fused, plain = (statistics.median(times[s]) for s in ("fused", "keras"))
    print(
        f"{name}: batch {batch}, median step fused {1e3 * fused:.1f} ms, Keras {1e3 * plain:.1f} ms, "
        f"ratio {fused / plain:.3f}, {batch / fused:.0f} against {batch / plain:.0f} samples/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per side")
    parser.add_argument("--only", help="the encoders whose name contains this")
    args = parser.parse_args()
    for name, (factory, shape, dtype, batch) in _encoders().items():
        if args.only and args.only not in name:
            continue
        measure(name, factory, shape, dtype, batch, args.steps)


if __name__ == "__main__":
    main()
