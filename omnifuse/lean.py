"""The command line imports Keras without the optional integrations Keras imports eagerly when they are installed.

``import keras`` (and ``import tensorflow``, which imports Keras) also imports pandas (to accept DataFrames in
``fit``), matplotlib (``keras.visualization``), scikit-learn (``keras.wrappers``) and, through the legacy
``tf.keras``, SciPy (sparse inputs): about 2.7 of the 8 CPU seconds the import costs, spent again by every process
``omnifuse`` starts (a worker of ``omnifuse launch``, a server, a benchmark run). omnifuse feeds Keras tf.data and
NumPy only and imports what it uses of these libraries itself, where it uses them (calibration's SciPy, the
evaluation's scikit-learn and plots). So while Keras or TensorFlow is imported, :func:`setup` has these packages
look absent (Keras's own ``try: import ...`` then leaves those integrations off), and they import as usual after.

Only the command line calls :func:`setup`: ``import omnifuse`` in a user's program leaves Keras as it is.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys

# packages Keras or TensorFlow import only for integrations omnifuse does not use (see above)
OPTIONAL = ("pandas", "matplotlib", "sklearn", "scipy")
ROOTS = ("keras", "tensorflow")  # the first of them imported imports the other


def setup() -> None:
    """Import Keras and TensorFlow, when they are first imported, without :data:`OPTIONAL` (see the module)."""
    if any(name in sys.modules for name in ROOTS):
        return
    if not any(isinstance(f, _RootFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _RootFinder())


class _Absent(importlib.abc.MetaPathFinder):
    """Has every package in :data:`OPTIONAL` not imported yet look not installed."""

    def __init__(self):
        self.hidden = {name for name in OPTIONAL if name not in sys.modules}

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.hidden:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


class _RootFinder(importlib.abc.MetaPathFinder):
    """Finds the first of :data:`ROOTS` imported the usual way, once, and runs its import with :class:`_Absent`."""

    def find_spec(self, name, path=None, target=None):
        if name not in ROOTS:
            return None
        sys.meta_path.remove(self)  # once: the rest of the import (and any later one) runs as usual
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _LeanLoader(spec.loader)
        return spec


class _LeanLoader(importlib.abc.Loader):
    def __init__(self, inner):
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        absent = _Absent()
        sys.meta_path.insert(0, absent)
        try:
            self.inner.exec_module(module)
        finally:
            sys.meta_path.remove(absent)
