"""Options of the bag-of-embeddings text encoder (``model.text.bag``), kept apart from the layer so a config can be
read and checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BagConfig:
    """model.text.bag: the mean of the tokens' embeddings."""

    embed_dim: int = 64  # width of each token's embedding: the encoder's output
    dropout: float = 0.2  # on the mean embedding
