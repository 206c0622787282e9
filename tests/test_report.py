"""The evaluation report's parts: readable plots, learning curves, the self-contained HTML page, per-class metrics."""

import base64
import re

import numpy as np
import pytest

from omnifuse.evaluation import plots, task_metrics
from omnifuse.evaluation.report import render_html, render_report


def _curves(levels_image, levels_text, same_values=False):
    acc = [0.9, 0.8, 0.6, 0.3, 0.1]
    return {
        "image": {
            "kind": "image",
            "corruption": "Gaussian noise, std / image std",
            "levels": levels_image,
            "accuracy": {"cifar10": acc[: len(levels_image)], "sentiment": acc[: len(levels_image)]},
            "weights": {"image": [0.5] * len(levels_image), "text": [0.5] * len(levels_image)},
        },
        "text": {
            "kind": "text",
            "corruption": "token dropout rate",
            "levels": levels_text,
            "accuracy": {
                "cifar10": acc[: len(levels_text)] if same_values else [0.5] * len(levels_text),
                "sentiment": acc[: len(levels_text)],
            },
            "weights": {"image": [0.5] * len(levels_text), "text": [0.5] * len(levels_text)},
        },
    }


def _overlaps(boxes) -> bool:
    return any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1 :])


def test_the_corruption_plot_labels_each_level_once_without_overlap():
    # different level scales per modality used to be joined into one label per tick ("0.25 / 0.1")
    fig = plots.corruption_figure("joint", _curves([0, 0.25, 0.5, 1, 2], [0, 0.1, 0.25, 0.5, 0.75]))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    axes = fig.axes
    assert len(axes) == 4  # accuracy and weights, per corrupted modality
    image_labels = [t.get_text() for t in axes[0].get_xticklabels()]
    assert image_labels == ["0", "0.25", "0.5", "1", "2"]
    text_labels = [t.get_text() for t in axes[1].get_xticklabels()]
    assert text_labels == ["0", "0.1", "0.25", "0.5", "0.75"]
    for ax in axes:
        boxes = [t.get_window_extent(renderer) for t in ax.get_xticklabels() if t.get_text()]
        assert not _overlaps(boxes)
    plots._pyplot().close(fig)


def test_identical_curves_are_drawn_in_different_styles():
    fig = plots.corruption_figure("joint", _curves([0, 0.5, 1], [0, 0.5, 1], same_values=True))
    lines = fig.axes[0].get_lines()  # cifar10 and sentiment: the very same values
    assert np.allclose(lines[0].get_ydata(), lines[1].get_ydata())
    assert (lines[0].get_marker(), lines[0].get_linestyle()) != (
        lines[1].get_marker(),
        lines[1].get_linestyle(),
    )
    plots._pyplot().close(fig)


def test_learning_curves_read_metrics_csv(tmp_path):
    (tmp_path / "metrics.csv").write_text(
        "epoch,cifar10_accuracy,epoch_seconds,loss,val_cifar10_accuracy,val_loss\n"
        "0,0.3,1.0,2.1,0.25,2.2\n1,0.5,1.0,1.6,0.45,1.8\n2,0.6,1.0,1.2,0.5,1.7\n"
    )
    history = plots.read_history(tmp_path / "metrics.csv")
    assert history["val_loss"] == [2.2, 1.8, 1.7]
    assert plots.learning_png(tmp_path / "learning.png", history) == "learning.png"
    assert (tmp_path / "learning.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert plots.read_history(tmp_path / "absent.csv") == {}
    assert plots.learning_png(tmp_path / "none.png", {"epoch": [0.0]}) is None


def test_a_plot_is_laid_out_and_drawn_once_and_tensorboard_gets_the_same_pixels(tmp_path, monkeypatch):
    from matplotlib.figure import Figure
    from PIL import Image

    draws = []
    draw = Figure.draw
    monkeypatch.setattr(Figure, "draw", lambda fig, renderer: draws.append(fig) or draw(fig, renderer))
    matrix, classes = [[5, 1, 0], [2, 7, 1], [0, 0, 9]], ["cat", "dog", "a long class name"]
    assert plots.confusion_png(tmp_path / "c.png", matrix, classes, "species (test)") == "c.png"
    assert len(draws) == 1  # savefig draws it once: no second layout pass, no placeholder layout engine
    saved = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
    size = 0.55 * len(classes) + 2
    assert saved.shape == (round(max(4.0, size) * plots.DPI), round(max(4.0, size) * plots.DPI), 3)
    # the confusion image log_confusion hands TensorBoard: the report's picture, pixel for pixel
    assert np.array_equal(plots.rgb(plots.confusion_figure(matrix, classes, "species (test)")), saved)
    assert len(draws) == 2


def test_per_class_metrics():
    probs = np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0], [0.2, 0.8, 0.0], [0.6, 0.4, 0.0]])
    found = task_metrics(np.array([0, 0, 1, 1]), probs, ["a", "b", "c"])["per_class"]
    # predicted a, a, b, a: a has precision 2/3 and recall 1; b precision 1 and recall 1/2; c never occurs
    assert found["a"]["precision"] == pytest.approx(2 / 3) and found["a"]["recall"] == 1.0
    assert found["b"]["precision"] == 1.0 and found["b"]["recall"] == 0.5
    assert found["b"]["f1"] == pytest.approx(2 / 3)
    assert found["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}


def test_the_html_report_is_self_contained(tmp_path):
    png = plots.learning_png(
        tmp_path / "learning_curves.png", {"epoch": [0.0, 1.0], "loss": [1.0, 0.5], "val_loss": [1.1, 0.7]}
    )
    results = {
        "run": "r",
        "tasks": {
            "t": {
                "data_set": "d",
                "n": 4,
                "accuracy": 0.75,
                "macro_f1": 0.7,
                "roc_auc": None,
                "per_class": {"a": {"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2}},
            }
        },
        "modality_weights": {},
        "learning_curves": png,
        "predictions": "predictions.csv",
    }
    markdown = render_report(results, {"sets": ["d"]}, {"t": ["a"]})
    assert "## Learning curves" in markdown and "| a | 100.00 | 50.00 | 66.67 | 2 |" in markdown
    page = render_html(markdown, tmp_path, "Evaluation report: r")
    assert page.startswith("<!DOCTYPE html>") and "<table>" in page
    sources = re.findall(r'<img src="([^"]+)"', page)
    # the learning curves inlined; the confusion matrix PNG, never written here, stays a relative link
    assert len(sources) == 2 and sources[1] == "confusion_t.png"
    assert sources[0].startswith("data:image/png;base64,")
    assert base64.b64decode(sources[0].split(",", 1)[1]) == (tmp_path / png).read_bytes()
    # nothing to fetch: no external script, style sheet or image
    assert not re.search(r'(src|href)="(https?:)?//', page) and "<script" not in page
