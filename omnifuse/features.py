"""Frozen features, computed once: training a model whose pretrained encoders are frozen costs only its head.

A frozen pretrained encoder (``mode = "frozen"``) gives every sample the same features in every epoch, so running it
in every training step is wasted work: on a CPU, EfficientNet-Lite0 at 224 pixels costs hundreds of times more than
the head above it. :func:`plan` finds the modality branches of a model whose output is fixed (a frozen encoder, no
augmentation in front of it); :func:`extract` runs a branch once over a split's samples, cached on disk under the
user cache keyed by the encoder's config and weights and the samples' bytes, so a second run on the same data
(another seed, fold or speaker) reads them back; :func:`with_features` puts them in place of the raw inputs as a
modality of kind ``features``. Training builds the same model on them (the builder passes a ``features`` modality
straight to the fusion), trains it, and :func:`copy_weights` carries every trained layer into the full model, which
is what is saved, evaluated and served: it still takes raw inputs. (A Keras sub-model from the branches' output
tensors would share the layers without copies, but building one rewires the full model's graph so that it can no
longer be saved.)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import os
from pathlib import Path

import keras
import numpy as np

from omnifuse.names import mask_name
from omnifuse.progress import Steps

log = logging.getLogger(__name__)


def cacheable(branch) -> bool:
    """Whether ``branch`` (a ModalityBranch) gives fixed features: a frozen encoder with nothing random before it."""
    return (
        bool(getattr(branch.encoder, "frozen_features", False))
        and getattr(branch, "preprocess", None) is None
    )


def plan(model: keras.Model, modalities: list[str]) -> dict[str, keras.layers.Layer]:
    """modality name -> its branch layer, for the branches of ``model`` whose features can be computed once.

    Only a model with one branch per modality qualifies (an ensemble's members or several text encoders joined by
    "+" have several): the others train as usual."""
    out = {}
    for name in modalities:
        try:
            branch = model.get_layer(f"{name}_branch")
        except ValueError:
            continue
        if cacheable(branch):
            out[name] = branch
    return out


def copy_weights(source: keras.Model, target: keras.Model) -> None:
    """Every weight of ``source``'s top-level layers into ``target``'s layers of the same names (the head model
    and the full model share every layer name but the frozen encoders' branches)."""
    for layer in source.layers:
        if not layer.weights:
            continue
        try:
            other = target.get_layer(layer.name)
        except ValueError:
            continue
        other.set_weights(layer.get_weights())


def extractor(model: keras.Model, name: str, branch) -> keras.Model:
    """The sub-model from modality ``name``'s raw input (and mask) to its branch's features. (Its inputs are the
    model's own Input tensors: a sub-model *from* intermediate tensors would rewire the model, see above.)"""
    mask = mask_name(name)
    return keras.Model({name: model.input[name], mask: model.input[mask]}, branch.output)


def _digest(array: np.ndarray) -> str:
    h = hashlib.sha256()
    array = np.ascontiguousarray(array)
    h.update(str((array.dtype.str, array.shape)).encode())
    if array.dtype.kind in "OU":
        for item in array.reshape(-1):
            h.update(str(item).encode("utf-8", "surrogatepass"))
            h.update(b"\0")
    else:
        h.update(array.tobytes())
    return h.hexdigest()


def cache_root() -> Path:
    env = os.environ.get("OMNIFUSE_CACHE", "").strip()
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "omnifuse") / "features"


def _key(branch, x: np.ndarray) -> str:
    encoder = branch.encoder
    h = hashlib.sha256()
    # the encoder's code, and that of the omnifuse classes it builds on (EfficientNet-Lite1's layer is Lite0's with
    # another block table): a change in how it computes its features must not read features cached before
    bases = [c for c in type(encoder).__mro__[1:] if c.__module__.startswith("omnifuse.")]
    for path in dict.fromkeys(inspect.getfile(c) for c in [type(encoder), *bases]):
        h.update(Path(path).read_bytes())
    config = keras.saving.serialize_keras_object(encoder)
    h.update(json.dumps(config, sort_keys=True, default=str).encode())
    for w in encoder.weights[:4] + encoder.weights[-4:]:  # the pretrained weights' identity, cheaply
        h.update(np.asarray(keras.ops.convert_to_numpy(w)).tobytes()[:4096])
    h.update(_digest(x).encode())
    return h.hexdigest()[:32]


def extract(
    model: keras.Model, name: str, branch, x: np.ndarray, batch_size: int = 64, cache: bool = True
) -> np.ndarray:
    """``branch``'s features of samples ``x`` (float32 (N, dim)), read from the cache when computed before."""
    path = cache_root() / f"{name}-{_key(branch, x)}.npy" if cache else None
    if path is not None and path.is_file():
        try:
            feats = np.load(path)
            if feats.shape[0] == len(x):
                log.info("features of %s: read %s", name, path)
                return feats
        except (OSError, ValueError):
            pass  # a damaged cache file is recomputed and replaced
    net = extractor(model, name, branch)
    feats = []
    with Steps(f"features of {name} (frozen encoder, cached)", -(-len(x) // batch_size)) as steps:
        for start in range(0, len(x), batch_size):
            chunk = x[start : start + batch_size]
            ones = np.ones(len(chunk), "float32")
            feats.append(np.asarray(net({name: chunk, mask_name(name): ones}, training=False), "float32"))
            steps.advance()
    out = np.concatenate(feats) if feats else np.zeros((0, branch.encoder.output_dim), "float32")
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, path)
    return out


def with_features(model: keras.Model, prepared, branches: dict, batch_size: int = 64):
    """A copy of ``prepared`` (a :class:`omnifuse.pipeline.Prepared`) whose ``branches``' modalities hold their
    features (float32 (N, dim), a modality of kind ``features``, streamed as it is) in every split."""
    import dataclasses

    parts = []
    kinds = prepared.modalities
    for part in prepared.parts:
        splits = {}
        for which in ("train", "val", "test"):
            split = getattr(part, which)
            inputs = dict(split.inputs)
            for name, branch in branches.items():
                if name in inputs:
                    x = inputs[name]
                    if kinds.get(name) == "image" and x.ndim == 3:  # grey images without a channel axis
                        x = x[..., None]
                    inputs[name] = extract(model, name, branch, x, batch_size)
            splits[which] = dataclasses.replace(split, inputs=inputs)
        parts.append(dataclasses.replace(part, **splits))
    modalities = dict(prepared.modalities)
    numbers = dict(prepared.numbers)
    for name, branch in branches.items():
        modalities[name] = "features"
        width = int(branch.encoder.output_dim)
        numbers[name] = {"features": [f"{name}_feature_{i}" for i in range(width)], "columns": []}
    return dataclasses.replace(prepared, parts=parts, modalities=modalities, numbers=numbers)
