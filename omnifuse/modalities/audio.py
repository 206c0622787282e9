"""Audio: float32 (B, samples) waveforms in [-1, 1]; corruption is Gaussian noise scaled by each clip's RMS
(levels 0.25, 0.5, 1, 2 are SNRs of 12, 6, 0 and -6 dB)."""

from __future__ import annotations

from omnifuse.modalities.image import _digest, _noisy

DTYPE = "float32"
CORRUPTION = "Gaussian noise, std / RMS"
MAX_LEVEL = 2.0
LEVELS = (0.0, 0.25, 0.5, 1.0, MAX_LEVEL)
VOCABULARY = False  # no vocabulary learnt from the training data
CELL = "path"  # a CSV cell holds a WAV file's path (relative to the CSV)
SUFFIXES = (".wav", ".wave")  # the files of a folder (or a CSV column) that hold recordings
REQUEST = "file"  # a request sends a WAV file (base64 in JSON)
EXPLAIN = "integrated_gradients"  # how omnifuse/evaluation/explain.py scores a sample
CONTENT_TYPES = ("audio/wav", "audio/x-wav", "audio/wave", "audio/vnd.wave")
COLUMN_KINDS = ("audio",)  # a table's column of WAV files


def sample_shape(*, num_samples: int = 0, **_) -> tuple[int, ...]:
    return (int(num_samples),)


def read_cell(cell, files, column_kind: str = "audio"):
    """A table's audio cell (a WAV path relative to the table, or a folder's file) as a float32 waveform of
    ``files.num_samples`` at ``files.sample_rate`` (``files``: the loader's :class:`omnifuse.data.cells.Decoder`)."""
    from omnifuse.data.wav import decode_wav

    return decode_wav(files.file(cell), files.sample_rate, files.num_samples)


def column_array(n: int, files):
    """The array a table's audio column fills: silent (n, samples) float32 clips."""
    import numpy as np

    return np.zeros((n, files.num_samples), dtype=np.float32)


def id_reason(filled: list[str], column_kind: str) -> None:
    """A column of WAV paths is never an id."""
    return None


def warn_column(path, column: str, values: list[str], log) -> bool:
    """Nothing to warn about in a column of WAV paths."""
    return False


def blank(batch, shape):
    import tensorflow as tf

    return tf.zeros([batch, *shape], tf.float32)


def corrupt(value, level, seed):
    """``value`` (B, samples) with Gaussian noise of ``level`` (B,) times each clip's RMS."""
    import tensorflow as tf

    x = tf.cast(value, tf.float32)
    scale = tf.sqrt(tf.reduce_mean(tf.square(x), axis=list(range(1, len(value.shape))), keepdims=True))
    return tf.cast(_noisy(x, scale, level, seed), value.dtype)


def describe(*, sample_rate, num_samples, **_) -> dict:
    return {
        "sample_rate": sample_rate,
        "num_samples": num_samples,
        "expects": f"a WAV file, mixed to mono, resampled to {sample_rate} Hz and centre-padded or "
        f"cropped to {num_samples / sample_rate:g} s",
    }


def example(n: int, rng, *, sample_rate, num_samples, **_):
    import numpy as np

    t = np.arange(num_samples) / sample_rate
    freqs = rng.uniform(200, 2000, (n, 1))
    return (0.5 * np.sin(2 * np.pi * freqs * t)).astype(np.float32)


def upload(name: str, info: dict, rng) -> tuple[str, object]:
    """A 16-bit WAV file field of a 440 Hz tone at the model's rate and length."""
    import io

    import numpy as np
    import soundfile

    rate = int(info["sample_rate"])
    t = np.arange(int(info["num_samples"])) / rate
    buf = io.BytesIO()
    soundfile.write(buf, 0.5 * np.sin(2 * np.pi * 440.0 * t), rate, subtype="PCM_16", format="WAV")
    return "file", (f"{name}.wav", buf.getvalue(), "audio/wav")


def feed(info: dict) -> str:
    return f"float32 waveform in [-1, 1]: {info.get('expects', '').replace('a WAV file, ', '')}"


def decode(name: str, values: list, *, limits, sample_rate, num_samples, **_):
    """The model's (B, samples) float32 array and (B,) presence mask for ``values``: WAV paths or bytes, or mono
    waveform arrays at the model's rate (``None``: absent)."""
    import numpy as np

    from omnifuse.data.wav import decode_wav, fit_length
    from omnifuse.errors import OmnifuseError

    mask = np.array([v is not None for v in values], dtype=np.float32)
    out = np.zeros((len(values), num_samples), dtype=np.float32)
    for i, value in enumerate(values):
        if value is None:
            continue
        if isinstance(value, np.ndarray):
            if value.ndim != 1:
                raise OmnifuseError(
                    f"Expected a mono waveform array (samples,) at {sample_rate} Hz. Received: shape {value.shape}"
                )
            out[i] = fit_length(value.astype(np.float32), num_samples)
            continue
        out[i] = decode_wav(value, sample_rate, num_samples, limits.max_audio_seconds)
    return out, mask


def warm_up(*, num_samples, **_):
    """One sample a server predicts on before its first request (silence)."""
    import numpy as np

    return np.zeros(num_samples, np.float32)


def bad_requests(name: str, info: dict, rng) -> dict[str, tuple[str, object]]:
    """Values a server must refuse with a 4xx: a WAV cut short of the frames its header promises."""
    return {"truncated_wav": ("part", (f"{name}.wav", _truncated_wav(int(info["sample_rate"])), "audio/wav"))}


def _truncated_wav(sample_rate: int) -> bytes:
    """A WAV whose header promises a second of 16-bit frames, with a tenth of them present."""
    import struct

    frames, present = sample_rate, sample_rate // 10
    data = struct.pack(f"<{present}h", *([1000] * present))
    fmt = struct.pack("<HHIIHH", 1, 1, sample_rate, 2 * sample_rate, 2, 16)
    size = 4 + (8 + len(fmt)) + (8 + 2 * frames)
    return (
        b"RIFF"
        + struct.pack("<I", size)
        + b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + (b"data" + struct.pack("<I", 2 * frames) + data)
    )


def summarise(attribution, *, segments: int, sample_rate, **_) -> dict:
    """One clip's explanation from its attribution (samples,): a score per time segment (``segments`` equal
    slices), with their bounds in seconds."""
    import numpy as np

    parts = np.array_split(attribution, segments)
    bounds = np.cumsum([0] + [len(p) for p in parts])
    rate = sample_rate or 1
    return {
        "method": "integrated_gradients",
        "start_seconds": (bounds[:-1] / rate).tolist(),
        "end_seconds": (bounds[1:] / rate).tolist(),
        "scores": np.array([p.sum() for p in parts]),
    }


def show(value, why: dict, path, *, sample_rate=None, **_) -> dict:
    """One clip as the report shows it: a small PNG strip at ``path`` of its waveform, its log-mel spectrogram
    and, under them, the attribution of each time segment (orange raises the explained class, blue lowers it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    import tensorflow as tf

    from omnifuse.rundir import atomic_write

    sample_rate = sample_rate or 8000
    wave = np.asarray(value, np.float32)
    stft = tf.signal.stft(wave, frame_length=256, frame_step=64, fft_length=256)
    mel = tf.signal.linear_to_mel_weight_matrix(40, 129, sample_rate, 20.0, sample_rate / 2)
    logmel = np.log(np.asarray(tf.matmul(tf.abs(stft) ** 2, mel)) + 1e-6).T
    scores = np.asarray(why["scores"], np.float64)
    limit = float(np.abs(scores).max()) or 1.0
    seconds = len(wave) / sample_rate
    fig, axes = plt.subplots(3, 1, figsize=(3.6, 1.7), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]})
    axes[0].plot(np.arange(len(wave)) / sample_rate, wave, linewidth=0.4, color="#333")
    axes[1].imshow(logmel, aspect="auto", origin="lower", extent=(0, seconds, 0, 1), cmap="magma")
    axes[2].imshow(
        scores[None, :], aspect="auto", extent=(0, seconds, 0, 1), cmap="PuOr_r", vmin=-limit, vmax=limit
    )
    for ax in axes:
        ax.set_yticks([])
        for side in ax.spines.values():
            side.set_visible(False)
    axes[2].set_xlabel("s", fontsize=6, labelpad=0)
    axes[2].tick_params(labelsize=6, length=2, pad=1)
    fig.subplots_adjust(left=0.02, right=0.98, top=0.98, bottom=0.22, hspace=0.08)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    plt.close(fig)
    return {"png": path.name}


def duplicate_keys(values, threshold: float) -> list[tuple]:
    """Each clip's (exact, near) duplicate keys: a hash of its waveform, and one of the waveform at 1/8 of its
    rate rounded to 2 decimals."""
    import numpy as np

    waves = [np.asarray(v, np.float32) for v in values]
    return [(_digest(w.tobytes()), _digest(np.round(w[::8], 2).tobytes())) for w in waves]


def glimpse(value, name: str, folder, stem: str, **_) -> None:
    """A recording is not shown in a Markdown table cell."""
    return None


def as_input(array):
    """A data set's waveforms (N, samples) are the model's input as they are."""
    return array
