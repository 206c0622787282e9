"""Options of the pretrained EfficientNet-Lite2 image encoder (``model.image.efficientnet_lite2``): Lite0's, at
Lite2's native side; kept apart from the layer so a config can be read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass

from omnifuse.encoders.image.efficientnet_lite_config import EfficientNetLiteConfig


@dataclass(frozen=True)
class EfficientNetLite2Config(EfficientNetLiteConfig):
    """model.image.efficientnet_lite2: EfficientNet-Lite2, ImageNet-pretrained (resized and scaled in the model)."""

    size: int = 260  # input side the images are resized to inside the layer (the weights were trained at 260)


# model.image.encoder name -> the layer class in efficientnet_lite2.py that these options configure
ENCODERS = {"efficientnet_lite2": "ImageEfficientNetLite2"}
