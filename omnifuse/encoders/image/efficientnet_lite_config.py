"""Options of the pretrained EfficientNet-Lite0 image encoder (``model.image.efficientnet_lite0``), kept apart from
the layer so a config can be read and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class EfficientNetLiteConfig:
    """model.image.efficientnet_lite0: EfficientNet-Lite0, ImageNet-pretrained (resized and scaled in the model)."""

    size: int = 224  # input side the images are resized to inside the layer (the weights were trained at 224)
    # frozen: no backbone weight trains (features computed once) | finetune: all do | last_k: the last
    # trainable_blocks blocks and the head conv; batch-norm statistics stay frozen in every mode
    mode: typing.Literal["frozen", "finetune", "last_k"] = "frozen"
    # last_k: how many of the last blocks train (of 16 in Lite0, 21 in Lite1 and Lite2; the head conv always does)
    trainable_blocks: int = 0
    weights: str = ""  # the .pth file (or its folder); empty = the installed weight package
    dropout: float = 0.0  # dropout on the 1280-d pooled features, in training


# model.image.encoder name -> the layer class in efficientnet_lite.py that these options configure
ENCODERS = {"efficientnet_lite0": "ImageEfficientNetLite"}
