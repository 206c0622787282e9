"""How each modality kind's branch of the model is built: ``BRANCHES`` maps a kind (image, text, audio, numbers,
features) to a function ``(at, x, mask) -> features`` that builds the kind's encoder(s) from the config, adapts
them to the training data where they learn from it (a vocabulary, the NB log-count ratios, normalisation
statistics), and wraps them in a :class:`~omnifuse.model.branch.ModalityBranch` behind the modality's mask. ``at``
(:class:`Branching`) carries what the builder knows: the config, the modality's name, the tasks, the training
texts / rows / images, the member suffix of an ensemble and the vectorizers shared between its members.

Adding a modality kind: its module in omnifuse/modalities/ (its Keras input, blank, corruption) and one function
here."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Iterable

import keras
import numpy as np
from keras import layers

from omnifuse.config import Config
from omnifuse.encoders.image.augment import ImageAugment
from omnifuse.modalities import held_as
from omnifuse.modalities import kind as modality_kind
from omnifuse.model.branch import ModalityBranch
from omnifuse.preprocessing import standardize_text
from omnifuse.pretrain import checkpoint
from omnifuse.registry import AUDIO_ENCODERS, IMAGE_ENCODERS, TABULAR_ENCODERS, TEXT_ENCODERS, lookup


@dataclasses.dataclass
class Branching:
    """What building one modality's branch needs to know (see the module docstring)."""

    cfg: Config
    name: str
    tasks: dict
    texts: Iterable[str] | None
    numbers: dict | None
    images: np.ndarray | None
    text_labels: tuple | None
    skip: bool  # skip the encoder for batches without the modality
    suffix: str  # an ensemble member's layer-name suffix ("" for a lone model)
    vectorized: dict | None


def needs(kind: str, name: str, texts, numbers) -> int:
    """Check the builder was given the training data a ``kind`` branch adapts to; the width of a numbers-like
    modality (0 for others)."""
    if modality_kind(kind).VOCABULARY and texts is None:
        raise ValueError("build_model needs `texts` to learn the vocabulary of a text modality.")
    if held_as(kind) == "columns":  # a row of features: as wide as the training rows
        if numbers is None or name not in numbers:
            raise ValueError(f"build_model needs `numbers[{name!r}]`, the training rows of {name!r}.")
        return numbers[name].shape[1]
    return 0


def _image(at: Branching, x, mask):
    encoder, preprocess = _image_branch(at.cfg)
    branch = ModalityBranch(encoder, preprocess, skip_absent=at.skip, name=f"{at.name}_branch{at.suffix}")
    feat = branch([x, mask])
    pretrained = checkpoint.start("image", at.cfg.model.image)
    if pretrained is not None:  # (after the branch built it; adapting would only be overwritten)
        checkpoint.load_into(encoder, pretrained, "model.image.init", (None, *x.shape[1:]))
    elif at.images is not None and hasattr(encoder, "adapt"):
        encoder.adapt(at.images)
    return feat


def _text(at: Branching, x, mask):
    task, labels = at.text_labels if at.text_labels is not None else (None, None)
    classes = len(at.tasks[task]) if task is not None else 2
    return _text_branch(
        at.cfg, at.name, x, mask, list(at.texts), labels, classes, at.skip, at.suffix, at.vectorized
    )


def _audio(at: Branching, x, mask):
    return ModalityBranch(_audio_encoder(at.cfg), skip_absent=at.skip, name=f"{at.name}_branch{at.suffix}")(
        [x, mask]
    )


def _numbers(at: Branching, x, mask):
    tab = at.cfg.model.tabular
    encoder = lookup(TABULAR_ENCODERS, tab.encoder, "tabular encoder")(
        **dataclasses.asdict(getattr(tab, tab.encoder)), name=f"{at.name}_encoder"
    )
    if hasattr(encoder, "adapt"):  # learns its normalisation from the training rows
        encoder.adapt(at.numbers[at.name])
    return ModalityBranch(encoder, skip_absent=at.skip, name=f"{at.name}_branch{at.suffix}")([x, mask])


def _features(at: Branching, x, mask):
    return x  # a frozen encoder's output, computed once (omnifuse/features.py): the fusion takes it as it is


BRANCHES = {"image": _image, "text": _text, "audio": _audio, "numbers": _numbers, "features": _features}


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
    # model.text.init: the rnn encoder's weights and the vocabulary of its vectorizer come from a pretraining run
    pretrained = checkpoint.start("text", txt)
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
            if pretrained is not None and part == "rnn":
                vectorize = layers.TextVectorization(
                    standardize=standardize_text,
                    name=layer_name,
                    vocabulary=pretrained.vocabulary,
                    **settings,
                )
            else:
                vectorize = layers.TextVectorization(
                    standardize=standardize_text, name=layer_name, **settings
                )
                vectorize.adapt(texts, batch_size=1024)
            ids = vectorize(x)
            vectorized[key] = vectorize, ids
        if part == "nb":
            options["vocab_size"] = vectorize.vocabulary_size()
        encoder = cls(**options, name=f"{name}_encoder{suffix}")
        if init != "none":
            _start_embeddings(encoder, init, vectorize.get_vocabulary(), txt.sequence_length)
        if pretrained is not None and part == "rnn":
            checkpoint.load_into(encoder, pretrained, "model.text.init", (None, txt.sequence_length))
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
