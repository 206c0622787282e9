"""Options of the log-mel CNN audio encoder (``model.audio.cnn``), kept apart from the layer so a config can be read
and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AudioCNNConfig:
    """model.audio.cnn: log-mel spectrogram -> small CNN."""

    sample_rate: int = 8000  # Hz of the waveforms fed in (a model takes the data's: data.sample_rate)
    frame_length: int = 256  # STFT window and FFT length, samples (32 ms at 8 kHz)
    frame_step: int = 128  # hop between frames, samples
    num_mel_bins: int = 40  # mel bands of the spectrogram
    filters: tuple[int, ...] = (32, 64, 128)  # one conv-BN-ReLU-pool block per entry
    dense_units: int = 128  # width of the dense layer after the blocks: the encoder's output
    dropout: float = 0.2  # on the output


# model.audio.encoder name -> the layer class in cnn.py that these options configure
ENCODERS = {"cnn": "AudioCNN"}
