"""Encoders, one sub-package per modality kind (image, text, audio, numbers), one file per encoder.

Each encoder is a Keras layer taking that modality's tensor and returning (B, output_dim). Its options are a frozen
dataclass in a Keras-free file beside it (``cnn.py`` + ``cnn_config.py``), so reading and checking a config never
imports Keras or TensorFlow. Each kind's ``__init__`` holds the tables, one line per encoder:

- ``CONFIGS``: name -> options dataclass; its names are the valid ``model.<kind>.encoder`` values and its
  dataclasses the ``model.<kind>.<name>`` config sections (``omnifuse.config`` builds those from it);
- ``LAYERS``: name -> ``"module.Class"`` in the kind's package (or the class itself, for an encoder of the user's
  added by :func:`omnifuse.register_encoder`); ``ENCODERS`` (name -> class) and the classes by their names are
  imported from it on first use.
"""

from __future__ import annotations

import importlib
from typing import Any


def lazy_attribute(package: str, layers: dict[str, str], name: str) -> Any:
    """A kind package's ``__getattr__``: ``ENCODERS`` (name -> class), or one encoder class by its class name."""
    if name == "ENCODERS":
        return {key: _load(package, path) for key, path in layers.items()}
    for path in layers.values():
        if isinstance(path, str) and path.rsplit(".", 1)[1] == name:
            return _load(package, path)
    raise AttributeError(f"module {package!r} has no attribute {name!r}")


def _load(package: str, path: str | type) -> type:
    if not isinstance(path, str):  # a class registered from outside the package
        return path
    module, cls = path.rsplit(".", 1)
    return getattr(importlib.import_module(f"{package}.{module}"), cls)
