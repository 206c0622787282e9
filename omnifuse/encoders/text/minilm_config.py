"""Options of the pretrained MiniLM text encoder (``model.text.minilm``), kept apart from the layer so a config can be
read and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class MiniLMConfig:
    """model.text.minilm: sentence-transformers all-MiniLM-L6-v2, pretrained (WordPiece inside the model)."""

    # tokens a text keeps, [CLS] and [SEP] included (sentence-transformers uses 256; positions go up to 512)
    max_length: int = 256
    # which tokens a longer text keeps: head (the first ones, as sentence-transformers), tail (the last ones),
    # head+tail (the first quarter and the last three quarters, Sun et al. 2019's 128 + 382, scaled to max_length)
    truncation: typing.Literal["head", "tail", "head+tail"] = "head"
    # frozen: no weight trains (features computed once) | finetune: every weight trains | last_k: only the last
    # trainable_blocks blocks
    mode: typing.Literal["frozen", "finetune", "last_k"] = "frozen"
    trainable_blocks: int = 0  # last_k: how many of the 6 transformer blocks, counted from the top, train
    # a folder holding model.safetensors + vocab.txt, or model.safetensors; empty: the installed weight package
    weights: str = ""
    # mean (over the real tokens, as sentence-transformers) | cls (the [CLS] token's vector)
    pooling: typing.Literal["mean", "cls"] = "mean"
    normalize: bool = True  # L2-normalise the sentence vector, as sentence-transformers does for this model
    dropout: float = 0.0  # on the sentence vector, in training (the transformer's own dropouts stay off)


# model.text.encoder name -> the layer class in minilm.py that these options configure
ENCODERS = {"minilm": "TextMiniLM"}
