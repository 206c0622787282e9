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

import dataclasses
import inspect
from collections.abc import Iterable

import keras
import numpy as np
from keras import layers

from omnifuse.config import Config
from omnifuse.encoders.image.augment import ImageAugment
from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as modality_kind
from omnifuse.modalities import sample_shape
from omnifuse.model.branch import ModalityBranch
from omnifuse.model.ensemble import MemberMean, member_configs
from omnifuse.model.heads import head
from omnifuse.names import WEIGHTS_OUTPUT, mask_name, member_name, unimodal_name
from omnifuse.precision import precision_scope
from omnifuse.preprocessing import standardize_text
from omnifuse.registry import AUDIO_ENCODERS, FUSIONS, IMAGE_ENCODERS, TABULAR_ENCODERS, TEXT_ENCODERS, lookup


def _image_branch(cfg: Config) -> tuple[layers.Layer, layers.Layer | None]:
    img = cfg.model.image
    encoder = lookup(IMAGE_ENCODERS, img.encoder, "image encoder")(
        **dataclasses.asdict(getattr(img, img.encoder)), name="image_encoder"
    )
    preprocess = None
    if img.augment:
        preprocess = ImageAugment(flip=True, translate=0.125, name="image_augment")
    return encoder, preprocess


def _text_branch(
    cfg: Config,
    name: str,
    x,
    mask,
    texts: list[str],
    labels=None,
    classes: int = 2,
    skip_absent: bool = True,
    member: str = "",
    vectorized: dict | None = None,
):
    """Text → features. ``model.text.encoder`` names one encoder (``rnn``, ``bag``, ``tfidf``, ``nb``) or several
    joined by ``+`` (``rnn+nb``): each gets its own vectorizer and branch, and their features are concatenated, so an
    n-gram bag and an LSTM are trained together in one model. ``labels`` (class index per text, -1 for none) set the
    ``nb`` encoder's log-count ratios. ``member``: the suffix of an ensemble member's layer names; ``vectorized``:
    the vectorizer and token ids of ``x`` per vectorizer settings, filled by the first member that needs them and
    reused by the others."""
    txt = cfg.model.text
    parts = txt.encoder.split("+")
    feats = []
    vectorized = {} if vectorized is None else vectorized
    for part in parts:
        cls = lookup(TEXT_ENCODERS, part, "text encoder")
        suffix = "" if len(parts) == 1 else f"_{part}"
        if getattr(cls, "takes_raw_text", False):
            # a pretrained encoder tokenises the strings itself (its own vocabulary, inside the model)
            encoder = cls(**dataclasses.asdict(getattr(txt, part)), name=f"{name}_encoder{suffix}")
            branch = ModalityBranch(encoder, skip_absent=skip_absent, name=f"{name}_branch{suffix}{member}")
            feats.append(branch([x, mask]))
            continue
        if part == "tfidf":
            sub = txt.tfidf
            settings = dict(max_tokens=sub.vocab_size, ngrams=_ngrams(sub.ngrams), output_mode="tf_idf")
            options = dict(units=sub.units, dropout=sub.dropout)
        elif part == "nb":
            sub = txt.nb
            # every n-gram of a text, whatever its length (padded to the longest text of the batch)
            settings = dict(max_tokens=sub.vocab_size, ngrams=_ngrams(sub.ngrams))
            options = dict(classes=classes, **dataclasses.asdict(sub))
            del options["ngrams"]
        else:
            settings = dict(
                max_tokens=txt.vocab_size,
                output_sequence_length=txt.sequence_length,
                ngrams=_ngrams(txt.ngrams),
            )
            options = _with_accepted(cls, dataclasses.asdict(getattr(txt, part)), vocab_size=txt.vocab_size)
        init = options.pop("init_embeddings", "none")
        # ensemble members whose vectorizer has the same settings share it (and its token ids); another member's
        # vectorizer of other settings gets that member's suffix on its name
        key = (name, tuple(sorted(settings.items())))
        if key in vectorized:
            vectorize, ids = vectorized[key]
        else:
            layer_name = f"{name}_vectorize{suffix}"
            if any(k[0] == name and v[0].name == layer_name for k, v in vectorized.items()):
                layer_name += member
            vectorize = layers.TextVectorization(standardize=standardize_text, name=layer_name, **settings)
            vectorize.adapt(texts, batch_size=1024)
            ids = vectorize(x)
            vectorized[key] = vectorize, ids
        if part == "nb":
            options["vocab_size"] = vectorize.vocabulary_size()
        encoder = cls(**options, name=f"{name}_encoder{suffix}")
        if init != "none":
            _start_embeddings(encoder, init, vectorize.get_vocabulary(), txt.sequence_length)
        if part == "nb" and labels is not None:
            # members with equal nb settings on one vectorizer would make the same fit: it is made once, copied
            fitted = ("nb fit", key, tuple(sorted((k, repr(v)) for k, v in options.items())))
            if fitted in vectorized:
                encoder.build((None, None))
                encoder.set_weights(vectorized[fitted][0].get_weights())
            else:
                encoder.adapt(_text_batches(vectorize, texts, np.asarray(labels)))
                vectorized[fitted] = (encoder,)
        branch = ModalityBranch(encoder, skip_absent=skip_absent, name=f"{name}_branch{suffix}{member}")
        feats.append(branch([ids, mask]))
    return feats[0] if len(feats) == 1 else layers.Concatenate(name=f"{name}_features{member}")(feats)


def _start_embeddings(encoder, name: str, vocabulary: list[str], length: int) -> None:
    """Set the first rows of ``encoder``'s token embedding (one per vocabulary word) to pretrained word vectors."""
    from omnifuse.encoders.text.embeddings import initial_embeddings

    encoder.build((None, length))
    table = keras.ops.convert_to_numpy(encoder.embedding.embeddings).copy()
    vectors = initial_embeddings(name, vocabulary[: len(table)], table.shape[1])
    table[: len(vectors)] = vectors
    encoder.embedding.embeddings.assign(table)


def _ngrams(n: int):
    return n if n > 1 else None


def _text_batches(vectorize, texts: list[str], labels: np.ndarray, size: int = 1024):
    """(``vectorize``'s ids, labels) of ``texts``, ``size`` texts at a time."""
    for i in range(0, len(texts), size):
        yield np.asarray(vectorize(texts[i : i + size])), labels[i : i + size]


def _audio_encoder(cfg: Config) -> layers.Layer:
    aud = cfg.model.audio
    cls = lookup(AUDIO_ENCODERS, aud.encoder, "audio encoder")
    options = _with_accepted(
        cls, dataclasses.asdict(getattr(aud, aud.encoder)), sample_rate=cfg.data.sample_rate
    )
    return cls(**options, name="audio_encoder")


def _with_accepted(cls, options: dict, **facts) -> dict:
    """``options`` plus the ``facts`` about the data (``vocab_size``, ``sample_rate``) that ``cls`` takes: every
    encoder of omnifuse's own takes them; one registered by the user may not."""
    accepted = inspect.signature(cls.__init__).parameters
    return {**options, **{k: v for k, v in facts.items() if k in accepted}}


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
        if kind == "text" and texts is None:
            raise ValueError("build_model needs `texts` to learn the vocabulary of a text modality.")
        if kind in ("numbers", "features") and (numbers is None or name not in numbers):
            raise ValueError(f"build_model needs `numbers[{name!r}]`, the training rows of {name!r}.")
        width = numbers[name].shape[1] if kind in ("numbers", "features") else 0
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
        if kind == "image":
            encoder, preprocess = _image_branch(cfg)
            branch = ModalityBranch(encoder, preprocess, skip_absent=skip, name=f"{name}_branch{suffix}")
            feat = branch([x, mask])
            if images is not None and hasattr(encoder, "adapt"):
                encoder.adapt(images)
        elif kind == "text":
            task, labels = text_labels if text_labels is not None else (None, None)
            classes = len(tasks[task]) if task is not None else 2
            feat = _text_branch(cfg, name, x, mask, list(texts), labels, classes, skip, suffix, vectorized)
        elif kind == "audio":
            feat = ModalityBranch(_audio_encoder(cfg), skip_absent=skip, name=f"{name}_branch{suffix}")(
                [x, mask]
            )
        elif kind == "features":  # a frozen encoder's output, computed once (omnifuse/features.py)
            feat = x
        else:  # numbers
            tab = cfg.model.tabular
            encoder = lookup(TABULAR_ENCODERS, tab.encoder, "tabular encoder")(
                **dataclasses.asdict(getattr(tab, tab.encoder)), name=f"{name}_encoder"
            )
            if hasattr(encoder, "adapt"):  # learns its normalisation from the training rows
                encoder.adapt(numbers[name])
            feat = ModalityBranch(encoder, skip_absent=skip, name=f"{name}_branch{suffix}")([x, mask])
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
