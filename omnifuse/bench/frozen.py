"""A preset's frozen pretrained features per split, for the benchmarks that retrain only a head (the labelling loop
of :mod:`omnifuse.bench.loop`): the model the preset builds, its cacheable branches (:func:`omnifuse.features.plan`)
run once over the prepared splits, read back from the feature cache (``$OMNIFUSE_CACHE/features``) when a run of
the same encoder on the same samples computed them before.

>>> feats = split_features("fsdd-pretrained")   # {"train": (X, y), "val": ..., "test": ...}, plus the encoder
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.modalities import KINDS, held_as, with_vocabulary


def encoder_names(cfg) -> dict[str, str]:
    """modality kind -> the encoder the config names for it (with its options that change the features)."""
    out = {}
    for kind in KINDS:  # each kind's encoder section is model.<kind> (numbers': model.tabular, never frozen)
        section = getattr(cfg.model, kind, None)
        name = getattr(section, "encoder", None)
        if not name:
            continue
        options = getattr(section, name, None)
        shown = {
            k: getattr(options, k) for k in ("mode", "size", "max_length", "pooling") if hasattr(options, k)
        }
        out[kind] = name + (" (" + ", ".join(f"{k}={v}" for k, v in shown.items()) + ")" if shown else "")
    return out


def split_features(
    preset: str,
    overrides: Sequence[str] = (),
    data_dir: str | None = None,
    batch_size: int = 64,
    encode: bool = True,
) -> dict[str, Any]:
    """The frozen features of ``preset`` (with ``overrides``) for every split: ``{"splits": {name: {"x": per
    modality float32 (N, D), "y": int labels (N,), "masks": per modality (N,), "texts": per text modality
    its raw texts}}, "classes": [...], "encoders":
    {modality: encoder}, "task": name}``. Every modality must have a frozen pretrained encoder.
    ``encode=False``: no model is built and nothing is encoded (``x`` and ``encoders`` empty): the splits'
    labels, texts and text masks only, for a loop on the texts' own vectors."""
    from omnifuse import features, pipeline
    from omnifuse.config import load_config
    from omnifuse.data.catalog import load_datasets
    from omnifuse.model.builder import build_model

    cfg = load_config(preset, list(overrides))
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    if not encode:
        return _splits(prepared, prepared, [], {})
    texts = [str(t) for p in prepared.parts for m in with_vocabulary(prepared.modalities)
             for t in p.train.inputs.get(m, [])]  # fmt: skip
    model = build_model(
        cfg, prepared.modalities, prepared.tasks, texts or None, prepared.image_shape or (32, 32, 3)
    )
    branches = features.plan(model, sorted(prepared.modalities))
    missing = sorted(set(prepared.modalities) - set(branches))
    if missing:
        raise OmnifuseError(
            f"Expected every modality of {preset!r} to have a frozen pretrained encoder (its features computed "
            f"once). Received: no cacheable branch for {', '.join(missing)}"
        )
    fp = features.with_features(model, prepared, branches, batch_size=batch_size)
    kinds = encoder_names(cfg)
    return _splits(prepared, fp, branches, {m: kinds.get(prepared.modalities[m], "?") for m in branches})


def _splits(prepared, fp, branches: Sequence[str], encoders: dict[str, str]) -> dict[str, Any]:
    """:func:`split_features`' answer from the prepared data (its texts) and ``fp``, the same with the
    ``branches``' features in place of their inputs."""
    task = next(iter(fp.tasks))
    text_modalities = [m for m, kind in prepared.modalities.items() if held_as(kind) == "text"]
    splits = {}
    for which in ("train", "val", "test"):
        parts = [getattr(p, which) for p in fp.parts if len(getattr(p, which))]
        raw = [getattr(p, which) for p in prepared.parts]
        if not parts:
            continue
        splits[which] = {
            "x": {m: np.concatenate([np.asarray(s.inputs[m], np.float32) for s in parts]) for m in branches},
            "y": np.concatenate([np.asarray(s.labels[task], np.int64) for s in parts]),
            # the raw texts, to show a sample (images and audio stay out: the features stand for them)
            "texts": {
                m: np.concatenate([np.asarray(s.inputs[m], object) for s in raw if len(s)])
                for m in text_modalities
            },
            "masks": {
                m: np.concatenate([np.asarray(s.masks.get(m, np.ones(len(s))), np.float32) for s in parts])
                for m in sorted(set(branches) | set(text_modalities))
            },
        }
    return {
        "splits": splits,
        "classes": list(fp.tasks[task]),
        "task": task,
        "encoders": encoders,
    }
