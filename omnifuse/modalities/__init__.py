"""What each modality kind IS to omnifuse, one module per kind (image, text, audio, numbers), each with:

- ``DTYPE`` and :func:`sample_shape`: the Keras input of a modality of that kind (one sample's shape from the data);
- :func:`blank`: what a missing sample is filled with (its mask says 0; the model never reads it);
- :func:`as_input`: a data set's array of samples as the model's input (grey images get a channel axis);
- :func:`corrupt`, ``MAX_LEVEL``, ``LEVELS``, ``CORRUPTION``: the one corruption rule, used by training
  (``train.modality_noise``) and by the robustness evaluation alike;
- ``VOCABULARY``: whether a vocabulary is learnt from its training samples (text: training fits one over every
  such modality; a pretrained checkpoint is tied to its vocabulary options);
- ``CELL`` and ``SUFFIXES``: how a table (a CSV, a labelling pool) holds a sample ("path" of a file, the "text"
  itself, or the modality's own "columns") and which file suffixes hold one (a folder's files);
  :func:`duplicate_keys` (a sample's exact and near keys, for the label audit) and :func:`glimpse` (a sample in a
  Markdown table cell, or None);
- ``COLUMN_KINDS``: the user's table column kinds (``data.kinds``) it holds (numbers: ``number`` and
  ``category``, all of a table's such columns making one modality); :func:`read_cell` (a non-empty cell, or a
  folder's file, as the kind's value; None: absent), :func:`column_array` (the array a column fills, blank
  where absent), :func:`id_reason` (why a column reads as an id, else None) and :func:`warn_column` (a doubt
  about an inferred column, logged); :func:`of_column` finds the kind of a table column kind.

Each kind also says how a served or exported model meets it (``facts``: the run's ``image_shape``,
``sample_rate``, ``num_samples`` and, for numbers, ``spec``, the modality's entry of meta.json's ``numbers``):
:func:`describe` (what a caller sends), :func:`decode` (what a caller sent, as the model's array and mask),
:func:`example` (a batch of model inputs, for export probes), :func:`warm_up` (the server's first sample),
``REQUEST`` and ``CONTENT_TYPES`` (how a request carries one: a "file" upload, "text", or a "json" value),
:func:`upload` (one request field, for the serving benchmark), :func:`bad_requests` (values a server must refuse),
:func:`feed` (the array an exported artifact takes, for the model card); and how an answer is explained:
``EXPLAIN`` (integrated gradients or word occlusion), :func:`summarise` (an attribution, as the explanation
shows it) and :func:`show` (one sample in the report of the worst-classified ones).

``KINDS`` maps a kind's name to its module; :func:`kind` looks one up with an error naming the valid ones.
This package imports nothing from the model, training or pipeline; it reads files with omnifuse.data's decoders
(omnifuse.data.decode, .wav, .duplicates), never its table loader, which asks the kinds instead.
"""

from __future__ import annotations

from types import ModuleType

from omnifuse.errors import OmnifuseError, did_you_mean
from omnifuse.modalities import audio, features, image, numbers, text

KINDS: dict[str, ModuleType] = {
    "image": image,
    "text": text,
    "audio": audio,
    "numbers": numbers,
    "features": features,  # a frozen encoder's cached output, only while training (omnifuse/features.py)
}

COLUMNS: dict[str, ModuleType] = {c: m for m in KINDS.values() for c in m.COLUMN_KINDS}


def of_column(column_kind: str) -> ModuleType:
    """The module of the modality kind holding a table column of ``column_kind`` (image, text, audio; number and
    category: numbers); a column kind that is no modality's (label, ignore, ...) is a KeyError."""
    return COLUMNS[column_kind]


def kind(name: str, modality: str = "") -> ModuleType:
    """The module of modality kind ``name``; ``modality`` names the modality in the error."""
    if name not in KINDS:
        where = f" of modality {modality!r}" if modality else ""
        raise OmnifuseError(
            f"Unknown modality kind {name!r}{where}.{did_you_mean(name, KINDS)} Valid: {', '.join(KINDS)}"
        )
    return KINDS[name]


def with_vocabulary(modalities: dict[str, str]) -> list[str]:
    """The modalities (of name -> kind ``modalities``) whose kind learns a vocabulary from the training texts."""
    return [m for m, k in modalities.items() if k in KINDS and KINDS[k].VOCABULARY]


def held_as(kind_name: str) -> str:
    """How a table (a CSV, a pool, a labels CSV) holds a sample of ``kind_name``: its kind's ``CELL`` ("path": a
    file's path, "text": the text itself, "columns": a numbers modality's own columns); a table column kind that
    is no modality kind (``number``, ``category``): "value"."""
    return KINDS[kind_name].CELL if kind_name in KINDS else "value"


def sample_shape(
    kind_name: str, *, image_shape=None, num_samples: int = 0, width: int = 0
) -> tuple[int, ...]:
    """One sample's shape for a modality of kind ``kind_name``: ``image_shape`` (H, W, C) for images,
    ``(num_samples,)`` for audio, ``(width,)`` for numbers (F features), ``()`` for text."""
    return kind(kind_name).sample_shape(image_shape=image_shape, num_samples=num_samples, width=width)
