"""Whisper tiny.en encoder: the CTranslate2 reader, the resampler, the log-mel and the encoder against CTranslate2.

The reference outputs in ``fixtures/whisper_reference.npz`` come from ``benchmarks/reference/whisper_reference.py``
(CTranslate2's ``Whisper.encode`` in float32 on a synthesised speech-like clip, and an independent numpy log-mel with
librosa's mel filters). Tests that need the pretrained weights skip when the weight package is not installed.
"""

import struct
from pathlib import Path

import keras
import numpy as np
import pytest
from keras_steps import fit_once

from omnifuse.encoders.audio.resample import resample
from omnifuse.encoders.audio.whisper import AudioWhisper, WhisperConfig, mel_filters
from omnifuse.errors import OmnifuseError
from omnifuse.weights.ct2 import read_ct2

REF = np.load(Path(__file__).parent / "fixtures" / "whisper_reference.npz")


def _weights_or_skip():
    from omnifuse.weights import locate

    try:
        return locate("whisper_tiny")
    except OmnifuseError as err:
        pytest.skip(f"Whisper tiny.en weights not installed: {err}")


def _cosine(a, b):
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# --- the CTranslate2 reader ------------------------------------------------------------------------------------


def _string(text):
    raw = text.encode() + b"\0"
    return struct.pack("<H", len(raw)) + raw


def _variable(name, array, dtype_id):
    array = np.asarray(array)
    head = _string(name) + struct.pack("<B", array.ndim) + b"".join(struct.pack("<I", d) for d in array.shape)
    raw = array.tobytes()
    return head + struct.pack("<BI", dtype_id, len(raw)) + raw


def _ct2_file(path, version=6):
    """A small model.bin in CTranslate2's layout: a float16 matrix, a bfloat16 vector, an int16 scalar, an alias."""
    weight = np.arange(6, dtype=np.float16).reshape(2, 3) / 4
    bf16 = (np.array([1.5, -2.0], dtype=np.float32).view(np.uint32) >> 16).astype(np.uint16)
    body = (
        struct.pack("<I", version)
        + _string("WhisperSpec")
        + struct.pack("<II", 3, 3)
        + _variable("encoder/w", weight, 4)
        + _variable("encoder/b", bf16, 5)
        + _variable("encoder/num_heads", np.array(6, dtype=np.int16), 2)
        + struct.pack("<I", 1)
        + _string("encoder/tied")
        + _string("encoder/w")
    )
    path.write_bytes(body)
    return path


def test_ct2_reader_reads_the_layout(tmp_path):
    model = read_ct2(_ct2_file(tmp_path / "model.bin"))
    assert (model.spec, model.revision) == ("WhisperSpec", 3)
    w = model.variables["encoder/w"]
    assert w.dtype == np.float32 and w.shape == (2, 3)
    np.testing.assert_array_equal(w, np.arange(6).reshape(2, 3) / 4)
    np.testing.assert_array_equal(model.variables["encoder/b"], [1.5, -2.0])
    assert int(model.variables["encoder/num_heads"]) == 6
    assert model.variables["encoder/tied"] is w
    assert list(read_ct2(tmp_path / "model.bin", prefix="encoder/b").variables) == ["encoder/b"]


@pytest.mark.parametrize(
    "damage, words",
    [
        (lambda b: b[: len(b) // 2], "truncated"),
        (lambda b: b[:-1], "truncated"),
        (lambda b: b + b"\0", "more bytes"),
        (lambda b: struct.pack("<I", 99) + b[4:], "version 99"),
        (lambda b: b.replace(b"encoder/w\0\x02", b"encoder/w\0\x09"), "rank"),  # rank byte 2 -> 9
        (lambda b: b.replace(b"\x03\x00\x00\x00\x04\x0c", b"\x03\x00\x00\x00\x07\x0c"), "dtype id"),
        (lambda b: b.replace(b"\x04\x0c\x00\x00\x00", b"\x04\x0d\x00\x00\x00"), "hold 12 bytes"),
    ],
)
def test_ct2_reader_refuses_a_damaged_file_naming_it(tmp_path, damage, words):
    path = _ct2_file(tmp_path / "model.bin")
    damaged = damage(path.read_bytes())
    assert damaged != _ct2_file(tmp_path / "clean.bin").read_bytes()
    path.write_bytes(damaged)
    with pytest.raises(OmnifuseError, match="model.bin") as err:
        read_ct2(path)
    assert words in str(err.value)


def test_ct2_reader_reads_whisper_tiny_encoder():
    path = _weights_or_skip()
    model = read_ct2(path, prefix="encoder/")
    v = model.variables
    assert model.spec == "WhisperSpec"
    assert v["encoder/conv1/weight"].shape == (384, 80, 3) and v["encoder/conv1/weight"].dtype == np.float32
    assert v["encoder/layer_3/self_attention/linear_0/weight"].shape == (1152, 384)
    assert v["encoder/position_encodings/encodings"].shape == (1500, 384)
    assert int(v["encoder/num_heads"]) == 6
    assert not any(k.startswith("decoder/") for k in v)
    # Whisper's positional table is sinusoidal: row 0 is sin(0) = 0 for the first half, cos(0) = 1 for the second
    np.testing.assert_allclose(
        v["encoder/position_encodings/encodings"][0], [0.0] * 192 + [1.0] * 192, atol=1e-3
    )


# --- resampling and log-mel ------------------------------------------------------------------------------------


@pytest.mark.parametrize("rate_in, freq", [(8000, 440.0), (8000, 3000.0), (22050, 1000.0), (48000, 5000.0)])
def test_resampling_keeps_a_tone_and_its_frequency(rate_in, freq):
    t = np.arange(rate_in) / rate_in  # one second
    tone = np.sin(2 * np.pi * freq * t).astype(np.float32)[None]
    out = np.asarray(resample(tone, rate_in, 16000))[0]
    assert out.shape == (16000,)
    spectrum = np.abs(np.fft.rfft(out * np.hanning(len(out))))
    assert np.argmax(spectrum) == int(freq)  # 1 Hz bins over one second
    middle = slice(2000, 14000)  # away from the clip's edges, where the input stops
    ideal = np.sin(2 * np.pi * freq * np.arange(16000) / 16000)
    np.testing.assert_allclose(out[middle], ideal[middle], atol=1e-4)
    if rate_in == 8000:  # upsampling puts nothing (no image) above the input's Nyquist frequency
        assert spectrum[4200:].max() < 1e-4 * spectrum.max()


def test_resampling_same_rate_is_identity_and_refuses_bad_rates():
    x = np.random.default_rng(0).normal(size=(2, 100)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(resample(x, 16000, 16000)), x)
    with pytest.raises(OmnifuseError, match="integer sample rates"):
        resample(x, 8000.5, 16000)


def test_mel_filters_are_slaney_triangles_of_unit_area():
    f = mel_filters()
    assert f.shape == (201, 80)
    assert (f >= 0).all() and (f.max(axis=0) > 0).all()  # every band sees at least one bin
    assert (np.diff(np.argmax(f, axis=0)) >= 0).all()  # bands rise in frequency
    # Slaney's normalisation: each triangle's area over Hz is 1; bins 40 Hz apart sample the wide bands' area to a
    # few percent (the reference log-mel test checks the exact values, against librosa's filters)
    areas = f[:, 45:].sum(axis=0) * 40.0
    np.testing.assert_allclose(areas, 1.0, rtol=0.03)
    assert abs(areas.mean() - 1.0) < 0.005
    # below 1 kHz the scale is linear: band centres 200 / 3 Hz * (mel step) apart, equal widths
    assert np.ptp((f[:, 2:12] > 0).sum(axis=0)) <= 1


def test_log_mel_matches_the_reference():
    layer = AudioWhisper(sample_rate=16000)
    mel = np.asarray(layer.features(REF["wave16"][None]))[0]  # no weights needed
    assert mel.shape == (100, 80)
    np.testing.assert_allclose(mel, REF["mel_short"].T, atol=1e-4)
    layer30 = AudioWhisper(sample_rate=16000, pad_to_30s=True)
    mel30 = np.asarray(layer30.features(REF["wave16"][None]))[0]
    assert mel30.shape == (3000, 80)
    np.testing.assert_allclose(mel30[:110], REF["mel_30s_head"].T, atol=1e-4)
    np.testing.assert_allclose(mel30[110:], REF["mel_30s_fill"], atol=1e-5)


def test_silence_gives_the_floor_log_mel():
    mel = np.asarray(AudioWhisper(sample_rate=8000).features(np.zeros((1, 8000), np.float32)))
    np.testing.assert_allclose(mel, -1.5)  # (log10(1e-10) + 4) / 4


# --- the encoder against CTranslate2 ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer16():
    _weights_or_skip()
    layer = AudioWhisper(sample_rate=16000)
    layer.build((None, 16000))
    return layer


def test_encoder_matches_ctranslate2_on_the_clip_s_own_frames(layer16):
    states = np.asarray(layer16.encode(REF["mel_short"].T[None]))[0]
    assert states.shape == (50, 384)
    assert np.abs(states - REF["enc_short"]).max() < 2e-4
    assert _cosine(states, REF["enc_short"]) > 0.99999


def test_encoder_matches_ctranslate2_on_30_seconds(layer16):
    fill = np.full((3000 - 110, 80), REF["mel_30s_fill"], np.float32)
    features = np.concatenate([REF["mel_30s_head"].T, fill])[None]
    states = np.asarray(layer16.encode(features))[0]
    assert states.shape == (1500, 384)
    assert np.abs(states[:60] - REF["enc_30s_head"]).max() < 2e-4
    assert np.abs(states.mean(axis=0) - REF["enc_30s_mean_all"]).max() < 1e-4


def test_layer_pools_like_ctranslate2_from_raw_waveforms():
    _weights_or_skip()
    covered = int(REF["covered_frames"])  # 40: the clip is 0.8 s of sound, then zeros
    full = AudioWhisper(sample_rate=16000, pad_to_30s=True)(REF["wave16"][None])
    np.testing.assert_allclose(np.asarray(full)[0], REF["enc_30s_mean_covered"], atol=1e-4)
    # 8 kHz in: the layer's resampler against the clip synthesised at 16 kHz directly
    short = np.asarray(AudioWhisper(sample_rate=8000)(REF["wave8"][None]))[0]
    wanted = REF["enc_short"][:covered].mean(axis=0)
    assert np.abs(short - wanted).max() < 0.05
    assert _cosine(short, wanted) > 0.9999
    # the short mode is not Whisper's 30 s pad: it is another (cheaper) embedding of the same clip
    assert _cosine(REF["enc_short"][:covered].mean(axis=0), REF["enc_30s_mean_covered"]) < 0.95


def test_pooling_covers_the_frames_from_the_first_to_the_last_sound():
    layer = AudioWhisper(sample_rate=8000)
    x = np.zeros((4, 8000), np.float32)
    x[0, :2000] = 0.1  # 0.25 s -> 12.5 frames of 20 ms -> 13
    x[1, 5000] = 0.1  # a click at 0.625 s -> frame 31
    x[2, 2000:6000] = 0.1  # 0.5 s centred in zeros, as the loaders pad a short clip -> frames 12-37
    mask = np.asarray(layer.frame_mask(x, 50))
    np.testing.assert_array_equal(mask.sum(axis=1), [13, 1, 26, 1])  # silence: one frame, not 0 (no NaN)
    assert mask[0, 0] == 1 and mask[1, 31] == 1 and mask[3, 0] == 1
    np.testing.assert_array_equal(np.flatnonzero(mask[2]), np.arange(12, 38))  # the padding is left out


def test_mean_std_pooling_and_silence_are_finite():
    _weights_or_skip()
    layer = AudioWhisper(sample_rate=8000, pooling="mean_std")
    x = np.stack([REF["wave8"], np.zeros(8000, np.float32)])
    out = np.asarray(layer(x))
    assert out.shape == (2, 768) and layer.output_dim == 768
    assert np.isfinite(out).all()
    assert (out[0, 384:] > 0).all()


# --- training modes, config, saving ----------------------------------------------------------------------------


def test_modes_decide_what_trains():
    _weights_or_skip()
    frozen = AudioWhisper(sample_rate=8000)
    frozen.build((None, 8000))
    assert frozen.trainable_weights == []
    last = AudioWhisper(sample_rate=8000, mode="last_k", trainable_blocks=1)
    last.build((None, 8000))
    names = {w.path for w in last.trainable_weights}
    assert len(names) == 12 + 2  # one block (2 norms x 2 + 4 dense x 2) + the final norm
    assert all("block_3" in n or "final_norm" in n for n in names)
    full = AudioWhisper(sample_rate=8000, mode="finetune")
    full.build((None, 8000))
    assert len(full.trainable_weights) == 4 + 4 * 12 + 2  # convs, blocks, final norm; positions stay fixed


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"mode": "melted"}, "Unknown Whisper mode 'melted'"),
        ({"pooling": "max"}, "Unknown Whisper pooling 'max'"),
        ({"mode": "last_k", "trainable_blocks": 0}, "trainable_blocks between 1 and 4"),
    ],
)
def test_bad_options_are_errors(kwargs, words):
    with pytest.raises(OmnifuseError, match=words):
        AudioWhisper(**kwargs)


def test_too_long_clips_and_missing_weights_are_errors(tmp_path):
    with pytest.raises(OmnifuseError, match="30 s"):
        AudioWhisper(sample_rate=8000).build((None, 8000 * 31))
    with pytest.raises(OmnifuseError, match="no such file"):
        AudioWhisper(sample_rate=8000, weights=str(tmp_path / "nowhere.bin")).build((None, 8000))


def test_config_fields_are_constructor_arguments():
    config = WhisperConfig(mode="last_k", trainable_blocks=2, pooling="mean_std", dropout=0.1)
    layer = AudioWhisper(sample_rate=8000, **vars(config))
    restored = AudioWhisper.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()


def test_one_fit_step_trains_only_the_last_block_with_silent_rows():
    _weights_or_skip()
    inputs = keras.Input((4000,))
    encoder = AudioWhisper(
        sample_rate=8000, mode="last_k", trainable_blocks=1, dropout=0.1, name="audio_encoder"
    )
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(encoder(inputs)))
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.stack([REF["wave8"][:4000], REF["wave8"][4000:], np.zeros(4000, np.float32), REF["wave8"][::2]])
    frozen = {w.path: w.numpy().copy() for w in encoder.non_trainable_weights}
    tuned = {w.path: w.numpy().copy() for w in encoder.trainable_weights}
    history = fit_once(model, x, np.array([0, 1, 0, 1]), batch_size=4)
    assert np.isfinite(history.history["loss"][0])
    assert all(np.array_equal(w.numpy(), frozen[w.path]) for w in encoder.non_trainable_weights)
    assert all(not np.array_equal(w.numpy(), tuned[w.path]) for w in encoder.trainable_weights)
