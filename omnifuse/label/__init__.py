"""Labelling help from a trained run: which samples to label next (:func:`rank`) and which labels look wrong
(:func:`audit`). Importing this package is cheap: Keras and TensorFlow load when a model is needed.

>>> import omnifuse.label
>>> omnifuse.label.rank("runs/pets", "unlabelled.csv", budget=20, strategy="hybrid")
>>> omnifuse.label.audit("pets.csv", label="species", folds=5)
"""

from __future__ import annotations

from omnifuse.label.audit import audit
from omnifuse.label.next import STRATEGIES, rank

__all__ = ["STRATEGIES", "audit", "rank"]
