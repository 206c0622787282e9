"""Calibration: whether a probability means what it says, and temperature scaling to make it so.

After training, one temperature ``T`` per task is fitted on the validation split (the ``T`` with the least negative
log-likelihood; Guo et al. 2017, "On calibration of modern neural networks"). A calibrated probability is
``softmax(log(p) / T)`` of the model's probabilities ``p``: the same ranking, so the same predicted class and
accuracy, with ``T > 1`` softening an over-confident model and ``T < 1`` sharpening an under-confident one. An
ensemble's task output is its members' weighted mean, so its temperature is fitted on that mean.

The temperatures are stored in the run's ``meta.json`` under ``"calibration"``:
``{"method": "temperature", "split": "validation", "tasks": {task: {"temperature", "n", "nll_before",
"nll_after", "ece_before", "ece_after"}}}``; the Predictor, the server and the exporter apply them unless told not
to. Expected calibration error (ECE) uses 15 equal-width bins of the top probability.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from omnifuse.inference import Inference

BINS = 15
EPS = 1e-12
KEY = "calibration"


def scale(probs: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(probs) / temperature)`` over the last axis.

    Example: ``scale(np.array([[0.9, 0.1]]), 2.0)`` is about ``[[0.75, 0.25]]``.
    """
    logits = np.log(np.maximum(np.asarray(probs, np.float64), EPS)) / float(temperature)
    logits -= logits.max(axis=-1, keepdims=True)
    e = np.exp(logits)
    return (e / e.sum(axis=-1, keepdims=True)).astype(np.asarray(probs).dtype)


def _labelled(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).reshape(-1)
    keep = labels >= 0
    return np.asarray(probs, np.float64)[keep], labels[keep].astype(np.int64)


def nll(probs: np.ndarray, labels: np.ndarray) -> float | None:
    """Mean negative log-likelihood of the true class over the labelled samples (label >= 0); None without any."""
    probs, labels = _labelled(probs, labels)
    if not len(labels):
        return None
    return float(-np.mean(np.log(np.maximum(probs[np.arange(len(labels)), labels], EPS))))


def reliability(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> dict[str, list]:
    """Per bin of the top probability (``bins`` equal widths over [0, 1]): sample count, mean confidence and
    accuracy (None for an empty bin). What a reliability diagram draws."""
    probs, labels = _labelled(probs, labels)
    confidence = probs.max(axis=1) if len(labels) else np.zeros(0)
    correct = probs.argmax(axis=1) == labels if len(labels) else np.zeros(0, bool)
    # bin k holds (k/bins, (k+1)/bins]; a confidence of exactly 0 cannot happen for a softmax
    index = np.clip(np.ceil(confidence * bins).astype(int) - 1, 0, bins - 1)
    out: dict[str, list] = {"count": [], "confidence": [], "accuracy": []}
    for k in range(bins):
        rows = index == k
        n = int(rows.sum())
        out["count"].append(n)
        out["confidence"].append(float(confidence[rows].mean()) if n else None)
        out["accuracy"].append(float(correct[rows].mean()) if n else None)
    return out


def ece(probs: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float | None:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over the bins of the top
    probability; None without labelled samples.

    Example: 10 samples at confidence 0.9 of which 6 are right have ECE 0.3.
    """
    table = reliability(probs, labels, bins)
    total = sum(table["count"])
    if not total:
        return None
    return float(
        sum(n * abs(a - c) for n, a, c in zip(table["count"], table["accuracy"], table["confidence"]) if n)
        / total
    )


def fit_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature (between 0.05 and 20) with the least NLL on the labelled samples; 1.0 without any, and 1.0
    when every one of them is already classified right: then the NLL only falls as the temperature does, and the fit
    would sharpen every probability to its bound on no evidence of over- or under-confidence (a validation split a
    model never errs on, as FSDD's, says nothing about how sure it should be elsewhere)."""
    from scipy.optimize import minimize_scalar

    probs, labels = _labelled(probs, labels)
    if not len(labels) or np.all(probs.argmax(axis=1) == labels):
        return 1.0
    logp = np.log(np.maximum(probs, EPS))

    def loss(log_t):
        z = logp / np.exp(log_t)
        z -= z.max(axis=1, keepdims=True)
        return float(np.mean(np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(labels)), labels]))

    found = minimize_scalar(loss, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(found.x))


def summary(probs: np.ndarray, labels: np.ndarray, temperature: float) -> dict[str, Any]:
    """NLL and ECE before and after scaling by ``temperature``, and the number of labelled samples."""
    after = scale(probs, temperature)
    return {
        "temperature": round(float(temperature), 6),
        "n": int((np.asarray(labels).reshape(-1) >= 0).sum()),
        "nll_before": nll(probs, labels),
        "nll_after": nll(after, labels),
        "ece_before": ece(probs, labels),
        "ece_after": ece(after, labels),
    }


def fit(probs: Mapping[str, np.ndarray], labels: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The run's calibration record (see the module docstring) from held-out probabilities and labels per task.
    A task with no labelled sample keeps temperature 1."""
    tasks = {}
    for task, y in labels.items():
        tasks[task] = summary(probs[task], y, fit_temperature(probs[task], y))
    return {"method": "temperature", "split": "validation", "bins": BINS, "tasks": tasks}


def predict_stream(model, stream: Iterable, tasks: list[str]) -> tuple[dict, dict]:
    """Per task, ``model``'s probabilities and the labels over ``stream``'s ``(x, y, ...)`` batches ({} for none)."""
    probs: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    labels: dict[str, list[np.ndarray]] = {t: [] for t in tasks}
    run = Inference(model)  # a validation split of a few batches is not worth tracing a graph for
    for batch in stream:
        x, y = batch[0], batch[1]
        out = run(x)
        for task in tasks:
            probs[task].append(np.asarray(out[task], np.float64))
            labels[task].append(np.asarray(y[task]).reshape(-1))
    if not any(probs.values()) or not probs[tasks[0]]:
        return {}, {}
    return {t: np.concatenate(p) for t, p in probs.items()}, {t: np.concatenate(y) for t, y in labels.items()}


def fit_on_stream(model, stream: Iterable, tasks: list[str]) -> dict[str, Any]:
    """:func:`fit` on ``stream``'s ``(x, y, ...)`` batches of held-out data, run through ``model``."""
    return fit(*predict_stream(model, stream, tasks))


def held_out(model, prepared, batch_size: int = 256) -> tuple[dict, dict] | None:
    """Per task, ``model``'s probabilities and the labels on the validation splits of ``prepared`` (the whole model
    on raw inputs, or, where training ran on cached frozen features, the head on those features: the same
    answers); None when there is no validation sample (``data.val_fraction = 0``)."""
    from omnifuse import pipeline

    splits = [p.val for p in prepared.parts if len(p.val)]
    if not splits:
        return None
    stream, _ = pipeline.stream(prepared, splits, batch_size=batch_size)
    return predict_stream(model, stream, list(prepared.tasks))


def fit_run(model, prepared, batch_size: int = 256) -> dict[str, Any] | None:
    """:func:`fit` on the validation splits of ``prepared`` with ``model`` (see :func:`held_out`); None when there
    is no validation sample."""
    found = held_out(model, prepared, batch_size)
    return None if found is None else fit(*found)


def temperatures(meta: Mapping[str, Any] | None) -> dict[str, float]:
    """The fitted temperature per task recorded in a run's meta (empty for a run without calibration)."""
    record = (meta or {}).get(KEY) or {}
    return {task: float(v["temperature"]) for task, v in (record.get("tasks") or {}).items()}


def apply(out: Mapping[str, np.ndarray], temps: Mapping[str, float]) -> dict[str, np.ndarray]:
    """The model outputs ``out`` with each task in ``temps`` temperature-scaled (other outputs as they are)."""
    return {k: (scale(v, temps[k]) if k in temps and temps[k] != 1.0 else v) for k, v in out.items()}
