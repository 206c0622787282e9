"""Numeric precision of a model: ``"float32"``, or ``"bfloat16"`` (Keras's ``mixed_bfloat16`` policy).

In ``"bfloat16"`` the layers compute in bfloat16 while their variables stay float32, so training updates and saved
weights keep full precision. On CPUs with AMX or AVX512-BF16 the oneDNN kernels behind convolutions and matrix
products run several times faster in bfloat16 (see benchmarks/RESULTS.md). What stays float32 whatever the
precision: the task heads and the modality-weight output (softmax and loss in full precision), and the parts of
encoders that need it: the raw waveform and its log-mel spectrogram, the tabular standardisation, and the ``nb``
text encoder's n-gram margins (sums of thousands of terms). Their layers pin themselves, so a model saved in one
precision loads in the other with :func:`load_model` and the same weights.

``"auto"`` is bfloat16 where it is faster: on a GPU; on a CPU only where it computes bfloat16 natively (AVX512-BF16
or AMX: elsewhere bfloat16 is emulated, and cifar10-fast's training step took 11 times as long in bfloat16 as in
float32 on an AVX2-only CPU) *and* a short measurement says so. Native is not always faster: on an Intel Xeon
listing AVX512-BF16 but not AMX, cifar10-94's training step took 1.71x as long in bfloat16 as in float32 and MiniLM's
1.44x, while on CPUs with AMX, and on an AMD EPYC with AVX512-BF16, bfloat16 was the faster (benchmarks/RESULTS.md).
So the first "auto" on such a CPU times a small convolution + batch-norm + GELU + dense training step in both
precisions (about a second) and keeps the answer in the user cache (``$OMNIFUSE_CACHE/precision.json``, one entry
per CPU model, flags, core count and TensorFlow version); ``OMNIFUSE_AUTO_PRECISION=float32`` (or ``bfloat16``)
decides without measuring. The fast CIFAR-10 presets use "auto".

Example: ``with precision_scope("bfloat16"): model = build_model(...)`` builds a bfloat16 model.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import statistics
import time
from collections.abc import Iterator

import keras

from omnifuse.errors import OmnifuseError
from omnifuse.hardware import cpu_model, read_cpuinfo

PRECISIONS = ("float32", "bfloat16", "auto")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for native bfloat16 arithmetic


def check_precision(precision: str) -> str:
    """``precision`` resolved: ``"float32"`` or ``"bfloat16"`` as given, ``"auto"`` as :func:`auto_precision`
    decides; anything else is an error naming the valid values."""
    if precision not in PRECISIONS:
        raise OmnifuseError(
            f"Expected precision to be one of {', '.join(PRECISIONS)}. Received: {precision!r}"
        )
    if precision == "auto":
        return auto_precision()
    return precision


AUTO_ENV = "OMNIFUSE_AUTO_PRECISION"  # "float32" or "bfloat16": what "auto" means here, without measuring
MIN_SPEEDUP = 1.15  # bfloat16 is chosen where the measured step runs at least this much faster in it


@functools.cache
def auto_precision() -> str:
    """What ``"auto"`` means on this machine: ``$OMNIFUSE_AUTO_PRECISION`` where set; bfloat16 with a GPU; float32 on
    a CPU without native bfloat16; else the faster of the two in :func:`bfloat16_speedup`'s measurement, taken once
    per machine and kept in the user cache. The measurement runs TensorFlow ops: under another Keras backend a CPU
    gets float32 (set the precision, or the variable, to have bfloat16 there)."""
    pinned = os.environ.get(AUTO_ENV, "").strip()
    if pinned:
        if pinned not in POLICIES:
            raise OmnifuseError(f"Expected {AUTO_ENV} to be float32 or bfloat16. Received: {pinned!r}")
        return pinned
    if _backend_has_gpu():
        return "bfloat16"
    cpuinfo = read_cpuinfo()  # "" where it cannot be read: float32, the safe side
    if not cpuinfo_has_bfloat16(cpuinfo) or keras.backend.backend() != "tensorflow":
        return "float32"
    return _measured_choice(cpuinfo)


def _measured_choice(cpuinfo: str) -> str:
    """bfloat16 or float32 by :func:`bfloat16_speedup`, read from the user cache where this machine was measured."""
    import tensorflow as tf

    from omnifuse.data.sources import cache_dir
    from omnifuse.rundir import atomic_write_json

    key = f"{cpu_model(cpuinfo)} | {' '.join(_bfloat16_flags(cpuinfo))} | {os.cpu_count()} cpus | tensorflow {tf.__version__}"
    path = cache_dir() / "precision.json"
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    entry = known.get(key)
    choice = entry.get("precision") if isinstance(entry, dict) else None
    if choice in POLICIES:
        return choice
    speedup = bfloat16_speedup()
    choice = "bfloat16" if speedup >= MIN_SPEEDUP else "float32"
    known[key] = {"precision": choice, "bfloat16_speedup": round(speedup, 3)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(path, known)
    except OSError:
        pass  # a read-only cache: measured again next time
    return choice


def bfloat16_speedup(repeats: int = 7) -> float:
    """How many times faster a small training step runs in bfloat16 than in float32 here (float32 time / bfloat16
    time, medians of ``repeats`` interleaved calls after two warm-up calls): a 3x3 convolution of 64 channels on 32
    16x16 maps, batch-normalised, GELU; a 384-wide dense layer on 256 rows, GELU; the gradients of both kernels."""
    import numpy as np
    import tensorflow as tf

    rng = np.random.default_rng(0)

    def step_in(dtype):
        x = tf.constant(rng.standard_normal((32, 16, 16, 64)), dtype)
        kernel = tf.Variable(rng.standard_normal((3, 3, 64, 64)) * 0.05, dtype=tf.float32)
        rows = tf.constant(rng.standard_normal((256, 384)), dtype)
        weights = tf.Variable(rng.standard_normal((384, 384)) * 0.05, dtype=tf.float32)

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                y = tf.nn.conv2d(x, tf.cast(kernel, dtype), 1, "SAME")
                mean, var = tf.nn.moments(y, axes=[0, 1, 2])
                y = tf.nn.gelu((y - mean) * tf.math.rsqrt(var + 1e-3))
                z = tf.nn.gelu(tf.matmul(rows, tf.cast(weights, dtype)))
                loss = tf.reduce_mean(tf.cast(y, tf.float32)) + tf.reduce_mean(tf.cast(z, tf.float32))
            return tape.gradient(loss, [kernel, weights])

        return step

    steps = {"float32": step_in(tf.float32), "bfloat16": step_in(tf.bfloat16)}
    for step in steps.values():
        step()
        step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            [g.numpy() for g in step()]
            times[name].append(time.perf_counter() - start)
    return statistics.median(times["float32"]) / statistics.median(times["bfloat16"])


def _bfloat16_flags(cpuinfo: str) -> list[str]:
    """The native-bfloat16 flags (AVX512-BF16, AMX-BF16) a ``/proc/cpuinfo`` text lists, sorted."""
    return sorted(set(cpuinfo.split()) & set(_BF16_CPU_FLAGS))


def cpuinfo_has_bfloat16(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists AVX512-BF16 or AMX-BF16 among the CPU's flags."""
    return bool(_bfloat16_flags(cpuinfo))


def _backend_has_gpu() -> bool:
    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_physical_devices("GPU"))
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
    except Exception:  # noqa: BLE001  (a backend that cannot say: treat as CPU)
        return False
    return False


@contextlib.contextmanager
def precision_scope(precision: str) -> Iterator[None]:
    """Layers created inside take ``precision``'s dtype policy (Keras's global default), restored on exit."""
    policy = POLICIES[check_precision(precision)]
    before = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(before)


def model_precision(model: keras.Model) -> str:
    """``"bfloat16"`` if any layer of ``model`` computes in bfloat16, else ``"float32"``."""
    return "bfloat16" if any(layer.compute_dtype == "bfloat16" for layer in model.layers) else "float32"
