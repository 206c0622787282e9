"""The evaluation report's PNG plots: confusion matrices, modality subsets, corruption curves, modality weight per
class, reliability diagrams and learning curves. Each function writes one file (atomically) and returns its name.

Lines that may coincide (two modalities whose corruption costs the same accuracy, train and validation loss) get
their own marker and dash style, so a line hidden under another still shows; tick labels never share a position.
"""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.rundir import atomic_write

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DPI = 110  # the pixels per inch of every plot
DASHES = ("-", "--", ":", "-.")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _lay_out(fig) -> None:
    """Matplotlib's tight layout, once, at the resolution the figure is drawn at: the text it measured is then
    drawn from matplotlib's cache. (``fig.tight_layout()`` leaves a placeholder layout engine on the figure, for
    which ``savefig`` lays every text out a second time before drawing it; at another resolution, a third.)"""
    from matplotlib.layout_engine import TightLayoutEngine

    fig.set_dpi(DPI)
    TightLayoutEngine().execute(fig)


def _save(fig, path: Path) -> str:
    _lay_out(fig)
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI))
    _pyplot().close(fig)
    return path.name


def rgb(fig) -> np.ndarray:
    """The figure drawn as an RGB array (height, width, 3; uint8), laid out as :func:`_save` lays it out, and
    closed: for a picture that goes on in memory (TensorBoard), not through a PNG file."""
    _lay_out(fig)
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    _pyplot().close(fig)
    return pixels


def _style(i: int) -> dict[str, Any]:
    """Line style number ``i``: a marker and a dash pattern of its own (both cycle), slightly see-through."""
    return {
        "marker": MARKERS[i % len(MARKERS)],
        "linestyle": DASHES[i % len(DASHES)],
        "alpha": 0.85,
        "markersize": 7 - 1.5 * (i % 3),  # a smaller marker drawn later shows inside a larger one beneath it
    }


def confusion_png(path: Path, matrix: list[list[int]], classes: list[str], title: str) -> str:
    return _save(confusion_figure(matrix, classes, title), path)


def confusion_figure(matrix: list[list[int]], classes: list[str], title: str):
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ConfusionMatrixDisplay(np.array(matrix), display_labels=classes).plot(
        ax=ax, cmap="Blues", colorbar=False, xticks_rotation=45
    )
    ax.set_title(title)
    return fig


def robustness_pngs(report: Path, part: str, found: dict[str, Any]) -> list[str]:
    """``subsets_<part>.png`` (accuracy per subset of modalities given) and ``corruption_<part>.png``: one column
    per corrupted modality, on that modality's own level scale (top: accuracy per task; below, where the fusion
    has weights: the mean weight of every modality)."""
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
    names.append(_save(corruption_figure(part, found["corruption"]), report / f"corruption_{part}.png"))
    return names


def corruption_figure(part: str, curves: dict[str, Any]):
    """The corruption figure: one column per corrupted modality, on its own level scale (top: accuracy per task;
    below, where the fusion has weights: the mean weight of every modality)."""
    plt = _pyplot()
    weighted = all(c["weights"] for c in curves.values())
    rows = 2 if weighted else 1
    fig, axes = plt.subplots(
        rows, len(curves), figsize=(4.2 * len(curves) + 0.8, 3.4 * rows), squeeze=False, sharey="row"
    )
    for col, (m, c) in enumerate(curves.items()):
        x = np.arange(len(c["levels"]))
        ax = axes[0, col]
        for i, (task, accs) in enumerate(c["accuracy"].items()):
            ax.plot(x, [100 * (a or 0.0) for a in accs], label=task, **_style(i))
        ax.set_title(f"{m} corrupted")
        ax.set_ylabel("accuracy % (test)" if col == 0 else "")
        if weighted:
            for i, (name, ws) in enumerate(c["weights"].items()):
                axes[1, col].plot(x, ws, label=f"weight of {name}", **_style(i))
            axes[1, col].set_ylim(-0.02, 1.02)
            axes[1, col].set_ylabel("mean modality weight" if col == 0 else "")
        for ax in axes[:, col]:
            # each modality on its own scale: one label per tick, rotated when there are many
            ax.set_xticks(x, [f"{lv:g}" for lv in c["levels"]], rotation=45 if len(x) > 6 else 0)
            ax.set_xlabel(textwrap.fill(str(c["corruption"]), 48), fontsize=8)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(f"{part}: accuracy and modality weights under corruption of one modality")
    return fig


def weights_by_class_png(report: Path, part: str, task: str, by_class, present) -> str:
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
    if len(by_class) > 6:
        ax.tick_params(axis="x", labelrotation=45)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _save(fig, report / f"weights_by_class_{part}.png")


def reliability_png(
    path: Path, task: str, before: dict[str, list], after: dict[str, list] | None, ece
) -> str:
    """A reliability diagram: accuracy against confidence per bin of the top probability (the diagonal is a
    perfectly calibrated model), before and, where a temperature was fitted, after scaling; bar widths below show
    how many samples each bin holds."""
    plt = _pyplot()
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5, 5.6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], color="0.6", linewidth=1, label="perfectly calibrated")
    bins = len(before["count"])
    centres = (np.arange(bins) + 0.5) / bins
    for i, (label, table, value) in enumerate(
        [("model", before, ece[0]), ("temperature-scaled", after, ece[1])]
    ):
        if table is None:
            continue
        shown = [k for k, n in enumerate(table["count"]) if n]
        conf = [table["confidence"][k] for k in shown]
        acc = [table["accuracy"][k] for k in shown]
        text = label if value is None else f"{label} (ECE {100 * value:.1f}%)"
        ax.plot(conf, acc, label=text, **_style(i))
        hist.bar(centres + (i - 0.5) * 0.45 / bins, table["count"], width=0.45 / bins, label=label, alpha=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("accuracy")
    ax.set_title(f"{task}: reliability (test)")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    hist.set_xlabel("confidence (top probability)")
    hist.set_ylabel("samples")
    return _save(fig, path)


def heatmap_png(path: Path, image: np.ndarray, heatmap, title: str) -> str:
    """An image beside its attribution heat map laid over it (red raises the explained class, blue lowers it)."""
    plt = _pyplot()
    heat = np.asarray(heatmap, np.float64)
    limit = float(np.abs(heat).max()) or 1.0
    fig, axes = plt.subplots(1, 2, figsize=(7, 3.6))
    shown = image[..., 0] if image.shape[-1] == 1 else image
    for ax in axes:
        ax.imshow(shown, cmap="gray" if shown.ndim == 2 else None)
        ax.axis("off")
    axes[1].imshow(heat, cmap="bwr", vmin=-limit, vmax=limit, alpha=0.6)
    axes[0].set_title("input")
    axes[1].set_title(title)
    return _save(fig, path)


def read_history(path: Path) -> dict[str, list[float]]:
    """``metrics.csv`` (one row per epoch, as Keras' CSVLogger writes it) as column -> values; empty when absent
    or unreadable. Cells that are not numbers become NaN."""
    if not Path(path).is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return {}
    out: dict[str, list[float]] = {}
    for column in rows[0]:
        values = []
        for row in rows:
            try:
                values.append(float(row.get(column) or "nan"))
            except ValueError:
                values.append(float("nan"))
        out[column] = values
    return out


def learning_png(path: Path, history: dict[str, list[float]]) -> str | None:
    """Loss and accuracy per epoch, train (solid) and validation (dashed, same colour), from ``metrics.csv``;
    None when the history has no loss column."""
    plt = _pyplot()
    columns = [c for c in history if c != "epoch" and not c.startswith("val_") and c != "epoch_seconds"]
    panels = {
        "loss": [c for c in columns if c.endswith("loss")],
        "accuracy": [c for c in columns if c.endswith("accuracy")],
    }
    panels = {k: v for k, v in panels.items() if v}
    if "loss" not in panels:
        return None
    epochs = np.array(history.get("epoch") or range(len(history[panels["loss"][0]])), float) + 1
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.8), squeeze=False)
    for ax, (title, names) in zip(axes[0], panels.items()):
        for i, name in enumerate(names):
            colour = f"C{i % 10}"
            style = _style(i)
            ax.plot(epochs, history[name], color=colour, marker=style["marker"], label=f"train {name}")
            if f"val_{name}" in history:
                ax.plot(
                    epochs,
                    history[f"val_{name}"],
                    color=colour,
                    marker=style["marker"],
                    linestyle="--",
                    markerfacecolor="none",
                    label=f"validation {name}",
                )
        ax.set_xlabel("epoch")
        ax.set_ylabel(title)
        ax.set_title(f"{title} per epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        if len(epochs) <= 20:
            ax.set_xticks(epochs)
    return _save(fig, path)
