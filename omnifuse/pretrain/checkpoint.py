"""A pretraining run's encoder checkpoint, and how a new model's encoder starts from it (``model.<kind>.init``).

``omnifuse pretrain`` writes into its run directory ``encoder.npz`` (the encoder's variables, in the order of
``encoder.weights``, rewritten after every epoch) and, for text, ``vocabulary.json`` (the vocabulary the language
model read: the fine-tuned model's must be the same, id for id); ``meta.json``'s ``"pretrain"`` names the kind, the
encoder and the options it was built with. :func:`read` checks a run named by ``model.<kind>.init`` against the
config that starts from it, and :func:`load_into` copies the weights into a built encoder, checking every shape:
a mismatch is an error naming the key and what was expected, never a silent partial start.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.modalities import kind as modality_kind
from omnifuse.rundir import META, atomic_write, atomic_write_text

ENCODER = "encoder.npz"
VOCABULARY = "vocabulary.json"
# options that change no variable's shape: a fine-tuned encoder may differ from its pretraining in them
FREE = {"dropout", "word_dropout", "pooling", "init_embeddings", "tta", "flip", "translate", "bn_momentum"}
FREE |= {"bias_lr_scale", "conv_pool"}


@dataclass
class Checkpoint:
    """A pretraining run's encoder: its kind (``text``/``image``), encoder name, options, weights and vocabulary."""

    run_dir: Path
    kind: str
    encoder: str
    options: dict[str, Any]
    weights: list[np.ndarray]
    vocabulary: list[str] | None
    epochs_done: int


def write(run_dir: Path, encoder, vocabulary: list[str] | None = None) -> None:
    """The encoder's variables (and the vocabulary, once) into ``run_dir``, atomically."""
    arrays = {
        f"w{i}": np.asarray(v.numpy() if hasattr(v, "numpy") else v) for i, v in enumerate(encoder.weights)
    }
    atomic_write(run_dir / ENCODER, lambda tmp: np.savez(tmp, **arrays))
    if vocabulary is not None:
        atomic_write_text(run_dir / VOCABULARY, json.dumps([str(t) for t in vocabulary]))


def read_vocabulary(run_dir: Path) -> list[str] | None:
    path = Path(run_dir) / VOCABULARY
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read(init: str, key: str, kind: str, encoder: str, options: dict[str, Any]) -> Checkpoint:
    """The checkpoint of the pretraining run ``init`` (the value of config key ``key``), checked against the
    encoder ``encoder`` of ``kind`` that ``options`` configure."""
    run_dir = Path(init).expanduser()
    meta_path = run_dir / META
    if not (run_dir / ENCODER).is_file() or not meta_path.is_file():
        raise OmnifuseError(
            f"Expected {key} to name a pretraining run (a folder with {ENCODER} and {META}, written by "
            f"`omnifuse pretrain`). Received: {init!r}"
            + (" (no such folder)" if not run_dir.is_dir() else f" (no {ENCODER} in it)")
            + '. Run `omnifuse pretrain` with this config first, or set it to "" for a random start'
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        found = meta["pretrain"]
    except (json.JSONDecodeError, KeyError):
        raise OmnifuseError(
            f"Expected {key} to name a pretraining run. Received: {init!r}, whose {META} is not a pretraining's"
        ) from None
    if found["kind"] != kind or found["encoder"] != encoder:
        raise OmnifuseError(
            f"Expected {key} to name a pretraining of a {kind} {encoder!r} encoder. Received: {init!r}, a "
            f"{found['kind']} {found['encoder']!r} encoder"
        )
    differ = [
        f"{name} = {options.get(name)!r} (pretrained: {value!r})"
        for name, value in found["options"].items()
        if name not in FREE and _plain(options.get(name)) != _plain(value)
    ]
    if differ:
        raise OmnifuseError(
            f"Expected the encoder that {key} starts from to have the pretrained encoder's shape. Received: "
            f"{'; '.join(differ)} in model.{kind}.{encoder} / model.{kind} (pretraining run {init!r})"
        )
    with np.load(run_dir / ENCODER) as arrays:
        weights = [arrays[f"w{i}"] for i in range(len(arrays.files))]
    return Checkpoint(
        run_dir,
        kind,
        encoder,
        found["options"],
        weights,
        read_vocabulary(run_dir),
        int(meta.get("progress", {}).get("epochs_done", 0)),
    )


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, (tuple, list)) else value


def load_into(layer, checkpoint: Checkpoint, key: str, input_shape: tuple) -> None:
    """Build ``layer`` for ``input_shape`` (if it is not built) and set its variables to the checkpoint's. The layer
    is then a pretrained encoder like the downloaded ones: it trains at ``train.pretrained_lr_scale`` times the
    head's learning rate (omnifuse/model/compile.py), ULMFiT's discriminative fine-tuning."""
    if not layer.built:
        layer.build(input_shape)
    shapes = [tuple(v.shape) for v in layer.weights]
    stored = [tuple(w.shape) for w in checkpoint.weights]
    if shapes != stored:
        raise OmnifuseError(
            f"Expected the pretrained encoder of {key} ({str(checkpoint.run_dir)!r}) to have this model's variable "
            f"shapes {shapes}. Received: {stored} (another input shape or vocabulary size?)"
        )
    for variable, value in zip(layer.weights, checkpoint.weights):
        variable.assign(value)
    layer.pretrained = True


def encoder_options(kind: str, encoder: str, section: Any) -> dict[str, Any]:
    """The options the checkpoint is compared on: the encoder's own section, plus the kind's keys that shape it."""
    import dataclasses

    options = dataclasses.asdict(getattr(section, encoder))
    if modality_kind(kind).VOCABULARY:
        options.update(vocab_size=section.vocab_size, ngrams=section.ngrams)
    return options


PRETRAINABLE = {"text": ("rnn",), "image": ("cnn", "resnet", "fastnet")}


def start(kind: str, section: Any) -> Checkpoint | None:
    """The checkpoint ``model.<kind>.init`` names (checked against ``section``, the config's ``model.<kind>``), or
    None when it is empty."""
    if not section.init:
        return None
    key = f"model.{kind}.init"
    names = section.encoder.split("+")
    chosen = [n for n in names if n in PRETRAINABLE[kind]]
    if not chosen:
        raise OmnifuseError(
            f"Expected model.{kind}.encoder to be one of {', '.join(PRETRAINABLE[kind])} with {key} (the encoders "
            f"`omnifuse pretrain` trains). Received: model.{kind}.encoder = {section.encoder!r}"
        )
    return read(section.init, key, kind, chosen[0], encoder_options(kind, chosen[0], section))


def check_inits(cfg: Any) -> None:
    """Check every ``model.<kind>.init`` of ``cfg`` before anything is trained (a run directory is made)."""
    for kind in PRETRAINABLE:
        start(kind, getattr(cfg.model, kind))
