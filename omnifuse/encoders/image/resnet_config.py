"""Options of the small ResNet image encoder (``model.image.resnet``), kept apart from the layer so a config can be
read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ResNetConfig:
    """model.image.resnet: a small batch-norm ResNet."""

    # one stage per entry, each halving the resolution after the first
    widths: tuple[int, ...] = (64, 128, 256)
    blocks: int = 1  # residual blocks per stage
    dense_units: int = 256  # width of the dense layer after the global pool: the encoder's output
    dropout: float = 0.0  # on the output


# model.image.encoder name -> the layer class in resnet.py that these options configure
ENCODERS = {"resnet": "ImageResNet"}
