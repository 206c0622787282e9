"""The run's own Keras callbacks: the epoch timer, early stopping that survives a resume, lookahead, and the
checkpoint written after every epoch (``checkpoints/last.keras``, ``best.keras``, progress in ``meta.json``)."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse.keras_compat import all_layers
from omnifuse.rundir import atomic_write, atomic_write_text

CHECKPOINTS = "checkpoints"


def atomic_save_model(model: keras.Model, path: Path) -> Path:
    return atomic_write(path, model.save)


class _EpochTimer(keras.callbacks.Callback):
    """Adds the epoch's wall time to the logs (so metrics.csv records it)."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["epoch_seconds"] = round(time.perf_counter() - self._start, 3)


class EpochToLayers(keras.callbacks.Callback):
    """Tells the layers whose training changes with the epoch which epoch is starting, also after a resume: each
    layer of the model with an ``on_epoch(epoch) -> bool`` method (fastnet: its alternating flip's epoch, its
    whitening bias frozen after some epochs) is called; where one answers True, its training step changed shape
    (a gradient dropped) and the model's training function is traced again."""

    def on_train_begin(self, logs=None):
        self.layers = [
            layer for layer in all_layers(self.model) if callable(getattr(layer, "on_epoch", None))
        ]

    def on_epoch_begin(self, epoch, logs=None):
        changed = [layer.on_epoch(epoch) for layer in self.layers]
        if any(changed):
            self.model.make_train_function(force=True)


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras's early stopping, with its patience counter carried over a resume."""

    def __init__(self, state: dict[str, Any], **kwargs):
        super().__init__(**kwargs)
        self._state = state

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if "best" in self._state:
            self.best = self._state["best"]
            self.wait = self._state.get("wait", 0)


class _Lookahead(keras.callbacks.Callback):
    """Lookahead with a ramped average: every ``every`` steps, slow = d * slow + (1 - d) * weights, then the weights
    restart from slow; d = decay * (step / total)^3, so early training runs free. The last epoch ends on slow."""

    def __init__(self, decay: float, every: int, total_steps: int, initial_step: int = 0):
        super().__init__()
        self.decay, self.every, self.total = decay, max(1, every), max(1, total_steps)
        self.step = initial_step

    def on_train_begin(self, logs=None):
        self.vars = [v for v in self.model.weights if "float" in str(v.dtype)]
        self.slow = [keras.ops.convert_to_numpy(v).astype(np.float32) for v in self.vars]

    def _restart_from_slow(self):
        for v, s in zip(self.vars, self.slow):
            v.assign(s)

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            d = self.decay * min(1.0, self.step / self.total) ** 3
            for v, s in zip(self.vars, self.slow):
                s *= d
                s += (1.0 - d) * keras.ops.convert_to_numpy(v)
            self._restart_from_slow()

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 >= self.params.get("epochs", 0):
            self._restart_from_slow()


class _RunCheckpoint(keras.callbacks.Callback):
    """After each epoch: last.keras, best.keras when the validation loss improved, and the progress in meta.json.
    ``best``: the weights of the model saved to best.keras in this session (None before), so that training's end
    can put them back without reading the file."""

    def __init__(
        self,
        run_dir: Path,
        meta: dict[str, Any],
        early: _ResumableEarlyStopping | None,
        saved: keras.Model | None = None,
    ):
        super().__init__()
        self.run_dir = run_dir
        self.meta = meta
        self.early = early
        self.saved = (
            saved  # the model checkpointed (default: the one fitted; the full one when that is its head)
        )
        self.best: list[np.ndarray] | None = None

    def _to_save(self) -> keras.Model:
        if self.saved is None:
            return self.model
        from omnifuse.features import copy_weights

        copy_weights(
            self.model, self.saved
        )  # the head trained on cached features: carry it into the full model
        return self.saved

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        folder = self.run_dir / CHECKPOINTS
        folder.mkdir(exist_ok=True)
        progress = self.meta.setdefault("progress", {})
        loss = logs.get("val_loss", logs.get("loss"))
        model = self._to_save()
        last = atomic_save_model(model, folder / "last.keras")
        if loss is not None and np.isfinite(loss) and loss < progress.get("best", np.inf):
            # the same model: the file just written, copied (serializing it twice cost half a second per epoch)
            atomic_write(folder / "best.keras", lambda tmp: shutil.copyfile(last, tmp))
            progress.update(best=float(loss), best_epoch=epoch + 1)
            self.best = model.get_weights()
        progress["epochs_done"] = epoch + 1
        if self.early is not None:
            progress["wait"] = int(self.early.wait)
        progress["train_seconds"] = round(
            progress.get("train_seconds", 0.0) + logs.get("epoch_seconds", 0.0), 3
        )
        atomic_write_text(self.run_dir / "meta.json", json.dumps(self.meta, indent=2))
