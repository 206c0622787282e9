"""Encoders, one sub-package per modality kind (image, text, audio, numbers), one file per encoder.

Each encoder is a Keras layer taking that modality's tensor and returning (B, output_dim). Its options are a frozen
dataclass in a Keras-free file beside it (``cnn.py`` + ``cnn_config.py``), so reading and checking a config never
imports Keras or TensorFlow. Each kind's ``__init__`` finds its encoders itself (:func:`discover`): every
``<file>_config.py`` of the package names, in ``ENCODERS``, the encoder(s) it configures and their layer class in
``<file>.py``. From those, each kind package holds two tables:

- ``CONFIGS``: name -> options dataclass; its names are the valid ``model.<kind>.encoder`` values and its
  dataclasses the ``model.<kind>.<name>`` config sections (``omnifuse.config`` builds those from it);
- ``LAYERS``: name -> ``"module.Class"`` in the kind's package (or the class itself, for an encoder of the user's
  added by :func:`omnifuse.register_encoder`); ``ENCODERS`` (name -> class) and the classes by their names are
  imported from it on first use.

So adding an encoder is two files, ``<file>.py`` and ``<file>_config.py``, and no table to edit.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any


def discover(package: str, path) -> tuple[dict[str, type], dict[str, str]]:
    """``CONFIGS`` and ``LAYERS`` of the kind package ``package`` (its ``__path__``), from each
    ``<file>_config.py``'s ``ENCODERS`` (name -> class name in ``<file>.py``) and the one dataclass it defines,
    in the order of the encoders' names. Imports the config modules only (no Keras)."""
    configs: dict[str, type] = {}
    layers: dict[str, str] = {}
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not info.name.endswith("_config"):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        options = [
            v
            for v in vars(module).values()
            if dataclasses.is_dataclass(v) and isinstance(v, type) and v.__module__ == module.__name__
        ]
        names = getattr(module, "ENCODERS", None)
        if len(options) != 1 or not isinstance(names, dict):
            raise TypeError(
                f"{module.__name__} must define one options dataclass and ENCODERS = {{name: 'LayerClass'}}; "
                f"found {len(options)} dataclasses and ENCODERS = {names!r}"
            )
        for name, cls in names.items():
            configs[name] = options[0]
            layers[name] = f"{info.name[: -len('_config')]}.{cls}"
    order = sorted(configs)  # efficientnet_lite0 (efficientnet_lite_config.py) before efficientnet_lite1
    return {n: configs[n] for n in order}, {n: layers[n] for n in order}


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
