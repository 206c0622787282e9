"""Options of the bag-of-embeddings text encoder (``model.text.bag``), kept apart from the layer so a config can be
read and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class BagConfig:
    """model.text.bag: the mean of the tokens' embeddings."""

    embed_dim: int = 64  # width of each token's embedding: the encoder's output
    dropout: float = 0.2  # on the mean embedding
    # the token embeddings start from pretrained word vectors: "wordllama" (256-d, cut to embed_dim) or "glove"
    # (50-d: embed_dim <= 50; reading its vocabulary needs pyarrow); "none": random
    init_embeddings: typing.Literal["none", "glove", "wordllama"] = "none"


# model.text.encoder name -> the layer class in bag.py that these options configure
ENCODERS = {"bag": "TextBag"}
