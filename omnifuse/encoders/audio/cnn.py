"""Audio encoder: raw waveform (B, samples) → log-mel spectrogram inside the layer → small CNN → (B, dense_units).

The spectrogram is computed in the model (``keras.layers.MelSpectrogram``), so a saved ``.keras`` model takes the
same raw float32 waveform the loaders produce (mono, fixed rate and length) and nothing has to be re-implemented at
serve time. Each utterance's log-mel is clamped to 80 dB below its own peak and normalised to zero mean and unit
variance, which removes loudness differences between speakers and microphones. A silent (all-zero) waveform, which is how a missing audio modality
arrives, gives a constant spectrogram that normalises to zeros rather than NaN.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from omnifuse.encoders.layers import BatchNormalization, apply_layers, build_chain

_TOP_DB = (
    80.0  # dynamic range kept below each utterance's loudest mel bin, as librosa's power_to_db(top_db=80)
)
_ABS_FLOOR = 1e-10  # absolute power floor, so silence (peak 0) takes a finite log
_STD_EPS = 1e-6  # added to the variance, so a constant spectrogram divides by sqrt(eps), not 0


@keras.saving.register_keras_serializable(package="omnifuse")
class AudioCNN(layers.Layer):
    """Log-mel CNN over raw waveforms. Input float32 (B, samples); output (B, dense_units).

    Example: ``AudioCNN(sample_rate=8000)(keras.ops.zeros((2, 8000))).shape == (2, 128)``.
    """

    def __init__(
        self,
        sample_rate=8000,
        frame_length=256,
        frame_step=128,
        num_mel_bins=40,
        filters=(32, 64, 128),
        dense_units=128,
        dropout=0.2,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.sample_rate = int(sample_rate)
        self.frame_length = int(frame_length)
        self.frame_step = int(frame_step)
        self.num_mel_bins = int(num_mel_bins)
        self.filters = tuple(int(f) for f in filters)
        self.dense_units = int(dense_units)
        self.dropout = float(dropout)
        self.output_dim = self.dense_units
        # float32 whatever the model's policy: the log of tiny powers underflows in float16.
        self.mel = layers.MelSpectrogram(
            fft_length=self.frame_length,
            sequence_stride=self.frame_step,
            sequence_length=self.frame_length,
            sampling_rate=self.sample_rate,
            num_mel_bins=self.num_mel_bins,
            min_freq=20.0,
            max_freq=self.sample_rate / 2,
            power_to_db=False,  # its dB scaling clips against the max over the whole batch; ours is per utterance
            dtype="float32",
        )
        self.autocast = (
            False  # the waveform arrives unrounded; the CNN below casts itself to the compute dtype
        )
        self.stack = []
        for i, f in enumerate(self.filters):
            self.stack += [
                layers.Conv2D(f, 3, padding="same", use_bias=False, name=f"b{i}_conv"),
                BatchNormalization(name=f"b{i}_bn"),
                layers.Activation("relu", name=f"b{i}_relu"),
                layers.MaxPooling2D(
                    2, padding="same", name=f"b{i}_pool"
                ),  # "same": short clips never shrink to 0
            ]
        self.dense = layers.Dense(self.dense_units, activation="relu")
        self.drop = layers.Dropout(self.dropout)

    def _spectrogram_shape(self, input_shape):
        """(B, frames, mel, 1): the CNN sees time as height and mel bands as width."""
        _, mels, frames = self.mel.compute_output_shape((input_shape[0], input_shape[1]))
        return (input_shape[0], frames, mels, 1)

    def build(self, input_shape):
        _, _, mels, channels = build_chain(self.stack, self._spectrogram_shape(input_shape))
        self.dense.build((input_shape[0], 2 * mels * channels))

    def call(self, waveform, training=None):
        x = ops.cast(waveform, "float32")
        if len(x.shape) == 3:  # (B, samples, 1)
            x = ops.squeeze(x, axis=-1)
        power = self.mel(x)  # (B, mel, frames)
        # A floor relative to the utterance's peak keeps the features independent of loudness (zero padding and
        # near-silence clamp to the same relative level whatever the gain); the absolute floor handles silence.
        peak = ops.max(power, axis=(1, 2), keepdims=True)
        floor = ops.maximum(peak * 10.0 ** (-_TOP_DB / 10.0), _ABS_FLOOR)
        x = ops.log(ops.maximum(power, floor))
        mean = ops.mean(x, axis=(1, 2), keepdims=True)
        var = ops.var(x, axis=(1, 2), keepdims=True)
        x = (x - mean) / ops.sqrt(var + _STD_EPS)
        x = ops.expand_dims(ops.transpose(x, (0, 2, 1)), -1)
        x = apply_layers(self.stack, ops.cast(x, self.compute_dtype), training)
        # Pool over time only (mean and max): the mel axis keeps its position, because pitch and formant position
        # are what tell digits and speakers apart; global pooling over frequency would throw that away.
        _, _, mels, channels = x.shape
        x = ops.concatenate([ops.mean(x, axis=1), ops.max(x, axis=1)], axis=-1)
        x = ops.reshape(x, (-1, 2 * mels * channels))
        return self.drop(self.dense(x), training=training)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.output_dim)

    def get_config(self):
        return {
            **super().get_config(),
            "sample_rate": self.sample_rate,
            "frame_length": self.frame_length,
            "frame_step": self.frame_step,
            "num_mel_bins": self.num_mel_bins,
            "filters": list(self.filters),
            "dense_units": self.dense_units,
            "dropout": self.dropout,
        }
