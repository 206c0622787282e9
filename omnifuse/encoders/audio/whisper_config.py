"""Options of the pretrained Whisper tiny.en audio encoder (``model.audio.whisper_tiny``), kept apart from the layer so
a config can be read and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class WhisperConfig:
    """model.audio.whisper_tiny: Whisper tiny.en's encoder, pretrained (resampling and log-mel inside the model)."""

    # frozen: no encoder weight trains (features computed once) | finetune: all do | last_k: the last trainable_blocks
    mode: typing.Literal["frozen", "finetune", "last_k"] = "frozen"
    # with mode "last_k": how many of the 4 transformer blocks (from the top) train, 1-4
    trainable_blocks: int = 0
    # model.bin (or its folder) of Whisper tiny.en in CTranslate2 format; empty: the installed weight package
    weights: str = ""
    # over the frames of the real audio: "mean" (384-d) | "mean_std" (768-d)
    pooling: typing.Literal["mean", "mean_std"] = "mean"
    dropout: float = 0.0  # on the pooled features, in training


# model.audio.encoder name -> the layer class in whisper.py that these options configure
ENCODERS = {"whisper_tiny": "AudioWhisper"}
