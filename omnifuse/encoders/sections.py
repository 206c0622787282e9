"""The ``model.<kind>`` config sections (``model.image``, ``model.text``, ``model.audio``, ``model.tabular``): a
kind's own keys (``encoder``, ``vocab_size`` ...) plus one section of options per encoder of the kind's ``CONFIGS``
table (``model.image.cnn`` ...), and the choices of ``model.<kind>.encoder``, which are that table's names.

They are built from the tables when this module is imported, and again by :func:`refresh` after
:func:`omnifuse.register_encoder` adds an encoder of the user's to a table; ``omnifuse.config`` looks them up here
each time it builds or checks a config, so a registered encoder's name and options are valid keys from then on.
Keras-free, like the tables.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field

from omnifuse.encoders import audio, image, numbers, text

SECTIONS = ("ImageConfig", "TextConfig", "AudioConfig", "TabularConfig")


class Joined:
    """Marks a str key (``typing.Annotated[str, Joined(choices)]``) that takes one of ``choices`` or several joined
    by ``sep`` (``model.text.encoder = "rnn+nb"``); each part is checked."""

    def __init__(self, choices: tuple[str, ...], sep: str = "+"):
        self.choices, self.sep = tuple(choices), sep


def _with_encoder_sections(name: str, base: type, configs: dict[str, type]) -> type:
    """``base`` (a kind's own keys) plus one section per encoder of the kind's ``CONFIGS`` table, in its order;
    each section's comment (``field.metadata["doc"]``) is the first line of its dataclass's docstring."""
    sections = [
        (key, cls, field(default_factory=cls, metadata={"doc": _first_line(cls.__doc__)}))
        for key, cls in configs.items()
    ]
    cls = dataclasses.make_dataclass(name, sections, bases=(base,), frozen=True)
    cls.__module__, cls.__doc__ = __name__, base.__doc__
    return cls


def _first_line(doc: str | None) -> str:
    return next(iter((doc or "").strip().splitlines()), "")


@dataclass(frozen=True)
class _ImageKeys:
    """model.image: the image encoder, and one section of options per encoder (omnifuse.encoders.image)."""

    # cnn | resnet | fastnet (the input shape is the data's) | efficientnet_lite0, _lite1, _lite2 (pretrained)
    encoder: ImageEncoder = "cnn"
    augment: bool = False  # random flip + translate inside the training step
    # a pretraining run (omnifuse pretrain) whose encoder weights this encoder starts from; "" = a random start
    init: str = ""


@dataclass(frozen=True)
class _TextKeys:
    """model.text: the text encoder(s), the vocabulary, and one section per encoder (omnifuse.encoders.text)."""

    # rnn | bag | tfidf | nb, or several joined by "+" (rnn+nb), trained together
    encoder: TextEncoders = "rnn"
    # rnn, bag: tokens kept (the most frequent in the training texts); tfidf, nb: their own
    vocab_size: int = 20000
    sequence_length: int = 200  # token ids per text, cut or padded to this (rnn, bag)
    ngrams: int = 1  # token n-grams in the vocabulary (the bag encoder profits from 2)
    # a pretraining run (omnifuse pretrain) whose vocabulary and rnn weights the rnn encoder starts from; "" = a
    # vocabulary learned from the training texts and a random start
    init: str = ""


@dataclass(frozen=True)
class _AudioKeys:
    """model.audio: the audio encoder, and one section per encoder (omnifuse.encoders.audio)."""

    # log-mel CNN (the waveform's rate and length are data.sample_rate / data.num_samples)
    encoder: AudioEncoder = "cnn"


@dataclass(frozen=True)
class _TabularKeys:
    """model.tabular: the encoder of a table's numbers and categories, one section per encoder (encoders.numbers)."""

    # numbers + categories (NaN-aware, standardised with train-split statistics)
    encoder: TabularEncoder = "mlp"


def refresh() -> None:
    """(Re)build the encoder choices and the four sections from the kinds' tables."""
    global ImageEncoder, TextEncoders, AudioEncoder, TabularEncoder
    global ImageConfig, TextConfig, AudioConfig, TabularConfig
    ImageEncoder = typing.Literal[tuple(image.CONFIGS)]
    TextEncoders = typing.Annotated[str, Joined(tuple(text.CONFIGS))]
    AudioEncoder = typing.Literal[tuple(audio.CONFIGS)]
    TabularEncoder = typing.Literal[tuple(numbers.CONFIGS)]
    ImageConfig = _with_encoder_sections("ImageConfig", _ImageKeys, image.CONFIGS)
    TextConfig = _with_encoder_sections("TextConfig", _TextKeys, text.CONFIGS)
    AudioConfig = _with_encoder_sections("AudioConfig", _AudioKeys, audio.CONFIGS)
    TabularConfig = _with_encoder_sections("TabularConfig", _TabularKeys, numbers.CONFIGS)


refresh()
