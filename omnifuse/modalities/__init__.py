"""What each modality kind IS to omnifuse, one module per kind (image, text, audio, numbers), each with:

- ``DTYPE`` and :func:`sample_shape`: the Keras input of a modality of that kind (one sample's shape from the data);
- :func:`blank`: what a missing sample is filled with (its mask says 0; the model never reads it);
- :func:`corrupt`, ``MAX_LEVEL``, ``LEVELS``, ``CORRUPTION``: the one corruption rule, used by training
  (``train.modality_noise``) and by the robustness evaluation alike.

Each kind also says how a served or exported model meets it (``facts``: the run's ``image_shape``,
``sample_rate``, ``num_samples`` and, for numbers, ``spec``, the modality's entry of meta.json's ``numbers``):
:func:`describe` (what a caller sends), :func:`example` (a batch of model inputs, for export probes),
:func:`upload` (one request field, for the serving benchmark) and :func:`feed` (the array an exported artifact
takes, for the model card).

``KINDS`` maps a kind's name to its module; :func:`kind` looks one up with an error naming the valid ones.
This package imports nothing from the model, training or pipeline.
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


def kind(name: str, modality: str = "") -> ModuleType:
    """The module of modality kind ``name``; ``modality`` names the modality in the error."""
    if name not in KINDS:
        where = f" of modality {modality!r}" if modality else ""
        raise OmnifuseError(
            f"Unknown modality kind {name!r}{where}.{did_you_mean(name, KINDS)} Valid: {', '.join(KINDS)}"
        )
    return KINDS[name]


def sample_shape(
    kind_name: str, *, image_shape=None, num_samples: int = 0, width: int = 0
) -> tuple[int, ...]:
    """One sample's shape for a modality of kind ``kind_name``: ``image_shape`` (H, W, C) for images,
    ``(num_samples,)`` for audio, ``(width,)`` for numbers (F features), ``()`` for text."""
    return kind(kind_name).sample_shape(image_shape=image_shape, num_samples=num_samples, width=width)
