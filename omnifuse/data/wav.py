"""Decoding WAV files into fixed-length mono waveforms, with errors that name the file.

Used by the audio loaders (FSDD, AV-digits) and by the Predictor, so a recording handed over at serve time is
turned into exactly the array the model saw in training: mono, at one sample rate, of one length.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import numpy as np
import soundfile
from scipy.signal import resample_poly

from omnifuse.errors import OmnifuseError

# The RIFF/WAVE family as libsndfile names it (WAVEX = WAVE_FORMAT_EXTENSIBLE, used for >2 channels / 24-bit).
WAV_FORMATS = ("WAV", "WAVEX", "RF64", "W64")
MAX_RESAMPLE_FACTOR = 1000  # largest up or down factor of the reduced rate ratio resample_poly is asked for


def _describe(src) -> str:
    return "<bytes>" if isinstance(src, (bytes, bytearray, memoryview)) else f"'{src}'"


def resample_factors(from_rate: int, to_rate: int, where: str = "<audio>") -> tuple[int, int]:
    """The reduced ``(up, down)`` with ``to_rate / from_rate == up / down``; an error when either exceeds 1000.

    Example: ``resample_factors(44100, 8000) == (80, 441)``.
    """
    if from_rate <= 0 or to_rate <= 0:
        raise OmnifuseError(
            f"Expected positive sample rates. Received: {where} at {from_rate} Hz, to be resampled to {to_rate} Hz"
        )
    g = math.gcd(int(from_rate), int(to_rate))
    up, down = int(to_rate) // g, int(from_rate) // g
    if max(up, down) > MAX_RESAMPLE_FACTOR:
        raise OmnifuseError(
            f"Expected a sample rate that resamples to {to_rate} Hz with a ratio up/down of at most "
            f"{MAX_RESAMPLE_FACTOR}. Received: {where} at {from_rate} Hz (ratio {up}/{down}); convert the file to a "
            "common rate (8000, 16000, 22050, 44100, 48000 Hz) first"
        )
    return up, down


def fit_length(wave: np.ndarray, num_samples: int) -> np.ndarray:
    """``wave`` centre-padded with zeros or centre-cropped to ``num_samples`` (extra sample goes to the end)."""
    n = len(wave)
    if n == num_samples:
        return wave
    if n < num_samples:
        left = (num_samples - n) // 2
        return np.pad(wave, (left, num_samples - n - left))
    start = (n - num_samples) // 2
    return wave[start : start + num_samples]


def decode_wav(
    src: str | os.PathLike | bytes,
    sample_rate: int = 8000,
    num_samples: int | None = None,
) -> np.ndarray:
    """Decode a WAV file (or its bytes) into a ``float32`` mono waveform at ``sample_rate``, in [-1, 1] for PCM.

    Any channel count is mixed down to mono by averaging; any other rate is resampled with
    ``scipy.signal.resample_poly`` (polyphase, anti-aliased) using the reduced up/down ratio; with ``num_samples``
    the result is centre-padded with zeros or centre-cropped to exactly that length.
    Raises :class:`OmnifuseError` naming the file for non-WAV or damaged data, files with no frames, files that are
    silent throughout, and rates that cannot be resampled.

    Example: ``decode_wav("7_george_0.wav", 8000, 8000).shape == (8000,)``.
    """
    name = _describe(src)
    if not isinstance(sample_rate, (int, np.integer)) or isinstance(sample_rate, bool) or sample_rate <= 0:
        raise OmnifuseError(f"Expected sample_rate to be a positive integer (Hz). Received: {sample_rate!r}")
    if num_samples is not None and (
        not isinstance(num_samples, (int, np.integer)) or isinstance(num_samples, bool) or num_samples <= 0
    ):
        raise OmnifuseError(
            f"Expected num_samples to be a positive integer or None. Received: {num_samples!r}"
        )
    if isinstance(src, (bytes, bytearray, memoryview)):
        if len(src) == 0:
            raise OmnifuseError("Expected WAV bytes. Received: <bytes> of length 0")
        opened = io.BytesIO(bytes(src))
    else:
        opened = Path(src)
        if not opened.is_file():
            raise OmnifuseError(
                f"Expected a WAV file. Received: {name}, which does not exist or is not a file"
            )
    try:
        with soundfile.SoundFile(opened) as f:
            if f.format not in WAV_FORMATS:
                raise OmnifuseError(f"Expected a WAV file. Received: {name}, which is {f.format} audio")
            rate = int(f.samplerate)
            frames = f.read(dtype="float32", always_2d=True)
    except OmnifuseError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        raise OmnifuseError(
            f"Expected a readable WAV file (RIFF/WAVE, PCM or float). Received: {name}, which cannot be decoded: "
            f"{exc}"
        ) from exc
    if frames.shape[0] == 0:
        raise OmnifuseError(f"Expected a WAV file with audio in it. Received: {name} with 0 frames")
    if not np.all(np.isfinite(frames)):
        raise OmnifuseError(
            f"Expected finite sample values. Received: {name}, which holds NaN or infinite samples"
        )
    wave = frames.mean(axis=1, dtype=np.float32) if frames.shape[1] > 1 else frames[:, 0]
    if not np.any(wave):
        raise OmnifuseError(
            f"Expected a WAV file with sound in it. Received: {name}, whose {len(wave)} samples are all zero"
            + (" after mixing its channels to mono" if frames.shape[1] > 1 and np.any(frames) else "")
        )
    if rate != sample_rate:
        up, down = resample_factors(rate, sample_rate, name)
        wave = resample_poly(wave, up, down).astype(np.float32)
    if num_samples is not None:
        wave = fit_length(wave, int(num_samples))
    return np.ascontiguousarray(wave, dtype=np.float32)
