"""omnifuse: multimodal classifiers on Keras 3 — encoders per modality, attention fusion, honest evaluation.

>>> import omnifuse
>>> run = omnifuse.train("cifar10-imdb", overrides=["train.epochs=2"])
>>> omnifuse.evaluate(run)["tasks"]["cifar10"]["accuracy"]
>>> omnifuse.load(run).predict(image="cat.png", text="What a wonderful film")
"""

from __future__ import annotations

import os

# Quiet TensorFlow's C++ start-up chatter (oneDNN notices, CPU feature lines) unless the user asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from omnifuse.config import Config, DataConfig, ModelConfig, TrainConfig, load_config  # noqa: E402
from omnifuse.errors import OmnifuseError  # noqa: E402
from omnifuse.models import build_model  # noqa: E402
from omnifuse.predictor import Predictor, load  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Config",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "OmnifuseError",
    "Predictor",
    "build_model",
    "evaluate",
    "load",
    "load_config",
    "train",
]


def train(
    config: str | Path | Config,
    overrides: list[str] | dict[str, Any] | None = None,
    run_dir: str | Path | None = None,
    runs_root: str | Path = "runs",
    data_dir: str | None = None,
    resume: str | Path | None = None,
) -> Path:
    """Train a preset name, config file or Config (with dotted overrides); return the run directory."""
    from omnifuse.training import train as _train

    if resume is not None:
        return _train(None, resume=resume, data_dir=data_dir)
    cfg = config.replace(overrides or []) if isinstance(config, Config) else load_config(config, overrides)
    return _train(cfg, run_dir=run_dir, runs_root=runs_root, data_dir=data_dir)


def evaluate(run_dir: str | Path, data_dir: str | None = None) -> dict[str, Any]:
    """Evaluate a run on its test sets and write its report; return the metrics."""
    from omnifuse.evaluation import evaluate as _evaluate

    return _evaluate(run_dir, data_dir=data_dir)
