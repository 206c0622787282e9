"""Running the first import of a package inside a context manager (a hook on ``sys.meta_path``).

The command line uses it twice: :mod:`omnifuse.quiet` imports TensorFlow with its start-up lines filtered out, and
:mod:`omnifuse.lean` imports Keras without the integrations omnifuse does not use. Imports nothing from omnifuse.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager


def around_first_import(
    key: str, names: tuple[str, ...], context: Callable[[], AbstractContextManager]
) -> None:
    """Run the first import of any of ``names`` (whichever comes first) inside ``context()``; later imports run as
    usual. Nothing when one of them is imported already, or when a hook named ``key`` is waiting."""
    if any(name in sys.modules for name in names):
        return
    if not any(getattr(f, "key", None) == key for f in sys.meta_path):
        sys.meta_path.insert(0, _FirstImport(key, names, context))


class _FirstImport(importlib.abc.MetaPathFinder):
    """Finds the first of ``names`` imported the usual way, once, and has its module run inside ``context()``."""

    def __init__(self, key: str, names: tuple[str, ...], context: Callable[[], AbstractContextManager]):
        self.key, self.names, self.context = key, names, context

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        sys.meta_path.remove(self)  # once: the rest of the import (and any later one) runs as usual
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _Wrapped(spec.loader, self.context)
        return spec


class _Wrapped(importlib.abc.Loader):
    def __init__(self, inner, context: Callable[[], AbstractContextManager]):
        self.inner, self.context = inner, context

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        with self.context():
            self.inner.exec_module(module)
