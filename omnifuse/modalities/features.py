"""Features: float32 (B, D) vectors a frozen pretrained encoder computed once (omnifuse/features.py), streamed in
place of that encoder's raw input while the rest of the model trains. Blank and corruption as numbers'; a trained
model takes its encoder's raw input again, so a predictor never decodes features."""

from __future__ import annotations

from omnifuse.errors import OmnifuseError
from omnifuse.modalities.numbers import (
    CELL,
    CONTENT_TYPES,
    CORRUPTION,
    DTYPE,
    LEVELS,
    MAX_LEVEL,
    REQUEST,
    SUFFIXES,
    VOCABULARY,
    as_input,
    bad_requests,
    blank,
    corrupt,
    describe,
    duplicate_keys,
    example,
    feed,
    glimpse,
    sample_shape,
    show,
    summarise,
    upload,
    warm_up,
)

EXPLAIN = None  # never explained: a trained model takes its encoder's raw input
COLUMN_KINDS = ()  # never a table's column

__all__ = [
    "CELL",
    "COLUMN_KINDS",
    "CONTENT_TYPES",
    "CORRUPTION",
    "DTYPE",
    "EXPLAIN",
    "LEVELS",
    "MAX_LEVEL",
    "REQUEST",
    "SUFFIXES",
    "VOCABULARY",
    "as_input",
    "bad_requests",
    "blank",
    "corrupt",
    "decode",
    "describe",
    "duplicate_keys",
    "example",
    "feed",
    "glimpse",
    "sample_shape",
    "show",
    "summarise",
    "upload",
    "warm_up",
]


def decode(name: str, values: list, **_):
    raise OmnifuseError(f"Modality kind 'features' of {name!r} is not supported by this predictor.")
