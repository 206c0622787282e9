"""Predictions from raw inputs: image files/bytes/arrays and strings, any non-empty subset of the model's modalities.

>>> p = omnifuse.load("runs/cifar10-imdb")
>>> p.predict(image="cat.png", text="A wonderful film.")
{'tasks': {'cifar10': {'class': 'cat', 'probabilities': {...}}, ...}, 'modality_weights': {'image': 0.5, ...}}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse.errors import OmnifuseError
from omnifuse.models import WEIGHTS_OUTPUT, mask_name
from omnifuse.training import read_meta


class Predictor:
    """A trained run, ready to answer. ``omnifuse.load(run_dir)`` returns one."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        model_path = self.run_dir / "model.keras"
        if not model_path.is_file():
            raise OmnifuseError(
                f"Expected a finished run directory with model.keras. Received: '{self.run_dir}' "
                "(train it first, or resume it with `omnifuse train --resume`)"
            )
        self.meta = read_meta(self.run_dir)
        self.model = keras.saving.load_model(model_path)
        self.modalities: dict[str, str] = self.meta["modalities"]
        self.tasks: dict[str, list[str]] = self.meta["tasks"]
        self.image_shape = tuple(self.meta.get("image_shape") or (32, 32, 3))

    def _image(self, value: Any) -> np.ndarray:
        from omnifuse.data.decode import decode_image

        h, w, c = self.image_shape
        if isinstance(value, np.ndarray):
            arr = value
            if arr.ndim == 2:
                arr = arr[..., None]
            if arr.shape != (h, w, c):
                raise OmnifuseError(
                    f"Expected an image array of shape {(h, w, c)}. Received: shape {arr.shape}"
                )
            return arr.astype(np.uint8)
        arr = decode_image(value, size=(h, w), channels=c)
        return arr if arr.ndim == 3 else arr[..., None]

    def _column(self, name: str, kind: str, values: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        n = len(values)
        mask = np.array([v is not None for v in values], dtype=np.float32)
        if kind == "image":
            out = np.zeros((n, *self.image_shape), dtype=np.uint8)
            for i, v in enumerate(values):
                if v is not None:
                    out[i] = self._image(v)
        elif kind == "text":
            out = np.array(["" if v is None else v for v in values], dtype=object)
            for i, v in enumerate(values):
                if v is not None and not isinstance(v, str):
                    raise OmnifuseError(
                        f"Expected text as a string for {name!r}. Received: {type(v).__name__}"
                    )
                if v is not None and not v.strip():
                    mask[i] = 0.0  # an empty string is an absent text
        else:
            raise OmnifuseError(f"Modality kind {kind!r} of {name!r} is not supported by this predictor.")
        return out, mask

    def predict(self, batch: bool = False, **inputs: Any) -> dict[str, Any] | list[dict[str, Any]]:
        """Predict from keyword inputs named after the model's modalities (``image=``, ``text=``).

        A single sample by default; with ``batch=True`` each input is a list (``None`` = absent for that sample)
        and a list of answers comes back.
        """
        unknown = [k for k in inputs if k not in self.modalities]
        if unknown:
            raise OmnifuseError(
                f"Unknown modality {unknown[0]!r}. This model takes: {', '.join(self.modalities)}"
            )
        columns = {k: (v if batch else [v]) for k, v in inputs.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise OmnifuseError(f"Expected inputs of equal length. Received lengths {sorted(lengths)}")
        n = lengths.pop() if lengths else 0
        feed = {}
        for name, kind in self.modalities.items():
            arr, mask = self._column(name, kind, columns.get(name, [None] * n))
            feed[name], feed[mask_name(name)] = arr, mask
        present = sum(feed[mask_name(m)] for m in self.modalities) if n else np.zeros(0)
        if n == 0 or (present == 0).any():
            raise OmnifuseError(
                f"Expected at least one modality per sample ({', '.join(self.modalities)}). Received: none"
            )
        out = self.model.predict(feed, verbose=0, batch_size=256)
        answers = []
        order = sorted(self.modalities)
        for i in range(n):
            answer: dict[str, Any] = {"tasks": {}}
            for task, classes in self.tasks.items():
                probs = out[task][i]
                answer["tasks"][task] = {
                    "class": classes[int(probs.argmax())],
                    "probabilities": {c: float(p) for c, p in zip(classes, probs)},
                }
            if WEIGHTS_OUTPUT in out:
                answer["modality_weights"] = {m: float(w) for m, w in zip(order, out[WEIGHTS_OUTPUT][i])}
            answer["modalities_used"] = [m for m in order if feed[mask_name(m)][i] > 0]
            answers.append(answer)
        return answers if batch else answers[0]


def load(run_dir: str | Path) -> Predictor:
    """Load a trained run for prediction."""
    return Predictor(run_dir)
