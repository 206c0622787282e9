"""The multimodal classifier: one encoder per modality, a fusion, one head per task.

Inputs are a dict: one tensor per modality (``image`` uint8 (B, H, W, C), ``text`` string (B,), ``audio`` float32
(B, samples) at ``data.sample_rate``, a ``numbers`` modality such as ``tabular`` float32 (B, F), NaN = empty cell)
and a presence mask
per modality (``image_mask``, ``text_mask``: float (B,), 1 = present). Outputs are a dict: one probability tensor per
task, plus ``modality_weights`` (B, n_modalities) when the fusion weights modalities. An ensemble
(``model.members`` > 1) outputs the members' mean under those names, and each member's task outputs as
``<task>__member<i>`` (the ones its training losses are on).
"""

from __future__ import annotations

from collections.abc import Iterable

import keras
import numpy as np
from keras import layers

from omnifuse.config import Config
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as modality_kind
from omnifuse.modalities import sample_shape
from omnifuse.model.branches import BRANCHES, Branching, needs
from omnifuse.model.ensemble import MemberMean, member_configs
from omnifuse.model.heads import head
from omnifuse.names import WEIGHTS_OUTPUT, mask_name, member_name, unimodal_name
from omnifuse.precision import precision_scope
from omnifuse.registry import FUSIONS, lookup


def build_model(
    cfg: Config,
    modalities: dict[str, str],
    tasks: dict[str, list[str]],
    texts: Iterable[str] | None = None,
    image_shape: tuple[int, int, int] = (32, 32, 3),
    numbers: dict | None = None,
    images=None,
    text_labels: tuple[str, np.ndarray] | None = None,
) -> keras.Model:
    """Build (uncompiled) the model for ``modalities`` (name -> kind) and ``tasks`` (name -> class names).

    ``texts``: training texts from which the text vocabulary is learned (needed when there is a text modality).
    ``numbers``: per ``numbers`` modality, its training rows, float32 (N, F) with NaN for an empty cell; the
    tabular encoder learns its normalisation from them (needed when there is a numbers modality).
    ``images``: a sample of training images, uint8 (N, H, W, C), for image encoders that ``adapt`` to data
    (``fastnet`` sets its whitening filters from them); without it they keep their random start.
    ``text_labels``: (task, class index per text of ``texts``, -1 for none), from which the ``nb`` text encoder
    learns its n-gram log-count ratios; without it they stay 1.

    ``cfg.train.precision`` = ``"bfloat16"`` builds the layers in Keras's ``mixed_bfloat16`` policy; the heads and
    the modality-weight output stay float32 (see omnifuse/precision.py).
    """
    with precision_scope(cfg.train.precision):
        return _build_model(cfg, modalities, tasks, texts, image_shape, numbers, images, text_labels)


def _build_model(cfg, modalities, tasks, texts, image_shape, numbers, images, text_labels) -> keras.Model:
    members = cfg.model.members
    if isinstance(members, bool) or members < 1:
        raise OmnifuseError(f"Expected model.members to be an integer >= 1. Received: {members!r}")
    inputs = {}
    for name, kind in sorted(modalities.items()):
        rule = modality_kind(kind, name)
        width = needs(kind, name, texts, numbers)
        shape = sample_shape(kind, image_shape=image_shape, num_samples=cfg.data.num_samples, width=width)
        inputs[name] = keras.Input(shape=shape, name=name, dtype=rule.DTYPE)
        inputs[mask_name(name)] = keras.Input(shape=(), name=mask_name(name), dtype="float32")
    data = dict(texts=texts, numbers=numbers, images=images, text_labels=text_labels)
    configs = member_configs(cfg)
    if members == 1:
        return keras.Model(
            inputs, _member(configs[0], inputs, modalities, tasks, **data), name="multimodal_classifier"
        )
    # an ensemble: independently initialised members on the same inputs, each trained with its own loss (each
    # member's variables get only its own gradient, so training them side by side is training them apart, on the
    # same batches); the task outputs and modality weights are the members' (weighted) means
    vectorized: dict = {}  # the text vocabularies are learned once and the token ids computed once for all members
    found = [
        _member(
            member_cfg, inputs, modalities, tasks, **data, suffix=member_name("", i), vectorized=vectorized
        )
        for i, member_cfg in enumerate(configs, 1)
    ]
    outputs = {}
    for key in found[0]:
        if key in tasks or key == WEIGHTS_OUTPUT:
            outputs[key] = MemberMean(name=key, dtype="float32")([out[key] for out in found])
    for i, out in enumerate(found, 1):
        outputs.update({member_name(key, i): value for key, value in out.items() if key != WEIGHTS_OUTPUT})
    return keras.Model(inputs, outputs, name="multimodal_ensemble")


def _member(
    cfg, inputs, modalities, tasks, texts, numbers, images, text_labels, suffix: str = "", vectorized=None
) -> dict:
    """One member's encoders, fusion and heads on ``inputs``; its outputs by task (and ``modality_weights``, and
    the unimodal heads' names). Every layer's name ends in ``suffix`` (``"__member2"``; ``""`` for a lone model)."""
    features, masks = {}, {}
    # skipping an absent modality's encoder pays only where batches can lack it, and XLA cannot afford it
    skip = len(modalities) > 1 and not cfg.train.jit_compile
    for name, kind in sorted(modalities.items()):
        x, mask = inputs[name], inputs[mask_name(name)]
        at = Branching(cfg, name, tasks, texts, numbers, images, text_labels, skip, suffix, vectorized)
        feat = BRANCHES[kind](at, x, mask)
        features[name], masks[name] = feat, mask

    fusion_cls = lookup(FUSIONS, cfg.model.fusion, "fusion")
    if cfg.model.fusion_dim <= 0 and not fusion_cls.unprojected:
        able = " or ".join(repr(name) for name, cls in FUSIONS.items() if cls.unprojected)
        raise OmnifuseError(
            f"Expected model.fusion_dim > 0 (only model.fusion = {able} can pass features on unprojected, with 0). "
            f"Received: model.fusion = {cfg.model.fusion!r}, model.fusion_dim = {cfg.model.fusion_dim}"
        )
    options = {}
    if cfg.model.fusion_normalize:
        if cfg.model.fusion != "attention":
            raise OmnifuseError(
                "Expected model.fusion = 'attention' with model.fusion_normalize = true. "
                f"Received: model.fusion = {cfg.model.fusion!r}"
            )
        options["normalize"] = True
    fusion = fusion_cls(
        modalities=sorted(modalities),
        dim=cfg.model.fusion_dim,
        dropout=cfg.model.fusion_dropout,
        name=f"fusion{suffix}",
        **options,
    )
    fused = fusion(features, masks)
    outputs = {}
    if fusion.returns_weights:
        fused, weights = fused
        outputs[WEIGHTS_OUTPUT] = layers.Identity(name=f"{WEIGHTS_OUTPUT}{suffix}", dtype="float32")(weights)
    for task, classes in tasks.items():
        h = fused
        if cfg.model.head_hidden:
            h = layers.Dense(cfg.model.head_hidden, activation="relu", name=f"{task}_hidden{suffix}")(h)
        if cfg.model.head_dropout:
            h = layers.Dropout(cfg.model.head_dropout, name=f"{task}_dropout{suffix}")(h)
        # heads in float32 whatever the precision: the softmax and the loss in full precision
        outputs[task] = head(cfg.model, len(classes), f"{task}{suffix}")(h)
        if cfg.train.unimodal_loss > 0 and len(modalities) > 1:
            for m in sorted(modalities):
                name = unimodal_name(task, m)
                outputs[name] = layers.Dense(
                    len(classes), activation="softmax", name=f"{name}{suffix}", dtype="float32"
                )(features[m])
    return outputs
