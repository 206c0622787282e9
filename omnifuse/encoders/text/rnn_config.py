"""Options of the recurrent text encoder (``model.text.rnn``), kept apart from the layer so a config can be read
and checked without importing Keras."""

from __future__ import annotations

import typing
from dataclasses import dataclass


@dataclass(frozen=True)
class RNNConfig:
    """model.text.rnn: embedding -> [Conv1D + pool] -> LSTM/GRU."""

    embed_dim: int = 128  # width of each token's embedding
    cell: typing.Literal["lstm", "gru"] = "lstm"  # the recurrent cell
    units: int = 64  # width of the recurrent state (per direction)
    bidirectional: bool = False  # also read each text backwards; the output doubles
    # last (final state) | max (over all steps, padding excluded) | maxmean (max and mean over the steps, concatenated)
    pooling: typing.Literal["last", "max", "maxmean"] = "last"
    # > 0: Conv1D + max-pool before the RNN (the CNN-LSTM combination), shortening the sequence
    conv_filters: int = 0
    conv_pool: int = 4  # conv_filters > 0: the max-pool's size and stride
    dropout: float = 0.2  # on each embedding value and on the output
    word_dropout: float = 0.0  # training: each token's whole embedding is dropped with this probability
    # > 0: each position also gets the learned embedding of its bigram (the word before and this one), hashed into
    # this many buckets and added to the word's embedding, so the recurrent net reads "not good" as one unit
    bigram_buckets: int = 0
    # the token embeddings start from pretrained word vectors: "wordllama" (256-d, cut to embed_dim) or "glove"
    # (50-d: embed_dim <= 50; reading its vocabulary needs pyarrow); "none": random
    init_embeddings: typing.Literal["none", "glove", "wordllama"] = "none"


# model.text.encoder name -> the layer class in rnn.py that these options configure
ENCODERS = {"rnn": "TextRNN"}
