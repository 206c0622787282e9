"""Loading a saved ``.keras`` model, in the precision it was saved in or another.

Keras finds omnifuse's layers, losses, metrics and text standardizer by their registered names
(``omnifuse>ModalityBranch`` ...), which exist once the modules defining them are imported: this module imports
every one of them explicitly, so ``load_model`` works in a fresh process. Saving is ``model.save`` (through
:func:`omnifuse.rundir.atomic_write`).
"""

from __future__ import annotations

import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import keras

# Every module that registers a Keras object omnifuse models are saved with (imported for that effect only).
import omnifuse.encoders.image.augment  # noqa: F401
import omnifuse.encoders.layers  # noqa: F401
import omnifuse.fusion.attention  # noqa: F401
import omnifuse.fusion.concat  # noqa: F401
import omnifuse.fusion.cross_attention  # noqa: F401
import omnifuse.fusion.gated  # noqa: F401
import omnifuse.fusion.late  # noqa: F401
import omnifuse.fusion.tensor  # noqa: F401
import omnifuse.model.branch  # noqa: F401
import omnifuse.model.ensemble  # noqa: F401
import omnifuse.model.heads  # noqa: F401
import omnifuse.optimizers  # noqa: F401
import omnifuse.preprocessing  # noqa: F401
import omnifuse.registry  # noqa: F401  (imports every encoder class of every kind's table)
from omnifuse.keras_compat import cache_saving_skipsets
from omnifuse.precision import POLICIES, check_precision, precision_scope

cache_saving_skipsets()  # every save and load of a model, omnifuse's or not, in this process

_CONFIG_FILE = "config.json"  # the model's config inside a .keras archive


def _set_policy(config: Any, policy: str) -> Any:
    """``config`` (a serialized layer or part of one) with every float dtype policy in it set to ``policy``."""
    if isinstance(config, dict):
        if config.get("class_name") in ("DTypePolicy", "FloatDTypePolicy"):
            name = (config.get("config") or {}).get("name")
            if name in POLICIES.values():
                return {**config, "config": {**config["config"], "name": policy}}
            return config
        return {key: _set_policy(value, policy) for key, value in config.items()}
    if isinstance(config, list):
        return [_set_policy(value, policy) for value in config]
    return config


def _output_layers(config: dict) -> set[str]:
    """Names of the layers a functional model's config lists as its outputs."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        elif isinstance(node, list) and len(node) == 3 and isinstance(node[0], str):
            found.add(node[0])
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(config.get("config", {}).get("output_layers", []))
    return found


def load_model(path: str | Path, precision: str | None = None, compile: bool = True) -> keras.Model:
    """Load a ``.keras`` model in ``precision``, or in the precision it was saved in (``None``); ``compile=False``
    for a model that only answers (evaluation, prediction): its optimizer, losses and metrics are not rebuilt, a
    third of a small model's load.

    For another precision the saved config's dtype policies are rewritten, all but the model's output layers (the
    heads stay float32), and the weights and vocabularies load unchanged: variables are float32 in both.
    """
    path = Path(path)
    with zipfile.ZipFile(path) as archive:
        text = archive.read(_CONFIG_FILE).decode()
        saved = "bfloat16" if f'"{POLICIES["bfloat16"]}"' in text else "float32"
        precision = None if precision is None else check_precision(precision)
        if precision is None or precision == saved:
            with precision_scope(saved):  # layers that encoders create in __init__ take it too
                return keras.saving.load_model(path, compile=compile)
        config = json.loads(text)
        heads = _output_layers(config)
        policy = POLICIES[precision]
        layers = config.get("config", {}).get("layers", [])
        for i, layer in enumerate(layers):
            if layer.get("config", {}).get("name") not in heads:
                layers[i] = _set_policy(layer, policy)
        with tempfile.TemporaryDirectory() as tmp:
            copy = Path(tmp) / path.name
            with zipfile.ZipFile(copy, "w") as out:
                for item in archive.infolist():
                    out.writestr(
                        item, json.dumps(config) if item.filename == _CONFIG_FILE else archive.read(item)
                    )
            with precision_scope(precision):
                return keras.saving.load_model(copy, compile=compile)
