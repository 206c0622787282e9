"""Decoding WAV files into fixed-length mono waveforms, with errors that name the file.

Used by the audio loaders (FSDD, AV-digits) and by the Predictor, so a recording handed over at serve time is
turned into exactly the array the model saw in training: mono, at one sample rate, of one length.
"""

from __future__ import annotations

import io
import math
import os
import struct
from pathlib import Path

import numpy as np
import soundfile

from omnifuse.errors import OmnifuseError

# The RIFF/WAVE family as libsndfile names it (WAVEX = WAVE_FORMAT_EXTENSIBLE, used for >2 channels / 24-bit).
WAV_FORMATS = ("WAV", "WAVEX", "RF64", "W64")
MAX_RESAMPLE_FACTOR = 1000  # largest up or down factor of the reduced rate ratio resample_poly is asked for


def _describe(src) -> str:
    from omnifuse.data.decode import describe_source

    return describe_source(src)


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


def _riff_shortfall(head: bytes, size: int, name: str) -> tuple[int, int] | None:
    """``(promised, present)`` bytes of a RIFF/WAVE file's ``data`` chunk when the file holds less than its header
    says; ``None`` when it holds all of it (or is not plain RIFF). ``head``: the file's first bytes, ``size``: its
    length. A chunk before ``data`` that runs past the end is a truncated header."""
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = head[pos : pos + 4], struct.unpack("<I", head[pos + 4 : pos + 8])[0]
        if chunk == b"data":
            present = size - pos - 8
            # 0 and 0xFFFFFFFF: a writer that streamed and never went back to fill in the size
            if length in (0, 0xFFFFFFFF) or length <= present:
                return None
            return length, present
        pos += 8 + length + (length & 1)
    if pos > size:
        raise OmnifuseError(
            f"Expected a complete WAV file. Received: {name}, whose header is cut off ({size} bytes, a header "
            f"chunk runs to byte {pos})"
        )
    return None


def decode_wav(
    src: str | os.PathLike | bytes,
    sample_rate: int = 8000,
    num_samples: int | None = None,
    max_seconds: float | None = None,
) -> np.ndarray:
    """Decode a WAV file (or its bytes) into a ``float32`` mono waveform at ``sample_rate``, in [-1, 1] for PCM.

    Any channel count is mixed down to mono by averaging; any other rate is resampled with
    ``scipy.signal.resample_poly`` (polyphase, anti-aliased) using the reduced up/down ratio; with ``num_samples``
    the result is centre-padded with zeros or centre-cropped to exactly that length.
    Raises :class:`OmnifuseError` naming the file for non-WAV or damaged data, a file shorter than its header says
    (truncated: decoding what is there would give a confident answer about part of a recording), files with no
    frames, files that are silent throughout, rates that cannot be resampled, and (``max_seconds``) recordings
    whose header states a longer duration.

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
        head, size = bytes(src[:65536]), len(src)
    else:
        opened = Path(src)
        if not opened.is_file():
            raise OmnifuseError(
                f"Expected a WAV file. Received: {name}, which does not exist or is not a file"
            )
        try:
            with opened.open("rb") as f:
                head, size = f.read(65536), opened.stat().st_size
        except OSError as exc:
            raise OmnifuseError(
                f"Expected a readable WAV file. Received: {name}: {exc.strerror or exc}"
            ) from exc
    try:
        with soundfile.SoundFile(opened) as f:
            if f.format not in WAV_FORMATS:
                raise OmnifuseError(f"Expected a WAV file. Received: {name}, which is {f.format} audio")
            rate = int(f.samplerate)
            if max_seconds is not None and f.frames > max_seconds * rate:
                raise OmnifuseError(
                    f"Expected a recording of at most {max_seconds:g} s. Received: {name}, "
                    f"{f.frames / rate:.1f} s long"
                )
            short = _riff_shortfall(head, size, name)
            if short is not None:
                raise OmnifuseError(
                    f"Expected a complete WAV file. Received: {name}, truncated: its header promises "
                    f"{short[0]} bytes of audio, the file holds {short[1]}"
                )
            frames = f.read(dtype="float32", always_2d=True)
    except OmnifuseError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError, TypeError) as exc:
        # libsndfile's message names the file object (``<_io.BytesIO object at 0x...>``): keep only its reason
        reason = getattr(exc, "error_string", None) or str(exc).replace(repr(opened), "").strip(" :")
        raise OmnifuseError(
            f"Expected a readable WAV file (RIFF/WAVE, PCM or float). Received: {name}, which cannot be decoded: "
            f"{reason}"
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
        from scipy.signal import resample_poly  # scipy.signal takes ~1 s to import: only when resampling

        wave = resample_poly(wave, up, down).astype(np.float32)
    if num_samples is not None:
        wave = fit_length(wave, int(num_samples))
    return np.ascontiguousarray(wave, dtype=np.float32)
