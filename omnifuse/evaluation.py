"""Evaluation of a run on its test splits: accuracy, macro-F1, ROC-AUC, confusion matrices, modality weights.

Writes ``report/metrics.json``, ``report/report.md`` and one ``report/confusion_<task>.png`` per task.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import keras
import numpy as np

from omnifuse import pipeline
from omnifuse.models import WEIGHTS_OUTPUT
from omnifuse.training import atomic_write_text, load_datasets, read_meta, read_run_config


def task_metrics(y_true: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    """Accuracy, macro-F1, ROC-AUC (binary: positive class; multi-class: one-vs-rest macro) and the confusion matrix."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, roc_auc_score

    y_pred = probs.argmax(axis=1)
    labels = list(range(len(classes)))
    out = {
        "n": int(len(y_true)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
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
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def evaluate(run_dir: str | Path, data_dir: str | None = None, batch_size: int = 256) -> dict[str, Any]:
    """Evaluate the run's final model on every test split; write the report; return the metrics."""
    run_dir = Path(run_dir)
    cfg = read_run_config(run_dir)
    meta = read_meta(run_dir)
    model = keras.saving.load_model(run_dir / "model.keras")
    prepared = pipeline.prepare(cfg, load_datasets(cfg, data_dir))
    modalities = sorted(prepared.modalities)
    with_weights = WEIGHTS_OUTPUT in model.output_names
    results: dict[str, Any] = {"run": run_dir.name, "tasks": {}, "modality_weights": {}}
    for part in prepared.parts:
        if not len(part.test):
            continue
        ds, _ = pipeline.stream(prepared, [part.test], batch_size, False, 0, with_weights)
        out = model.predict(ds.map(lambda x, y: x), verbose=0)
        for task, labels in part.test.labels.items():
            keep = labels >= 0
            m = task_metrics(labels[keep], out[task][keep], prepared.tasks[task])
            m["data_set"] = part.name
            results["tasks"][task] = m
        if with_weights:
            w = out[WEIGHTS_OUTPUT].mean(axis=0)
            results["modality_weights"][part.name] = {name: float(v) for name, v in zip(modalities, w)}
    report = run_dir / "report"
    report.mkdir(exist_ok=True)
    for task, m in results["tasks"].items():
        _confusion_png(
            report / f"confusion_{task}.png", m["confusion"], prepared.tasks[task], f"{task} (test)"
        )
    results["report"] = str(report / "report.md")
    atomic_write_text(report / "metrics.json", json.dumps(results, indent=2))
    atomic_write_text(report / "report.md", render_report(results, meta, prepared.tasks))
    return results


def _fmt(v: float | None) -> str:
    return "—" if v is None else f"{100 * v:.2f}"


def render_report(results: dict[str, Any], meta: dict[str, Any], tasks: dict[str, list[str]]) -> str:
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
    if results["modality_weights"]:
        names = list(next(iter(results["modality_weights"].values())))
        lines += [
            "",
            "## Mean modality weight (attention fusion)",
            "",
            "| data set | " + " | ".join(names) + " |",
        ]
        lines.append("|---|" + "---:|" * len(names))
        for part, w in results["modality_weights"].items():
            lines.append(f"| {part} | " + " | ".join(f"{w[n]:.3f}" for n in names) + " |")
    lines += ["", "## Confusion matrices", ""]
    for task in results["tasks"]:
        lines.append(f"![{task}](confusion_{task}.png)")
    return "\n".join(lines) + "\n"
