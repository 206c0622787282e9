"""One 3x3 convolution's training work (forward, and the gradients for its input and its kernel) on this CPU, timed in
three ways: TensorFlow's own kernels (``tf.function``), TensorFlow through XLA (``jit_compile=True``) and JAX (XLA).

Why: the step-overhead ResNet trains about 3.3x slower per step with Keras on JAX than on TensorFlow, and 1.4x slower
on TensorFlow with ``train.jit_compile``; this isolates the convolution from Keras and omnifuse. If the XLA rows are
as slow per convolution as the whole step is, the gap is the compiler's CPU convolutions, not anything the model or
the training loop does.

    python benchmarks/experiments/conv_backends.py            # every shape, all three ways, one process each
    python benchmarks/experiments/conv_backends.py --repeats 20

The shapes are the step-overhead ResNet's (batch 128, channels-last): 64 channels at 32x32, 128 at 16x16 and 256 at
8x8. Each way runs in its own process so that the two frameworks' thread pools do not compete. Prints one row per
shape and way: the median milliseconds of ``repeats`` calls after two warm-up calls.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = ((32, 64), (16, 128), (8, 256))  # (height = width, channels in = channels out)
WAYS = ("tf", "tf-xla", "jax")


def _time(fn, repeats):
    fn()
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000.0


def _tf_ms(batch, size, ch, repeats, xla):
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)
    x = tf.constant(rng.standard_normal((batch, size, size, ch), dtype=np.float32))
    w = tf.Variable(rng.standard_normal((3, 3, ch, ch), dtype=np.float32) * 0.05)

    @tf.function(jit_compile=xla)
    def step(x):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = tf.nn.conv2d(x, w, 1, "SAME")
            loss = tf.reduce_sum(y * y)
        return tape.gradient(loss, [x, w])

    def call():
        for g in step(x):
            g.numpy()

    return _time(call, repeats)


def _jax_ms(batch, size, ch, repeats):
    import jax
    import jax.numpy as jnp
    import numpy as np

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((batch, size, size, ch), dtype=np.float32))
    w = jnp.asarray(rng.standard_normal((3, 3, ch, ch), dtype=np.float32) * 0.05)

    def loss(x, w):
        y = jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
        return jnp.sum(y * y)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def call():
        for g in step(x, w):
            g.block_until_ready()

    return _time(call, repeats)


def run(way, batch, repeats):
    rows = []
    for size, ch in SHAPES:
        if way == "jax":
            ms = _jax_ms(batch, size, ch, repeats)
        else:
            ms = _tf_ms(batch, size, ch, repeats, xla=way == "tf-xla")
        rows.append({"size": size, "channels": ch, "ms": ms})
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument(
        "--way", choices=WAYS, help="run one way in this process and print JSON (used internally)"
    )
    args = parser.parse_args()
    if args.way:
        print(json.dumps(run(args.way, args.batch, args.repeats)))
        return
    results = {}
    for way in WAYS:
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--way",
                way,
                "--batch",
                str(args.batch),
                "--repeats",
                str(args.repeats),
            ],
            check=True,
            capture_output=True,
            text=True,
            env=env,
        ).stdout
        results[way] = json.loads(out.strip().splitlines()[-1])
    print(
        f"batch {args.batch}, median of {args.repeats} calls (ms): forward + input and kernel gradients of one conv"
    )
    print(f"{'shape':>16} " + " ".join(f"{w:>8}" for w in WAYS) + "  tf-xla/tf  jax/tf")
    for i, (size, ch) in enumerate(SHAPES):
        ms = [results[w][i]["ms"] for w in WAYS]
        shape = f"{size}x{size}, {ch} ch"
        print(
            f"{shape:>16} "
            + " ".join(f"{m:8.1f}" for m in ms)
            + f"  {ms[1] / ms[0]:9.2f} {ms[2] / ms[0]:7.2f}"
        )


if __name__ == "__main__":
    main()
