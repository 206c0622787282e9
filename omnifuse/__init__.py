"""omnifuse: multimodal classifiers on Keras 3 — encoders per modality, attention fusion, honest evaluation.

>>> import omnifuse
>>> run = omnifuse.train("cifar10-imdb", overrides=["train.epochs=2"])
>>> omnifuse.evaluate(run)["tasks"]["cifar10"]["accuracy"]
>>> omnifuse.load(run).predict(image="cat.png", text="What a wonderful film")

The public names are imported on first use, so ``import omnifuse`` (and the command line's ``--help``, or the data
loaders) do not pay for importing Keras and TensorFlow until a model is needed.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path
from typing import Any

# Quiet TensorFlow's C++ start-up chatter unless the user asked for it (the command line hides more unless
# --verbose, see omnifuse.quiet; a level the user set wins there too).
USER_TF_LOG_LEVEL = os.environ.get("TF_CPP_MIN_LOG_LEVEL")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"

_LAZY = {
    "Config": "omnifuse.config",
    "DataConfig": "omnifuse.config",
    "ModelConfig": "omnifuse.config",
    "TrainConfig": "omnifuse.config",
    "load_config": "omnifuse.config",
    "OmnifuseError": "omnifuse.errors",
    "build_model": "omnifuse.model.builder",
    "Predictor": "omnifuse.predictor",
    "load": "omnifuse.predictor",
    "register_encoder": "omnifuse.registry",
}
__all__ = [*_LAZY, "evaluate", "pretrain", "train"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'omnifuse' has no attribute {name!r}")


def _config(config: str | Path | Any, overrides: list[str] | dict[str, Any] | None) -> Any:
    """A preset name, config file or Config, with dotted ``overrides`` applied, as a Config."""
    from omnifuse.config import Config, load_config

    return config.replace(overrides or []) if isinstance(config, Config) else load_config(config, overrides)


def train(
    config: str | Path | Any,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    resume: str | Path | None = None,
    callbacks: list[Any] | None = None,
) -> Path:
    """Train a preset name, config file or Config (with dotted overrides); return the run directory.

    ``callbacks``: Keras callbacks of your own, called by ``model.fit`` beside the run's (checkpoints, logs):

    >>> omnifuse.train("table", {"data.csv": "pets.csv", "data.label": "species"},
    ...                callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=lambda e, logs: print(e, logs))])
    """
    from omnifuse.training import train as _train

    if resume is not None:
        return _train(None, resume=resume, data_dir=data_dir, callbacks=callbacks)
    cfg = _config(config, overrides)
    return _train(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir, callbacks=callbacks)


def pretrain(
    config: str | Path | Any,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    callbacks: list[Any] | None = None,
) -> Path:
    """Pretrain the encoder of a preset name, config file or Config (with dotted overrides) without labels
    (``pretrain.*``; text: a language model, images: contrastive); return the run directory, which a model then
    starts from with ``model.<kind>.init``. Running it again on an unfinished run directory continues it.

    >>> lm = omnifuse.pretrain("imdb-unlabeled", ["pretrain.epochs=1"], run_dir="runs/imdb-lm")
    >>> run = omnifuse.train("imdb-unlabeled", [f"model.text.init={lm}"])
    """
    from omnifuse.pretrain.run import pretrain as _pretrain

    cfg = _config(config, overrides)
    return _pretrain(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir, callbacks=callbacks)


def evaluate(
    run_dir: str | Path,
    data_dir: str | None = None,
    robustness: bool | None = None,
    worst_samples: bool = True,
) -> dict[str, Any]:
    """Evaluate a run on its test sets and write its report; return the metrics.

    ``robustness``: accuracy per modality subset and under corruption (default: where samples have 2+ modalities).
    ``worst_samples``: the report shows the most confidently misclassified test samples per class, explained.
    """
    from omnifuse.evaluation import evaluate as _evaluate

    return _evaluate(run_dir, data_dir=data_dir, robustness=robustness, worst_samples=worst_samples)
