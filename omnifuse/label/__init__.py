"""Labelling help from a trained run: which samples to label next (:func:`rank`) and which labels look wrong
(:func:`audit`). Importing this package is cheap: Keras and TensorFlow load when a model is needed.

>>> import omnifuse.label
>>> omnifuse.label.rank("runs/pets", "unlabelled.csv", budget=20, strategy="hybrid")
>>> omnifuse.label.audit("pets.csv", label="species", folds=5)
"""

from __future__ import annotations

import importlib
from typing import Any

# imported on first use: the command line loads omnifuse.label.commands, and scipy (which audit and next need)
# takes a second to import that a mistyped argument should not wait for
_LAZY = {"audit": "omnifuse.label.audit", "STRATEGIES": "omnifuse.label.next", "rank": "omnifuse.label.next"}
__all__ = ["STRATEGIES", "audit", "rank"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omnifuse.label' has no attribute {name!r}")
