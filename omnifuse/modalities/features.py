"""Features: float32 (B, D) vectors a frozen pretrained encoder computed once (omnifuse/features.py), streamed in
place of that encoder's raw input while the rest of the model trains. Blank and corruption as numbers'."""

from __future__ import annotations

from omnifuse.modalities.numbers import (
    CORRUPTION,
    DTYPE,
    LEVELS,
    MAX_LEVEL,
    blank,
    corrupt,
    describe,
    example,
    feed,
    sample_shape,
    upload,
)

__all__ = [
    "CORRUPTION",
    "DTYPE",
    "LEVELS",
    "MAX_LEVEL",
    "blank",
    "corrupt",
    "describe",
    "example",
    "feed",
    "sample_shape",
    "upload",
]
