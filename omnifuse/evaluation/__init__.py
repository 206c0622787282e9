"""Evaluation of a run on its test splits: accuracy, macro-F1, ROC-AUC, confusion matrices, modality weights.

Writes ``report/metrics.json``, ``report/report.md``, one ``report/confusion_<task>.png`` per task and
``report/predictions.csv`` (one row per test sample: id, data set, true and predicted class and the class
probabilities per task, the modalities used and, where the fusion has them, the modality weights).

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

import keras
import numpy as np

from omnifuse import pipeline
from omnifuse.data.catalog import load_datasets
from omnifuse.metrics import accuracy, member_accuracy, task_accuracy
from omnifuse.modalities import kind as modality_kind
from omnifuse.modelio import load_model
from omnifuse.names import WEIGHTS_OUTPUT, mask_name
from omnifuse.rundir import atomic_write, atomic_write_text, read_meta, read_run_config


def task_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, ROC-AUC (binary: positive class; multi-class: one-vs-rest macro) and the confusion matrix."""
    from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    out = {
        "n": int(len(y_true)),
        "accuracy": accuracy(probs, y_true),
        "macro_f1": float(f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0)),
        "confusion": confusion_matrix(y_true, y_pred, labels=labels).tolist(),
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


def _confusion_png(path: Path, matrix: list[list[int]], classes: list[str], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import ConfusionMatrixDisplay

    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.array(matrix), display_labels=classes).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)


def evaluate(
    run_dir: str | Path, data_dir: str | None = None, batch_size: int = 256, robustness: bool | None = None
) -> dict[str, Any]:
    """Evaluate the run's final model on every test split; write the report; return the metrics.

    ``robustness``: ``None`` (default) evaluates modality subsets and corruption for the data sets whose test
    samples have 2 or more modalities; ``True`` adds the corruption curves of single-modality data sets; ``False``
    skips both.
    """
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    meta = read_meta(run_dir)
    model = load_model(run_dir / "model.keras")
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    modalities = sorted(prepared.modalities)
    with_weights = WEIGHTS_OUTPUT in model.output_names
    results: dict[str, Any] = {"run": run_dir.name, "tasks": {}, "modality_weights": {}}
    report = run_dir / "report"
    report.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    plots: dict[str, list[str]] = {}
    for part in prepared.parts:
        if not len(part.test):
            continue
        feed = _feed(prepared, part.test, batch_size)
        out = _predict(model, feed, batch_size)
        members = member_accuracy(out, part.test.labels)
        for task, labels in part.test.labels.items():
            keep = labels >= 0
            m = task_metrics(labels[keep], out[task][keep], prepared.tasks[task])
            m["data_set"] = part.name
            if task in members:  # an ensemble (model.members > 1): each member's accuracy alone
                m["member_accuracy"] = members[task]
            results["tasks"][task] = m
        if with_weights:
            w = out[WEIGHTS_OUTPUT].mean(axis=0)
            results["modality_weights"][part.name] = {name: float(v) for name, v in zip(modalities, w)}
        rows += _prediction_rows(part, feed, out, prepared.tasks, modalities)
        present = [m for m in modalities if feed[mask_name(m)].any()]
        if robustness is False or (robustness is None and len(present) < 2):
            continue
        tasks = {t: part.test.labels[t] for t in part.test.labels if t in out}
        found = _robustness(model, feed, out, tasks, part.name, present, prepared, batch_size)
        results.setdefault("robustness", {})[part.name] = found
        plots[part.name] = _robustness_pngs(report, part.name, found)
        if with_weights and len(present) > 1 and tasks:
            task = next(iter(tasks))
            by_class = _weights_by_class(out[WEIGHTS_OUTPUT], tasks[task], prepared.tasks[task], modalities)
            results.setdefault("weights_by_class", {})[part.name] = {"task": task, "classes": by_class}
            plots[part.name].append(_weights_by_class_png(report, part.name, task, by_class, present))
    for task, m in results["tasks"].items():
        _confusion_png(
            report / f"confusion_{task}.png", m["confusion"], prepared.tasks[task], f"{task} (test)"
        )
    _write_predictions(report / "predictions.csv", rows)
    results["report"] = str(report / "report.md")
    results["predictions"] = str(report / "predictions.csv")
    atomic_write_text(report / "metrics.json", json.dumps(results, indent=2))
    atomic_write_text(report / "report.md", render_report(results, meta, prepared.tasks, plots))
    return results


def _feed(prepared: pipeline.Prepared, split, batch_size: int) -> dict[str, np.ndarray]:
    """The model's input arrays for ``split`` (absent modalities filled, as in training), in sample order."""
    ds, _ = pipeline.stream(prepared, [split], batch_size=batch_size)
    chunks: dict[str, list[np.ndarray]] = {}
    for x, _y in ds:
        for name, value in x.items():
            chunks.setdefault(name, []).append(value.numpy())
    return {name: np.concatenate(parts) for name, parts in chunks.items()}


def _predict(model: keras.Model, feed: dict[str, np.ndarray], batch_size: int) -> dict[str, np.ndarray]:
    """``model``'s outputs for ``feed``, in sample order. With texts in the feed the model sees the samples
    shortest text first, so each batch holds texts of similar length (a recurrent encoder runs as many steps as the
    batch's longest text); the outputs are put back in sample order."""
    import tensorflow as tf

    texts = [value for value in feed.values() if value.dtype.kind in "OSU"]
    order = pipeline.length_order(texts) if texts else None
    if order is not None:
        feed = {name: value[order] for name, value in feed.items()}
    out = model.predict(tf.data.Dataset.from_tensor_slices(feed).batch(batch_size), verbose=0)
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


def _robustness(model, feed, out, tasks, part, present, prepared, batch_size) -> dict[str, Any]:
    """Accuracy (and mean weights) from every non-empty subset of ``present``, and under corruption of each."""
    modalities = sorted(prepared.modalities)
    masks = {m: feed[mask_name(m)] > 0 for m in present}
    found: dict[str, Any] = {"modalities": present, "subsets": [], "corruption": {}}
    if len(present) > 1:
        for size in range(1, len(present) + 1):
            for subset in itertools.combinations(present, size):
                hidden = [m for m in present if m not in subset]
                got = _predict(model, mask_out(feed, hidden), batch_size) if hidden else out
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
                else _predict(model, {**feed, m: corrupt(feed[m], kind, level, seed)}, batch_size)
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


def _prediction_rows(part, feed, out, tasks, modalities) -> list[dict[str, Any]]:
    n = len(part.test)
    ids = part.test.ids if part.test.ids is not None else np.arange(n)
    rows = []
    for i in range(n):
        row: dict[str, Any] = {"id": ids[i], "data_set": part.name}
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> str:
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110))
    _pyplot().close(fig)
    return path.name


def _robustness_pngs(report: Path, part: str, found: dict[str, Any]) -> list[str]:
    plt = _pyplot()
    names = []
    first = next(iter(next(iter(found["corruption"].values()))["accuracy"]), None)
    if first is None:
        return names
    if found["subsets"]:
        fig, ax = plt.subplots(figsize=(6, 0.5 * len(found["subsets"]) + 1.5))
        labels = [" + ".join(s["modalities"]) for s in found["subsets"]]
        values = [100 * (s["accuracy"][first] or 0.0) for s in found["subsets"]]
        ax.barh(labels, values, color="tab:blue")
        for y, v in enumerate(values):
            ax.text(v, y, f" {v:.1f}", va="center")
        ax.set_xlim(0, 110)
        ax.set_xlabel(f"{first} accuracy % (test)")
        ax.set_title(f"{part}: modalities given")
        names.append(_save(fig, report / f"subsets_{part}.png"))
    curves = found["corruption"]
    weighted = all(c["weights"] for c in curves.values())
    fig, axes = plt.subplots(1, 2 if weighted else 1, figsize=(11 if weighted else 6, 4), squeeze=False)
    for m, c in curves.items():
        x = range(len(c["levels"]))
        axes[0, 0].plot(
            x, [100 * (a or 0.0) for a in c["accuracy"][first]], marker="o", label=f"{m} corrupted"
        )
        if weighted:
            axes[0, 1].plot(x, c["weights"][m], marker="o", label=f"weight of {m}, {m} corrupted")
    levels = [c["levels"] for c in curves.values()]
    same = all(lv == levels[0] for lv in levels)  # one level scale for all: label it once
    ticks = [
        " / ".join(f"{lv[i]:g}" for lv in (levels[:1] if same else levels)) for i in range(len(levels[0]))
    ]
    axes[0, 0].set_ylabel(f"{first} accuracy % (test)")
    axes[0, 0].set_title(f"{part}: accuracy under corruption")
    if weighted:
        axes[0, 1].set_ylabel("mean modality weight")
        axes[0, 1].set_ylim(0, 1)
        axes[0, 1].set_title("weight of the corrupted modality")
    for ax in axes[0]:
        ax.set_xticks(range(len(ticks)), ticks)
        ax.set_xlabel("corruption level" + ("" if same else " (" + " / ".join(curves) + ")"))
        ax.legend(fontsize=8)
    names.append(_save(fig, report / f"corruption_{part}.png"))
    return names


def _weights_by_class_png(report, part, task, by_class, present) -> str:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.5 * len(by_class) + 2), 3.5))
    bottom = np.zeros(len(by_class))
    for m in present:
        values = np.array([w[m] for w in by_class.values()])
        ax.bar(list(by_class), values, bottom=bottom, label=m)
        bottom += values
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"true {task}")
    ax.set_ylabel("mean modality weight")
    ax.set_title(f"{part}: modality weight per class")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, report / f"weights_by_class_{part}.png")


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def render_report(
    results: dict[str, Any],
    meta: dict[str, Any],
    tasks: dict[str, list[str]],
    plots: dict[str, list[str]] | None = None,
) -> str:
    progress = meta.get("progress", {})
    lines = [
        f"# Evaluation report: {results['run']}",
        "",
        f"Data sets: {', '.join(meta.get('sets', []))}; modalities: "
        + ", ".join(f"{k} ({v})" for k, v in meta.get("modalities", {}).items()),
        f"Epochs trained: {progress.get('epochs_done', '?')} (best by validation loss: epoch "
        f"{progress.get('best_epoch', '?')}); training time {progress.get('train_seconds', 0):.0f} s.",
        "",
        "## Test metrics",
        "",
        "| task | data set | n | accuracy % | macro-F1 % | ROC-AUC % |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for task, m in results["tasks"].items():
        lines.append(
            f"| {task} | {m['data_set']} | {m['n']} | {_fmt(m['accuracy'])} | {_fmt(m['macro_f1'])} | "
            f"{_fmt(m['roc_auc'])} |"
        )
    ensembles = {
        task: m["member_accuracy"] for task, m in results["tasks"].items() if m.get("member_accuracy")
    }
    if ensembles:
        lines += ["", "The model is an ensemble (`model.members`); each member's test accuracy alone:", ""]
        lines += [f"- {task}: " + ", ".join(f"{_fmt(a)}%" for a in accs) for task, accs in ensembles.items()]
    if results["modality_weights"]:
        names = list(next(iter(results["modality_weights"].values())))
        lines += [
            "",
            "## Mean modality weight",
            "",
            "| data set | " + " | ".join(names) + " |",
        ]
        lines.append("|---|" + "---:|" * len(names))
        for part, w in results["modality_weights"].items():
            lines.append(f"| {part} | " + " | ".join(f"{w[n]:.3f}" for n in names) + " |")
    for name, skipped in (meta.get("skipped_rows") or {}).items():
        count = skipped["count"]
        lines += ["", f"## Skipped bad rows ({name})", "", f"{count} row(s) skipped (--skip-bad-rows):", ""]
        for bad in skipped.get("rows", [])[:20]:
            where = f"line {bad['row']}" if isinstance(bad["row"], int) else f"sample {bad['row']}"
            lines.append(f"- {where}, column '{bad['column']}': {bad['reason']}")
    for part, found in (results.get("robustness") or {}).items():
        lines += _robustness_lines(part, found, results.get("weights_by_class", {}).get(part), plots or {})
    lines += ["", "## Confusion matrices", ""]
    for task in results["tasks"]:
        lines.append(f"![{task}](confusion_{task}.png)")
    if results.get("predictions"):
        lines += [
            "",
            "Every test prediction, with its class probabilities and modality weights: [predictions.csv]"
            "(predictions.csv).",
        ]
    return "\n".join(lines) + "\n"


def _robustness_lines(part: str, found: dict[str, Any], by_class, plots: dict[str, list[str]]) -> list[str]:
    first = next(iter(found["corruption"].values()))
    task_names = list(first["accuracy"])
    names = found["modalities"]
    lines = ["", f"## Robustness ({part})"]
    if found["subsets"]:
        lines += [
            "",
            "Accuracy when only some modalities are given (the others masked out, as a missing modality is):",
            "",
            "| modalities given | n | "
            + " | ".join(f"{t} accuracy %" for t in task_names)
            + "".join(f" | weight {m}" for m in names if found["subsets"][0]["weights"])
            + " |",
            "|---|---:|"
            + "---:|" * len(task_names)
            + ("---:|" * len(names) if found["subsets"][0]["weights"] else ""),
        ]
        for sub in found["subsets"]:
            cells = [" + ".join(sub["modalities"]), str(sub["n"])] + [
                _fmt(sub["accuracy"][t]) for t in task_names
            ]
            if sub["weights"]:
                cells += [f"{sub['weights'][m]:.3f}" for m in names]
            lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Accuracy under growing corruption of one modality (the others clean); seeded, reproducible:",
        "",
    ]
    for m, curve in found["corruption"].items():
        weighted = curve["weights"] is not None
        header = (
            ["level"]
            + [f"{t} accuracy %" for t in task_names]
            + ([f"weight {n}" for n in names] if weighted else [])
        )
        lines += [f"**{m}** ({curve['kind']}: {curve['corruption']})", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---:|" * len(header))
        for i, level in enumerate(curve["levels"]):
            cells = [f"{level:g}"] + [_fmt(curve["accuracy"][t][i]) for t in task_names]
            if weighted:
                cells += [f"{curve['weights'][n][i]:.3f}" for n in names]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    if by_class:
        lines += [f"Mean modality weight per true class of `{by_class['task']}`:", ""]
        lines.append("| class | " + " | ".join(names) + " |")
        lines.append("|---|" + "---:|" * len(names))
        for name, w in by_class["classes"].items():
            lines.append(f"| {name} | " + " | ".join(f"{w[m]:.3f}" for m in names) + " |")
        lines.append("")
    lines += [f"![{name}]({name})" for name in plots.get(part, [])]
    return lines
