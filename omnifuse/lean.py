"""The command line imports Keras without the optional integrations Keras imports eagerly when they are installed.

``import keras`` (and ``import tensorflow``, which imports Keras) also imports pandas (to accept DataFrames in
``fit``), matplotlib (``keras.visualization``), scikit-learn (``keras.wrappers``) and, through the legacy
``tf.keras``, SciPy (sparse inputs): about 2.7 of the 8 CPU seconds the import costs, spent again by every process
``omnifuse`` starts (a worker of ``omnifuse launch``, a server, a benchmark run). omnifuse feeds Keras tf.data and
NumPy only and imports what it uses of these libraries itself, where it uses them (calibration's SciPy, the
evaluation's scikit-learn and plots). So while Keras or TensorFlow is imported, :func:`setup` has these packages
look absent (Keras's own ``try: import ...`` then leaves those integrations off), and they import as usual after.

A training's hold-out split imports scikit-learn after Keras (``omnifuse/data/splits.py``), and scikit-learn
imports pandas only to keep a module-level name it never uses (``sklearn.utils.fixes.pd``; its pandas code imports
pandas where it runs): :func:`setup` has pandas look absent while scikit-learn is first imported, too (about 0.4 of
the 1.4 CPU seconds that import costs).

Both imports also run with the garbage collector paused, and what they made is frozen after (``gc.freeze``): Keras's
makes some 500,000 objects that live as long as the process (and leaves about 1,500 cyclic garbage), and every full pass
of the collector walked them all again: during the import itself, during the imports and the tracing after it, and
at the interpreter's exit. About 1.8 of 6.7 CPU seconds for a process that imports Keras and scikit-learn and
exits (``omnifuse train``'s imports).

Only the command line calls :func:`setup`: ``import omnifuse`` in a user's program leaves Keras as it is.
"""

from __future__ import annotations

import gc
import importlib.abc
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from omnifuse.importhook import around_first_import

# packages Keras or TensorFlow import only for integrations omnifuse does not use (see above)
OPTIONAL = ("pandas", "matplotlib", "sklearn", "scipy")
ROOTS = ("keras", "tensorflow")  # the first of them imported imports the other
SPLIT_ROOTS = ("sklearn",)  # the hold-out split's library, and what it imports for nothing omnifuse uses
SPLIT_OPTIONAL = ("pandas",)


def setup() -> None:
    """Import Keras and TensorFlow, when they are first imported, without :data:`OPTIONAL`, and scikit-learn
    without :data:`SPLIT_OPTIONAL` (see the module)."""
    around_first_import("lean", ROOTS, lambda: _without(OPTIONAL))
    around_first_import("lean-split", SPLIT_ROOTS, lambda: _without(SPLIT_OPTIONAL))


@contextmanager
def _without(optional: tuple[str, ...]) -> Iterator[None]:
    absent = _Absent(optional)
    sys.meta_path.insert(0, absent)
    collecting = gc.isenabled()
    gc.disable()  # (see the module)
    try:
        yield
    finally:
        sys.meta_path.remove(absent)
        if collecting:
            gc.enable()
        gc.freeze()


class _Absent(importlib.abc.MetaPathFinder):
    """Has every package in ``optional`` not imported yet look not installed."""

    def __init__(self, optional: tuple[str, ...]):
        self.hidden = {name for name in optional if name not in sys.modules}

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
