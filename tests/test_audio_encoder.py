"""AudioCNN: raw waveform → log-mel CNN features; shapes, silence, config, .keras round trip, training."""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import pytest
from fixtures_media import tone
from keras_steps import fit_once, outputs

from omnifuse.encoders.audio import AudioCNN
from omnifuse.encoders.audio.cnn_config import AudioCNNConfig

SMALL = {"filters": (4, 8), "dense_units": 16, "num_mel_bins": 16, "frame_length": 128, "frame_step": 64}


def waves(n: int, samples: int = 4000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` digit tones at 8 kHz, centre-padded to ``samples``, and their digits."""
    rng = np.random.default_rng(seed)
    digits = np.arange(n) % 10
    out = np.zeros((n, samples), dtype=np.float32)
    for i, d in enumerate(digits):
        w = tone(int(d), 8000, 0.3, rng)
        out[i, (samples - len(w)) // 2 : (samples - len(w)) // 2 + len(w)] = w
    return out, digits


def test_output_shape_and_dim():
    encoder = AudioCNN(**SMALL)
    x, _ = waves(3)
    y = encoder(x)
    assert tuple(y.shape) == (3, 16) and encoder.output_dim == 16
    assert encoder.compute_output_shape((None, 4000)) == (None, 16)
    assert tuple(AudioCNN()(np.zeros((2, 8000), "float32")).shape) == (2, 128)


def test_silence_gives_finite_features():
    encoder = AudioCNN(**SMALL)
    out = keras.ops.convert_to_numpy(encoder(np.zeros((2, 4000), "float32"), training=False))
    assert np.all(np.isfinite(out))
    # and in training mode, mixed with real audio (batch statistics over a zero row)
    x, _ = waves(2)
    out = keras.ops.convert_to_numpy(encoder(np.concatenate([x, np.zeros_like(x)]), training=True))
    assert np.all(np.isfinite(out))


def test_loudness_does_not_change_the_features():
    encoder = AudioCNN(**SMALL)
    x, _ = waves(2)
    quiet = keras.ops.convert_to_numpy(encoder(x * 0.05, training=False))
    loud = keras.ops.convert_to_numpy(encoder(x, training=False))
    np.testing.assert_allclose(quiet, loud, rtol=1e-3, atol=1e-3)  # per-utterance normalisation


def test_config_round_trip_and_dataclass_defaults():
    encoder = AudioCNN(**SMALL, dropout=0.1, name="audio_enc")
    config = encoder.get_config()
    assert {f.name for f in dataclasses.fields(AudioCNNConfig)} <= set(config)
    clone = AudioCNN.from_config(config)
    assert clone.get_config() == config
    defaults = AudioCNN(**dataclasses.asdict(AudioCNNConfig())).get_config()
    assert {k: defaults[k] for k in dataclasses.asdict(AudioCNNConfig())} == {
        k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(AudioCNNConfig()).items()
    }
    with pytest.raises(dataclasses.FrozenInstanceError):
        AudioCNNConfig().dense_units = 3  # type: ignore[misc]


def test_keras_save_load_and_one_fit_step(tmp_path):
    inputs = keras.Input((4000,), name="audio")
    features = AudioCNN(**SMALL, name="audio_encoder")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(features))
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    x, y = waves(20)
    x[:2] = 0.0  # missing audio arrives as silence: training on it must not produce NaN
    before = [w.copy() for w in model.get_weights()]
    history = fit_once(model, x, y, batch_size=20)
    assert np.isfinite(history.history["loss"][0])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    path = tmp_path / "audio.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.get_layer("audio_encoder"), AudioCNN)
    np.testing.assert_allclose(outputs(loaded, x), outputs(model, x), rtol=1e-6, atol=1e-6)
