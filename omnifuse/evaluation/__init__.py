"""Evaluation of a run on its test splits: accuracy, macro-F1, ROC-AUC, per-class precision, recall and F1,
confusion matrices, calibration, learning curves, modality weights.

Writes ``report/metrics.json``, ``report/report.md`` and the same report as one self-contained
``report/report.html`` (plots inline; it opens offline), one ``report/confusion_<task>.png`` and
``report/reliability_<task>.png`` per task, ``report/learning_curves.png`` (from the run's ``metrics.csv``) and
``report/predictions.csv`` (one row per test sample: id, data set, true and predicted class and the class
probabilities per task, temperature-scaled where the run is calibrated, the modalities used and, where the fusion
has them, the modality weights).

Calibration (:mod:`omnifuse.evaluation.calibration`): ECE and NLL on the test split before and after the run's
temperature per task. A run trained before temperatures existed (or trained distributed) gets them fitted here on
its validation split, recorded in its ``meta.json`` as training would have.

Robustness (on by default for a data set whose test samples have 2 or more modalities; ``robustness=True`` adds the
corruption curves of single-modality data sets, ``False`` turns it off): the accuracy from every non-empty subset of
the modalities (the others masked out, as a missing modality is), and under growing corruption of each modality in
turn, with the mean modality weights beside it. Corruption is each kind's one rule (omnifuse/modalities/, the one
``train.modality_noise`` trains with), seeded by the data set, modality and level, so a report is reproducible:

- image, audio: added Gaussian noise whose standard deviation is ``level`` times the sample's own standard deviation
  (for audio, its RMS: levels 0.25, 0.5, 1, 2 are SNRs of 12, 6, 0 and -6 dB); images are clipped back to 0-255;
- text: each whitespace token dropped with probability ``level``;
- numbers: Gaussian noise of ``level`` times each column's standard deviation over the test split (empty cells
  left out of it, and left empty).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse import pipeline, progress
from omnifuse.config import read_run_config
from omnifuse.data import modalities_per_task
from omnifuse.data.catalog import load_datasets
from omnifuse.evaluation import calibration, plots, worst
from omnifuse.evaluation.report import render_html, render_report
from omnifuse.inference import Inference
from omnifuse.metrics import accuracy, member_accuracy, task_accuracy
from omnifuse.modalities import kind as modality_kind
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, mask_name
from omnifuse.rundir import atomic_write_json, atomic_write_text, read_meta


def task_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, ROC-AUC (binary: positive class; multi-class: one-vs-rest macro), the confusion matrix
    and per class its precision, recall, F1 and support (a class never predicted has precision 0)."""
    from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support, roc_auc_score

    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=labels, zero_division=0
    )
    out = {
        "n": int(len(y_true)),
        "accuracy": accuracy(probs, y_true),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(classes)
        },
    }
    try:
        if len(classes) == 2:
            out["roc_auc"] = float(roc_auc_score(y_true, probs[:, 1]))
        else:
            out["roc_auc"] = float(
                roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=labels)
            )
    except ValueError:  # a class absent from y_true: AUC undefined
        out["roc_auc"] = None
    return out


def evaluate(
    run_dir: str | Path,
    data_dir: str | None = None,
    batch_size: int = 256,
    robustness: bool | None = None,
    worst_samples: bool = True,
) -> dict[str, Any]:
    """Evaluate the run's final model on every test split; write the report; return the metrics.

    ``robustness``: ``None`` (default) evaluates modality subsets and corruption for the data sets whose test
    samples have 2 or more modalities; ``True`` adds the corruption curves of single-modality data sets; ``False``
    skips both. ``worst_samples``: explain the most confidently misclassified test samples per class in the report
    (:mod:`omnifuse.evaluation.worst`; bounded: at most 3 a class, 30 a task).
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    meta = read_meta(run_dir)
    model = load_model(run_dir / "model.keras", compile=False)  # it only answers
    # every prediction of this evaluation: eagerly for the first few batches, then through a graph
    run = Inference(model)
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    if "task_modalities" not in meta:  # a run trained before they were recorded: as training records them
        meta = {**meta, "task_modalities": modalities_per_task([p.train for p in prepared.parts])}
        atomic_write_json(run_dir / "meta.json", meta)
    temps = calibration.temperatures(_calibrated_meta(run_dir, meta, model, prepared, batch_size))
    modalities = sorted(prepared.modalities)
    with_weights = WEIGHTS_OUTPUT in model.output_names
    results: dict[str, Any] = {"run": run_dir.name, "tasks": {}, "modality_weights": {}}
    report = run_dir / "report"
    report.mkdir(exist_ok=True)
    for stale in report.glob("worst_*.png"):  # an earlier evaluation's samples
        stale.unlink()
    features = {m: list(spec.get("features", [])) for m, spec in prepared.numbers.items()}
    rows: list[dict[str, Any]] = []
    shown: dict[str, list[str]] = {}  # data set -> its robustness plots
    for part in prepared.parts:
        if not len(part.test):
            continue
        feed = _feed(prepared, part.test, batch_size)
        out = _predict(run, feed, batch_size, f"test set of {part.name}")
        members = member_accuracy(out, part.test.labels)
        for task, labels in part.test.labels.items():
            keep = labels >= 0
            m = task_metrics(labels[keep], out[task][keep], prepared.tasks[task])
            m["data_set"] = part.name
            if task in members:  # an ensemble (model.members > 1): each member's accuracy alone
                m["member_accuracy"] = members[task]
            m["calibration"] = _calibration(report, task, out[task][keep], labels[keep], temps.get(task))
            results["tasks"][task] = m
        if with_weights:
            w = out[WEIGHTS_OUTPUT].mean(axis=0)
            results["modality_weights"][part.name] = {name: float(v) for name, v in zip(modalities, w)}
        shown_out = calibration.apply(out, temps)
        id_name = (prepared.tables.get(part.name) or {}).get("id_column") or "id"
        rows += _prediction_rows(part, feed, shown_out, prepared.tasks, modalities, id_name)
        if worst_samples:
            results.setdefault("worst", {}).update(
                worst.collect(
                    model,
                    feed,
                    shown_out,
                    part.test.labels,
                    prepared.tasks,
                    prepared.modalities,
                    report,
                    part.test.ids,
                    features,
                    cfg.data.sample_rate,
                )
            )
        present = [m for m in modalities if feed[mask_name(m)].any()]
        if robustness is False or (robustness is None and len(present) < 2):
            continue
        tasks = {t: part.test.labels[t] for t in part.test.labels if t in out}
        found = _robustness(run, feed, out, tasks, part.name, present, prepared, batch_size)
        results.setdefault("robustness", {})[part.name] = found
        shown[part.name] = plots.robustness_pngs(report, part.name, found)
        if with_weights and len(present) > 1 and tasks:
            task = next(iter(tasks))
            by_class = _weights_by_class(out[WEIGHTS_OUTPUT], tasks[task], prepared.tasks[task], modalities)
            results.setdefault("weights_by_class", {})[part.name] = {"task": task, "classes": by_class}
            shown[part.name].append(plots.weights_by_class_png(report, part.name, task, by_class, present))
    for task, m in results["tasks"].items():
        plots.confusion_png(
            report / f"confusion_{task}.png", m["confusion"], prepared.tasks[task], f"{task} (test)"
        )
    results["learning_curves"] = plots.learning_png(
        report / "learning_curves.png", plots.read_history(run_dir / "metrics.csv")
    )
    _write_predictions(report / "predictions.csv", rows)
    results["report"] = str(report / "report.md")
    results["html"] = str(report / "report.html")
    results["predictions"] = str(report / "predictions.csv")
    atomic_write_text(report / "metrics.json", json.dumps(results, indent=2))
    markdown = render_report(results, meta, prepared.tasks, shown)
    atomic_write_text(report / "report.md", markdown)
    atomic_write_text(
        report / "report.html", render_html(markdown, report, f"Evaluation report: {run_dir.name}")
    )
    from omnifuse import tracking

    tracking.log_evaluation(meta, results, report)  # a run tracked in MLflow gets its test metrics and report
    return results


def _calibrated_meta(run_dir: Path, meta: dict[str, Any], model, prepared, batch_size: int) -> dict[str, Any]:
    """``meta``, with the run's temperatures fitted on its validation split and recorded in ``meta.json`` first
    where training did not fit them (a run trained before they existed, or distributed)."""
    if meta.get(calibration.KEY) is not None:
        return meta
    found = calibration.fit_run(model, prepared, batch_size)
    if found is None:
        return meta
    found["fitted"] = "at evaluation"
    meta = {**read_meta(run_dir), calibration.KEY: found}
    atomic_write_json(run_dir / "meta.json", meta)
    return meta


def _calibration(
    report: Path, task: str, probs: np.ndarray, labels: np.ndarray, temperature
) -> dict[str, Any]:
    """ECE and NLL on the test split before and after ``temperature`` (None: no temperature; "after" = before),
    and the reliability diagram ``reliability_<task>.png``."""
    found = calibration.summary(probs, labels, 1.0 if temperature is None else temperature)
    if temperature is None:
        found["temperature"] = None
    before = calibration.reliability(probs, labels)
    after = (
        None
        if temperature is None
        else calibration.reliability(calibration.scale(probs, temperature), labels)
    )
    found["reliability_before"], found["reliability_after"] = before, after
    found["plot"] = plots.reliability_png(
        report / f"reliability_{task}.png", task, before, after, (found["ece_before"], found["ece_after"])
    )
    return found


def _feed(prepared: pipeline.Prepared, split, batch_size: int) -> dict[str, np.ndarray]:
    """The model's input arrays for ``split`` (absent modalities filled, as in training), in sample order."""
    ds, _ = pipeline.stream(prepared, [split], batch_size=batch_size)
    chunks: dict[str, list[np.ndarray]] = {}
    for x, _y in ds:
        for name, value in x.items():
            chunks.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _predict(
    run: Inference, feed: dict[str, np.ndarray], batch_size: int, what: str = "predicting"
) -> dict[str, np.ndarray]:
    """The outputs of ``run``'s model for ``feed``, in sample order. With texts in the feed the model sees the samples
    shortest text first, so each batch holds texts of similar length (a recurrent encoder runs as many steps as the
    batch's longest text); the outputs are put back in sample order. ``what``: the progress bar's name for it."""
    texts = [value for value in feed.values() if value.dtype.kind in "OSU"]
    order = pipeline.length_order(texts) if texts else None
    if order is not None:
        feed = {name: value[order] for name, value in feed.items()}
    n = len(next(iter(feed.values())))
    with progress.Steps(what, -(-n // batch_size)) as steps:
        out = run.over(feed, batch_size, steps.advance)
    if order is None:
        return out
    return (
        {name: _unsorted(value, order) for name, value in out.items()}
        if isinstance(out, dict)
        else _unsorted(out, order)
    )


def _unsorted(values: np.ndarray, order: np.ndarray) -> np.ndarray:
    """``values`` given in ``order`` (row i belongs to sample order[i]), back in sample order."""
    values = np.asarray(values)
    back = np.empty_like(values)
    back[order] = values
    return back


def _mean_weights(out: dict[str, np.ndarray], modalities: list[str]) -> dict[str, float] | None:
    if WEIGHTS_OUTPUT not in out:
        return None
    return {m: float(v) for m, v in zip(modalities, out[WEIGHTS_OUTPUT].mean(axis=0))}


def mask_out(feed: dict[str, np.ndarray], drop: list[str]) -> dict[str, np.ndarray]:
    """``feed`` with the modalities ``drop`` made absent: input zeroed (``""`` for text) and mask 0."""
    out = dict(feed)
    for m in drop:
        out[m] = np.zeros_like(feed[m]) if feed[m].dtype != object else np.full(len(feed[m]), b"", object)
        out[mask_name(m)] = np.zeros_like(feed[mask_name(m)])
    return out


def corrupt(values: np.ndarray, kind: str, level: float, seed: tuple[int, int]) -> np.ndarray:
    """``values`` (one modality, every test sample) corrupted at ``level`` by the kind's one rule (the one
    ``train.modality_noise`` trains with, see omnifuse/modalities/), seeded by ``seed`` (2 ints)."""
    import tensorflow as tf

    if level == 0:
        return values
    rule = modality_kind(kind)
    level = tf.fill([len(values)], tf.constant(level, tf.float32))
    out = rule.corrupt(tf.constant(values), level, tf.constant(seed, tf.int64)).numpy()
    return out.astype(object) if values.dtype == object else out


def _robustness(run: Inference, feed, out, tasks, part, present, prepared, batch_size) -> dict[str, Any]:
    """Accuracy (and mean weights) from every non-empty subset of ``present``, and under corruption of each."""
    modalities = sorted(prepared.modalities)
    masks = {m: feed[mask_name(m)] > 0 for m in present}
    found: dict[str, Any] = {"modalities": present, "subsets": [], "corruption": {}}
    if len(present) > 1:
        for size in range(1, len(present) + 1):
            for subset in itertools.combinations(present, size):
                hidden = [m for m in present if m not in subset]
                what = f"{part}: {'+'.join(subset)} only"
                got = _predict(run, mask_out(feed, hidden), batch_size, what) if hidden else out
                rows = np.any([masks[m] for m in subset], axis=0)  # samples with something to predict from
                found["subsets"].append(
                    {
                        "modalities": list(subset),
                        "n": int(rows.sum()),
                        "accuracy": task_accuracy(got, tasks, rows),
                        "weights": _mean_weights(got, modalities),
                    }
                )
    everyone = np.ones(len(feed[mask_name(present[0])]), bool)
    for m in present:
        kind = prepared.modalities[m]
        unit, levels = modality_kind(kind).CORRUPTION, modality_kind(kind).LEVELS
        curve: dict[str, Any] = {"kind": kind, "corruption": unit, "levels": list(levels), "accuracy": {}}
        curve["weights"] = {} if WEIGHTS_OUTPUT in out else None
        for step, level in enumerate(levels):
            seed = (zlib.crc32(part.encode()), zlib.crc32(m.encode()) * 100 + step)
            got = (
                out
                if level == 0
                else _predict(
                    run,
                    {**feed, m: corrupt(feed[m], kind, level, seed)},
                    batch_size,
                    f"{part}: {m} corrupted, level {level:g}",
                )
            )
            for task, acc in task_accuracy(got, tasks, everyone).items():
                curve["accuracy"].setdefault(task, []).append(acc)
            for name, w in (_mean_weights(got, modalities) or {}).items():
                curve["weights"].setdefault(name, []).append(w)
        found["corruption"][m] = curve
    return found


def _weights_by_class(weights, labels, classes, modalities) -> dict[str, dict[str, float]]:
    out = {}
    for k, name in enumerate(classes):
        rows = labels == k
        if rows.any():
            out[name] = {m: float(v) for m, v in zip(modalities, weights[rows].mean(axis=0))}
    return out


def _prediction_rows(part, feed, out, tasks, modalities, id_name: str = "id") -> list[dict[str, Any]]:
    """One row per test sample, named by the user's id column (``id_name``) where the data has one."""
    n = len(part.test)
    ids = part.test.ids if part.test.ids is not None else np.arange(n)
    ids = part.test.extra.get("id", ids)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {id_name: ids[i], "data_set": part.name}
        for task, classes in tasks.items():
            labels = part.test.labels.get(task)
            if (
                labels is None
            ):  # the data set has no labels for this task: the head's answer means nothing here
                continue
            row[f"{task}_true"] = classes[labels[i]] if labels[i] >= 0 else ""
            row[f"{task}_predicted"] = classes[int(out[task][i].argmax())]
            row.update({f"{task}_p_{c}": f"{p:.6f}" for c, p in zip(classes, out[task][i])})
        row["modalities_used"] = "+".join(m for m in modalities if feed[mask_name(m)][i] > 0)
        if WEIGHTS_OUTPUT in out:
            row.update({f"weight_{m}": f"{w:.6f}" for m, w in zip(modalities, out[WEIGHTS_OUTPUT][i])})
        rows.append(row)
    return rows


def _write_predictions(path: Path, rows: list[dict[str, Any]]) -> None:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())
