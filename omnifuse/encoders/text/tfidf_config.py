"""Options of the TF-IDF text encoder (``model.text.tfidf``), kept apart from the layer so a config can be read and
checked without importing Keras."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TfidfConfig:
    """model.text.tfidf: a dense layer on the texts' tf-idf vectors."""

    vocab_size: int = 100000  # n-grams kept (most frequent in the training texts)
    ngrams: int = 2  # unigrams up to this length
    units: int = 64  # width of the dense layer: the encoder's output
    dropout: float = 0.5  # on the tf-idf vector


# model.text.encoder name -> the layer class in tfidf.py that these options configure
ENCODERS = {"tfidf": "TextTfidf"}
