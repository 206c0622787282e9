"""Numeric precision of a model: ``"float32"``, or ``"bfloat16"`` (Keras's ``mixed_bfloat16`` policy).

In ``"bfloat16"`` the layers compute in bfloat16 while their variables stay float32, so training updates and saved
weights keep full precision. On CPUs with AMX or AVX512-BF16 the oneDNN kernels behind convolutions and matrix
products run several times faster in bfloat16 (see benchmarks/RESULTS.md). What stays float32 whatever the
precision: the task heads and the modality-weight output (softmax and loss in full precision), and the parts of
encoders that need it: the raw waveform and its log-mel spectrogram, the tabular standardisation, and the ``nb``
text encoder's n-gram margins (sums of thousands of terms). Their layers pin themselves, so a model saved in one
precision loads in the other with :func:`load_model` and the same weights.

``"auto"`` is bfloat16 where the hardware computes it natively (a GPU, or a CPU with AVX512-BF16 or AMX) and float32
elsewhere: on a CPU without them bfloat16 is emulated, and cifar10-fast's training step took 11 times as long in
bfloat16 as in float32 on an AVX2-only CPU (benchmarks/RESULTS.md). The fast CIFAR-10 presets use it.

Example: ``with precision_scope("bfloat16"): model = build_model(...)`` builds a bfloat16 model.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import keras

from omnifuse.errors import OmnifuseError

PRECISIONS = ("float32", "bfloat16", "auto")
POLICIES = {"float32": "float32", "bfloat16": "mixed_bfloat16"}
_BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")  # /proc/cpuinfo's names for native bfloat16 arithmetic


def check_precision(precision: str) -> str:
    """``precision`` resolved: ``"float32"`` or ``"bfloat16"`` as given, ``"auto"`` as :func:`native_bfloat16`
    decides; anything else is an error naming the valid values."""
    if precision not in PRECISIONS:
        raise OmnifuseError(
            f"Expected precision to be one of {', '.join(PRECISIONS)}. Received: {precision!r}"
        )
    if precision == "auto":
        return "bfloat16" if native_bfloat16() else "float32"
    return precision


@functools.cache
def native_bfloat16() -> bool:
    """Whether this machine computes bfloat16 natively: the Keras backend sees a GPU, or the CPU (as Linux's
    ``/proc/cpuinfo`` lists it) has AVX512-BF16 or AMX. False where neither can be told (float32 is the safe side)."""
    if _backend_has_gpu():
        return True
    try:
        return cpuinfo_has_bfloat16(Path("/proc/cpuinfo").read_text())
    except OSError:
        return False


def cpuinfo_has_bfloat16(cpuinfo: str) -> bool:
    """Whether a ``/proc/cpuinfo`` text lists AVX512-BF16 or AMX-BF16 among the CPU's flags."""
    flags = set(cpuinfo.split())
    return any(flag in flags for flag in _BF16_CPU_FLAGS)


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
