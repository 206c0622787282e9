"""Options of the pretrained EfficientNet-Lite1 image encoder (``model.image.efficientnet_lite1``): Lite0's, at
Lite1's native side; kept apart from the layer so a config can be read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.encoders.image.efficientnet_lite_config import EfficientNetLiteConfig


@dataclass(frozen=True)
class EfficientNetLite1Config(EfficientNetLiteConfig):
    """model.image.efficientnet_lite1: EfficientNet-Lite1, ImageNet-pretrained (resized and scaled in the model)."""

    size: int = 240  # input side the images are resized to inside the layer (the weights were trained at 240)


# model.image.encoder name -> the layer class in efficientnet_lite1.py that these options configure
ENCODERS = {"efficientnet_lite1": "ImageEfficientNetLite1"}
