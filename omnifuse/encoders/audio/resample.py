"""Band-limited resampling of waveforms between integer sample rates, in ``keras.ops`` (one strided convolution).

Any pair of integer rates works: the ratio is reduced to ``up / down`` by their gcd (8000 -> 16000 is 2 / 1,
22050 -> 16000 is 320 / 441, 44100 -> 16000 is 160 / 441). Output sample ``n`` sits at input time
``t = n * down / up``; it is a sum of the input samples around ``t`` weighted by a Kaiser-windowed sinc whose cutoff
is ``rolloff`` times the lower of the two Nyquist frequencies (so upsampling removes the spectral images and
downsampling removes what would alias). The offsets ``t - floor(t)`` repeat every ``up`` outputs, so the filter has
``up`` phases; each phase is one output channel of a single ``conv1d`` of stride ``down``, and the channels
interleave back into time. Outside the clip the input counts as zeros.

The default filter (64 zero crossings, rolloff 0.945, Kaiser beta 14.77) follows the "best" settings of the
band-limited interpolation of J. O. Smith's Digital Audio Resampling Home Page as used by resampy's ``kaiser_best``.
Measured for 8 -> 16 kHz: flat within 0.001 dB up to 88% of the input's Nyquist frequency (3.52 kHz), -0.06 dB at
90%, -6 dB at 94.5%, -61 dB at the Nyquist frequency, below -140 dB from 104% on; a 440 Hz tone comes out within
3e-7 of the tone sampled at 16 kHz.
"""

from __future__ import annotations

import math

import numpy as np
from keras import ops

from omnifuse.errors import OmnifuseError


def polyphase_filter(
    up: int, down: int, zero_crossings: int = 64, rolloff: float = 0.945, beta: float = 14.77
) -> tuple[np.ndarray, int]:
    """The (taps, up) kernel of the resampler and the input offset of its first tap (<= 0)."""
    scale = min(1.0, up / down)  # cutoff relative to the input's Nyquist frequency
    cutoff = 0.5 * scale * rolloff  # cycles per input sample
    half = zero_crossings / scale  # filter half-width, in input samples
    phases = np.arange(up) * down / up  # t - q * down for output q * up + p
    first = math.ceil(-half)
    last = math.floor(phases[-1] + half)
    taps = np.arange(first, last + 1, dtype=np.float64)  # input offsets j around q * down
    tau = phases[None, :] - taps[:, None]  # (taps, up): time from input sample to output sample
    inside = np.abs(tau) < half
    window = np.where(
        inside, np.i0(beta * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, 1.0))) / np.i0(beta), 0.0
    )
    kernel = 2.0 * cutoff * np.sinc(2.0 * cutoff * tau) * window
    return kernel.astype(np.float32), first


def resampled_length(samples: int, rate_in: int, rate_out: int) -> int:
    """Samples of a clip of ``samples`` at ``rate_in`` once at ``rate_out`` (ceil, so no input sample is lost)."""
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    return -(-samples * up // down)


def resample(waveform, rate_in: int, rate_out: int, kernel: tuple[np.ndarray, int] | None = None):
    """Resample float (B, samples) ``waveform`` from ``rate_in`` to ``rate_out`` Hz (integers). Same rate: unchanged.

    ``kernel`` is :func:`polyphase_filter`'s result for the reduced ratio (computed here when not given; a layer
    computes it once). The input length must be static.

    Example: ``resample(ops.zeros((2, 8000)), 8000, 16000).shape == (2, 16000)``.
    """
    if rate_in <= 0 or rate_out <= 0 or int(rate_in) != rate_in or int(rate_out) != rate_out:
        raise OmnifuseError(f"Expected positive integer sample rates. Received: {rate_in!r} -> {rate_out!r}")
    if rate_in == rate_out:
        return waveform
    g = math.gcd(rate_in, rate_out)
    up, down = rate_out // g, rate_in // g
    taps, first = kernel if kernel is not None else polyphase_filter(up, down)
    samples = waveform.shape[-1]
    if samples is None:
        raise OmnifuseError(
            "Expected waveforms of a fixed length (data.num_samples) to resample. Received: a variable length"
        )
    wanted = resampled_length(samples, rate_in, rate_out)
    blocks = -(-wanted // up)  # conv outputs; each gives `up` samples
    padded = (blocks - 1) * down + taps.shape[0]  # input span the last block reads
    left = -first
    right = max(0, padded - left - samples)
    x = ops.pad(ops.cast(waveform, "float32"), ((0, 0), (left, right)))
    x = ops.expand_dims(x, -1)  # (B, samples, 1)
    y = ops.conv(x, ops.convert_to_tensor(taps[:, None, :]), strides=down, padding="valid")  # (B, blocks, up)
    y = ops.reshape(y[:, :blocks, :], (-1, blocks * up))
    return y[:, :wanted]
