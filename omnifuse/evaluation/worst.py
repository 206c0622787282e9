"""The report's worst-classified test samples: per task and true class, the samples the model got wrong with the
highest confidence, each shown as it is (an image thumbnail, a text excerpt, a recording's waveform and mel
spectrogram, a table's columns) with the explanation of the wrong answer (:mod:`omnifuse.evaluation.explain`: the
heat map over the image, the words that pushed towards it, the moments of the recording, the columns).

Bounded in cost: at most ``PER_CLASS`` samples a true class and ``MAX_PER_TASK`` a task are explained, each costing
``explain.STEPS`` forward and backward passes for images, audio and numbers plus one forward pass per word (or span,
at most ``explain.MAX_WORDS``) of text; the report states the time it took.
"""

from __future__ import annotations

import html
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.evaluation.explain import Explainer
from omnifuse.modalities import KINDS
from omnifuse.names import mask_name

PER_CLASS = 3
MAX_PER_TASK = 30
EXCERPT_WORDS = 80  # a text longer than this is shown as the window around its strongest words
MARKED = 5  # words (or spans) highlighted per text: those that pushed most towards the wrong answer
TOP_COLUMNS = 8


def select(
    labels: np.ndarray, probs: np.ndarray, per_class: int = PER_CLASS, cap: int = MAX_PER_TASK
) -> list[int]:
    """Indices of the most confidently wrong samples: per true class (in class order) up to ``per_class`` of the
    misclassified ones, highest probability of the wrong answer first; at most ``cap`` in all (the most confident
    kept). Unlabelled samples (label < 0) are never picked.

    Example: ``select(np.array([0, 0, 1]), np.array([[0.2, 0.8], [0.4, 0.6], [0.9, 0.1]]))`` is ``[0, 1, 2]``.
    """
    labels = np.asarray(labels).reshape(-1)
    predicted, confidence = probs.argmax(axis=1), probs.max(axis=1)
    picked: list[int] = []
    for k in range(probs.shape[1]):
        wrong = np.flatnonzero((labels == k) & (predicted != k))
        picked += wrong[np.argsort(-confidence[wrong], kind="stable")][:per_class].tolist()
    if len(picked) > cap:
        keep = set(sorted(picked, key=lambda i: -confidence[i])[:cap])
        picked = [i for i in picked if i in keep]
    return picked


def collect(
    model,
    feed: dict[str, np.ndarray],
    probs: dict[str, np.ndarray],
    labels: dict[str, np.ndarray],
    tasks: dict[str, list[str]],
    modalities: dict[str, str],
    report: Path,
    ids: np.ndarray | None = None,
    features: dict[str, list[str]] | None = None,
    sample_rate: int | None = None,
) -> dict[str, Any]:
    """Per task of ``labels`` (one data set's test split; ``probs`` the answers shown, temperature-scaled where the
    run is calibrated): the worst samples, explained, their thumbnails written to ``report`` as
    ``worst_<task>_<n>_<modality>.png``. Returns ``{task: {"samples": [...], "seconds": s}}``."""
    explainer = Explainer(model, modalities, features, sample_rate=sample_rate)
    out: dict[str, Any] = {}
    for task, y in labels.items():
        if task not in probs or not (np.asarray(y) >= 0).any():  # not this data set's task
            continue
        picked = select(y, probs[task])
        start = time.perf_counter()
        found = explainer.explain({k: v[picked] for k, v in feed.items()}, tasks=[task]) if picked else []
        samples = []
        for n, (i, why) in enumerate(zip(picked, found)):
            entry = {
                "id": str(ids[i]) if ids is not None else str(i),
                "true": tasks[task][int(y[i])],
                "answered": tasks[task][int(probs[task][i].argmax())],
                "probability": float(probs[task][i].max()),
                "parts": {},
            }
            for m, kind in modalities.items():
                if feed[mask_name(m)][i] > 0 and m in why[task]:
                    stem = report / f"worst_{_safe(task)}_{n}_{_safe(m)}.png"
                    entry["parts"][m] = _part(kind, feed[m][i], why[task][m], stem, sample_rate)
            samples.append(entry)
        out[task] = {"samples": samples, "seconds": round(time.perf_counter() - start, 3)}
    return out


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", name)


def _part(kind: str, value, why: dict[str, Any], path: Path, sample_rate: int | None) -> dict[str, Any]:
    """One modality of one sample, as the report shows it (its kind's ``show``): a PNG (image, audio), marked
    text, or columns."""
    return {"kind": kind, **KINDS[kind].show(value, why, path, sample_rate=sample_rate, top=TOP_COLUMNS)}


# ------------------------------------------------------------------------------------------ the report section


def markdown(found: dict[str, Any]) -> list[str]:
    """The report's section (Markdown with a little inline HTML, ``<mark>``, that GitHub and the HTML report both
    show)."""
    tasks = {t: f for t, f in found.items() if f["samples"]}
    if not found:
        return []
    total = sum(len(f["samples"]) for f in found.values())
    seconds = sum(f["seconds"] for f in found.values())
    lines = [
        "",
        "## Worst-classified test samples",
        "",
        f"Per task and true class, the (at most {PER_CLASS}) test samples the model got wrong with the highest "
        f"confidence, at most {MAX_PER_TASK} a task, with what made it give the wrong answer: integrated "
        "gradients over an image (orange raises the wrong answer, blue lowers it), a recording (the strip under "
        "its waveform and mel spectrogram) and a table's columns; for a text, the words whose removal lowers the "
        f"wrong answer most are <mark>marked</mark>. Explaining these {total} samples took {seconds:.1f} s "
        f"({seconds / max(total, 1):.2f} s a sample) while the report was made.",
    ]
    if not tasks:
        lines += ["", "No test sample was misclassified."]
    for task, f in tasks.items():
        lines += ["", f"### {task}", ""]
        for s in f["samples"]:
            lines.append(
                f"- **{_text(s['true'])}** answered as **{_text(s['answered'])}** "
                f"({100 * s['probability']:.1f}%), test sample `{s['id']}`"
            )
            for m, part in s["parts"].items():
                lines += _part_lines(m, part)
    return lines


def _part_lines(modality: str, part: dict[str, Any]) -> list[str]:
    if "png" in part:
        return ["", f"  ![{modality}]({part['png']})", ""]
    if "words" in part:
        return ["", f"  > {excerpt(part['words'], part['scores'])}", ""]
    cells = ", ".join(f"{_text(n)} = {v:.4g} ({s:+.3g})" for n, v, s in part["columns"])
    return ["", f"  {modality} (value, attribution): {cells}", ""]


def excerpt(words: list[str], scores: list[float], limit: int = EXCERPT_WORDS) -> str:
    """The text of ``words`` (words or spans, as the explanation scored them) with the ``MARKED`` that pushed most
    towards the answer in ``<mark>`` (shaded by score), cut to the window of about ``limit`` words around the
    strongest one; Markdown and HTML in the text are escaped."""
    if not words:
        return ""
    scores = np.asarray(scores, np.float64)
    top = [i for i in np.argsort(-scores)[:MARKED] if scores[i] > 0]
    peak = scores.max() if len(top) else 1.0
    sizes = [len(w.split()) for w in words]
    lo = hi = int(top[0]) if top else 0
    while sum(sizes[lo : hi + 1]) < limit and (lo > 0 or hi < len(words) - 1):
        lo = max(0, lo - 1)
        if hi < len(words) - 1 and sum(sizes[lo : hi + 1]) < limit:
            hi += 1
    shown = []
    for i in range(lo, hi + 1):
        # reviews scraped from the web carry HTML line breaks ("film.<br /><br />The"): shown as spaces
        text = _text(words[i]).replace("&lt;br", " ").replace("/&gt;", " ").strip() or "·"
        if i in top:
            alpha = 0.25 + 0.65 * scores[i] / peak
            text = f'<mark style="background: rgba(217, 130, 43, {alpha:.2f})">{text}</mark>'
        shown.append(text)
    return ("… " if lo > 0 else "") + " ".join(shown) + (" …" if hi < len(words) - 1 else "")


def _text(value: str) -> str:
    """``value`` safe inside Markdown and HTML: tags escaped, Markdown's punctuation backslashed."""
    return re.sub(r"([\\`*_\[\]|#!~])", r"\\\1", html.escape(str(value), quote=False))
