"""Options of the fast CIFAR-10 net (``model.image.fastnet``), kept apart from the layer so a config can be read and
checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class FastNetConfig:
    """model.image.fastnet: the airbench-style fast net; augments itself: set augment = false."""

    widths: tuple[int, ...] = (64, 256, 256)  # one conv-pool-BN-GELU-conv-BN-GELU group per entry
    whiten_kernel: int = 2  # side of the first conv, whose 2*k*k*C patch-whitening filters adapt() sets
    bn_momentum: float = 0.6  # fast-moving BN statistics suit short schedules
    flip: bool = True  # training: random horizontal flip ...
    # flip = true: mirror each training image in every other epoch (airbench's alternating flip) instead of at random
    alternate_flip: bool = False
    translate: int = 2  # ... and random shift by up to this many pixels (reflect padding), inside the step
    # inference: 0 = plain, 1 = average with the mirror image, 2 = also two 1-pixel shifts
    tta: typing.Literal[0, 1, 2] = 1
    # > 0: the whitening filters' bias trains for this many epochs, then is frozen, which also spares the first
    # convolution's input gradient (airbench: 3); 0: it trains throughout
    whiten_bias_epochs: int = 0
    # > 0 with low_res_size: the first this many epochs train on random low_res_size x low_res_size crops of the
    # (flipped, shifted) images, steps that cost about (low_res_size / side)^2 as much; the later epochs and
    # inference see whole images (progressive resizing); 0: whole images throughout
    low_res_epochs: int = 0
    low_res_size: int = 0  # side of those crops, in pixels (CIFAR-10: 24 of 32)
    bias_lr_scale: float = 1.0  # with SGD, the BN biases learn this many times faster (airbench: 64)
    # after the whitening conv and each batch norm: "gelu" (airbench's); "quick_gelu": x * sigmoid(1.702 x), the
    # sigmoid form of GELU (within 0.021 of it), whose forward and backward are fewer element-wise passes (on
    # TensorFlow on 2 CPU cores about 0.6x GELU's time); "relu"
    activation: typing.Literal["gelu", "quick_gelu", "relu"] = "gelu"


# model.image.encoder name -> the layer class in fastnet.py that these options configure
ENCODERS = {"fastnet": "ImageFastNet"}
