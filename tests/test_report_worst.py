"""The report's worst-classified test samples: the most confidently wrong ones per class are picked, explained and
shown (image thumbnails with heat maps, text excerpts with marked words, audio strips), in report.md and inline in
report.html; and the run records which modalities each task answers from."""

import base64
import json
import re

import numpy as np
from fixtures_serving import trained_run
from PIL import Image

from omnifuse import modalities
from omnifuse.evaluation import worst


def test_select_picks_the_most_confident_mistakes_per_true_class_within_the_cap():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, -1])
    probs = np.array(
        [
            [0.1, 0.9],  # wrong, 0.9
            [0.3, 0.7],  # wrong, 0.7
            [0.8, 0.2],  # right
            [0.45, 0.55],  # wrong, 0.55
            [0.95, 0.05],  # wrong, 0.95
            [0.2, 0.8],  # right
            [0.6, 0.4],  # wrong, 0.6
            [0.01, 0.99],  # unlabelled: never picked
        ]
    )
    assert worst.select(labels, probs, per_class=2) == [0, 1, 4, 6]
    assert worst.select(labels, probs, per_class=3) == [0, 1, 3, 4, 6]
    # the cap keeps the most confident mistakes, in class order
    assert worst.select(labels, probs, per_class=3, cap=3) == [0, 1, 4]
    assert worst.select(labels[[2, 5]], probs[[2, 5]]) == []


def test_the_excerpt_marks_the_strongest_words_escapes_markup_and_cuts_long_texts():
    words = ["a", "<b>dull</b>", "film", "*really*", "great", "cast"]
    scores = [0.0, 0.5, -0.1, 0.2, -0.3, 0.0]
    text = worst.excerpt(words, scores)
    marked = re.findall(r"<mark[^>]*>(.*?)</mark>", text)
    assert marked == ["&lt;b&gt;dull&lt;/b&gt;", r"\*really\*"]  # positive scores only, escaped
    assert "<b>" not in text
    long = [f"w{i}" for i in range(300)]
    scores = np.zeros(300)
    scores[200] = 1.0
    cut = worst.excerpt(long, scores.tolist(), limit=40)
    assert cut.startswith("… ") and cut.endswith(" …") and "w200</mark>" in cut
    shown = re.sub(r"<[^>]+>", "", cut).split()
    assert shown[0] == shown[-1] == "…" and len(shown) - 2 == 40 and "w150" not in shown


def test_thumbnails_are_small_pngs_with_the_heat_map_over_the_image(tmp_path):
    image = np.full((8, 8, 3), 100, np.uint8)
    heat = np.zeros((8, 8))
    heat[2, 5] = 1.0
    assert modalities.image.show(image, {"heatmap": heat}, tmp_path / "i.png", scale=2) == {"png": "i.png"}
    picture = np.asarray(Image.open(tmp_path / "i.png"))
    assert picture.shape == (16, 36, 3)  # two panels of 8 pixels and a gap of 2, all twice
    left, right = picture[:, :16], picture[:, 20:]
    assert (left == 100).all()  # the image as it is
    assert tuple(right[4, 10]) == (187, 122, 57)  # the hot pixel tinted orange, the others untouched
    assert (right[0, 0] == 100).all()
    wave = np.sin(np.linspace(0, 400, 8000)).astype(np.float32)
    modalities.audio.show(wave, {"scores": np.linspace(-1, 1, 32)}, tmp_path / "a.png", sample_rate=8000)
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG" and (
        tmp_path / "a.png"
    ).stat().st_size < 40_000


def test_the_report_shows_the_worst_samples_explained_and_inline_in_html(tmp_path_factory):
    run = trained_run(tmp_path_factory, "tiny-joint", evaluate=True)
    report = run / "report"
    metrics = json.loads((report / "metrics.json").read_text())
    meta = json.loads((run / "meta.json").read_text())
    assert meta["task_modalities"] == {"cifar10": ["image"], "sentiment": ["text"]}
    found = metrics["worst"]
    for task, modality in (("cifar10", "image"), ("sentiment", "text")):
        samples = found[task]["samples"]
        assert samples, task  # a one-epoch model on tiny fixtures gets some wrong
        assert len(samples) <= worst.MAX_PER_TASK
        per_class = {}
        for s in samples:
            assert s["true"] != s["answered"] and set(s["parts"]) == {modality}
            per_class[s["true"]] = per_class.get(s["true"], 0) + 1
        assert max(per_class.values()) <= worst.PER_CLASS
        assert found[task]["seconds"] >= 0
    md = (report / "report.md").read_text()
    assert "## Worst-classified test samples" in md and "s a sample)" in md
    first = found["cifar10"]["samples"][0]["parts"]["image"]["png"]
    assert f"]({first})" in md and (report / first).is_file()
    assert "<mark" in md  # the sentiment samples' marked words
    page = (report / "report.html").read_text()
    inline = base64.b64encode((report / first).read_bytes()).decode()
    assert inline in page and f'src="{first}"' not in page
