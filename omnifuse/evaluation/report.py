"""The evaluation report: ``report.md`` (tables and plots by name) and ``report.html``, the same report as one
self-contained page (plots inline as base64 PNG, no external style or script), which opens offline."""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from typing import Any

from omnifuse.evaluation.worst import markdown as worst_markdown


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
    lines += _learning_lines(results, progress)
    lines += _per_class_lines(results)
    lines += _calibration_lines(results)
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
    lines += worst_markdown(results.get("worst") or {})
    if results.get("predictions"):
        lines += [
            "",
            "Every test prediction, with its class probabilities (temperature-scaled where the run is calibrated) "
            "and modality weights: [predictions.csv](predictions.csv).",
        ]
    return "\n".join(lines) + "\n"


def _learning_lines(results: dict[str, Any], progress: dict[str, Any]) -> list[str]:
    if not results.get("learning_curves"):
        return []
    return [
        "",
        "## Learning curves",
        "",
        "Loss and accuracy per epoch on the training stream (solid) and the validation split (dashed), from "
        f"`metrics.csv`; the model kept is the best epoch by validation loss ({progress.get('best_epoch', '?')}).",
        "",
        f"![learning curves]({results['learning_curves']})",
    ]


def _per_class_lines(results: dict[str, Any]) -> list[str]:
    lines = ["", "## Per-class metrics (test)"]
    for task, m in results["tasks"].items():
        per_class = m.get("per_class") or {}
        if not per_class:
            continue
        lines += ["", f"**{task}**", "", "| class | precision % | recall % | F1 % | support |"]
        lines.append("|---|---:|---:|---:|---:|")
        for name, c in per_class.items():
            lines.append(
                f"| {name} | {_fmt(c['precision'])} | {_fmt(c['recall'])} | {_fmt(c['f1'])} | {c['support']} |"
            )
    return lines if len(lines) > 2 else []


def _calibration_lines(results: dict[str, Any]) -> list[str]:
    found = {t: m["calibration"] for t, m in results["tasks"].items() if m.get("calibration")}
    if not found:
        return []
    lines = [
        "",
        "## Calibration",
        "",
        "Whether a probability means what it says: expected calibration error (ECE, 15 equal-width bins of the "
        "top probability; 0 is perfect) and negative log-likelihood (NLL) on the test split, of the model's "
        "probabilities and after temperature scaling (one temperature per task, fitted on the validation split "
        "after training; `T > 1` softens an over-confident model). Accuracy is the same either way. "
        "`predict`, `serve` and `export` apply the temperature unless told not to (`--no-calibration`).",
        "",
        "| task | temperature | ECE % before | ECE % after | NLL before | NLL after |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for task, c in found.items():
        t = "—" if c.get("temperature") is None else f"{c['temperature']:.3f}"
        lines.append(
            f"| {task} | {t} | {_fmt(c['ece_before'])} | {_fmt(c['ece_after'])} | {_nll(c['nll_before'])} | "
            f"{_nll(c['nll_after'])} |"
        )
    if any(c.get("temperature") is None for c in found.values()):
        lines += [
            "",
            'No temperature for this run (no validation split): the "after" columns are the model\'s own.',
        ]
    lines.append("")
    lines += [f"![reliability {task}]({c['plot']})" for task, c in found.items() if c.get("plot")]
    return lines


def _nll(v: float | None) -> str:
    return "—" if v is None else f"{v:.4f}"


_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]+\.png)\)")

STYLE = """
body { font: 15px/1.5 system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; }
th { background: #f3f3f3; }
td:not(:first-child) { text-align: right; }
img { max-width: 100%; display: block; margin: 0.8em 0; }
li img { margin: 0.3em 0; image-rendering: pixelated; }
blockquote { margin: 0.4em 0 0.8em; padding: 0.2em 0.8em; border-left: 3px solid #ccc; color: #333; }
mark { background: rgba(217, 130, 43, 0.6); padding: 0 2px; }
code { background: #f3f3f3; padding: 0 3px; }
"""


def render_html(markdown: str, report_dir: Path, title: str) -> str:
    """``markdown`` (a report.md) as one self-contained HTML page: every PNG it shows that exists in
    ``report_dir`` inlined as a base64 data URI, the style in the page, no script and nothing fetched."""
    from markdown_it import MarkdownIt

    # markdown-it parses a short name in place of each image (parsing the base64 text itself took most of the
    # rendering time); the names become data URIs in the HTML it made
    images: dict[str, str] = {}

    def name(match: re.Match) -> str:
        path = report_dir / match.group(2)
        if "/" in match.group(2) or not path.is_file():
            return match.group(0)
        key = f"omnifuse-inline-image-{len(images)}.png"
        images[key] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        return f"![{match.group(1)}]({key})"

    body = MarkdownIt("commonmark").enable("table").render(_IMAGE.sub(name, markdown))
    for key, uri in images.items():
        body = body.replace(f'src="{key}"', f'src="{uri}"')
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n"
    )


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
