"""Options of the conv-conv-pool CNN image encoder (``model.image.cnn``), kept apart from the layer so a config can
be read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CNNConfig:
    """model.image.cnn: the classic conv-conv-pool CNN."""

    filters: tuple[int, ...] = (32, 64)  # one conv-conv-pool block per entry
    dense_units: int = 256  # width of the dense layer after the blocks: the encoder's output
    batchnorm: bool = True  # batch normalisation after each conv
    dropout: float = 0.25  # after each block; twice this (at most 0.5) on the output


# model.image.encoder name -> the layer class in cnn.py that these options configure
ENCODERS = {"cnn": "ImageCNN"}
