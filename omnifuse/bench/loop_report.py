"""The labelling benchmarks' tables and curves (records of :mod:`omnifuse.bench.loop`), rendered into RESULTS.md
between ``<!-- labelling:begin -->`` and ``<!-- labelling:end -->``, and ``<results>/<name>/curves.png`` per loop.

Each benchmark is shown from its latest invocation only: every strategy beside ``random`` on the same seeds, data
and code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

BEGIN, END = "<!-- labelling:begin -->", "<!-- labelling:end -->"
PLOT = "curves.png"
TARGET_RANDOM, TARGET_BEST = 0.10, 0.05  # the best strategy at <= 5% of the labels vs random at 10%


def _all(results: str | Path, kind: str) -> dict[str, list[dict[str, Any]]]:
    """name -> every record of kind ``kind`` (not superseded)."""
    found: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(Path(results).glob("*/*.json")):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(record, dict) and record.get("kind") == kind and not record.get("superseded"):
            found.setdefault(record["name"], []).append(record)
    return found


def latest(results: str | Path, kind: str) -> dict[str, list[dict[str, Any]]]:
    """name -> the records of kind ``kind`` of that benchmark's latest invocation."""
    found = _all(results, kind)
    out = {}
    for name, records in sorted(found.items()):
        last = max(r["invocation"] for r in records)
        out[name] = [r for r in records if r["invocation"] == last]
    return out


def _ms(values, scale: float = 100.0, digits: int = 1) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    a = scale * np.asarray(values, float)
    return f"{a.mean():.{digits}f}" + (f" ± {a.std(ddof=1):.{digits}f}" if len(a) > 1 else "")


def _by_strategy(records: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """label -> its records by seed; ``random`` (the baseline) first, then the order they ran in."""
    out: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(records, key=lambda r: (r["label"] != "random", r["seed"])):
        out.setdefault(r["label"], []).append(r)
    return out


def _at(curve: list[dict[str, Any]], fraction: float) -> dict[str, Any]:
    """The point of ``curve`` nearest ``fraction`` of the pool labelled."""
    return min(curve, key=lambda p: abs(p["fraction"] - fraction))


def target(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Whether a strategy reaches, with <= 5% of the pool labelled, the accuracy ``random`` reaches with 10%:
    on the mean curves over seeds, and seed by seed. None without a ``random`` run reaching 10%."""
    groups = _by_strategy(records)
    randoms = {r["seed"]: r for r in groups.get("random", [])}
    if (
        not randoms
        or max(p["fraction"] for r in randoms.values() for p in r["curve"]) < TARGET_RANDOM - 0.005
    ):
        return None
    goal = float(np.mean([_at(r["curve"], TARGET_RANDOM)["accuracy"] for r in randoms.values()]))
    rows = {}
    for strategy, runs in groups.items():
        curves = [r["curve"] for r in runs]
        mean = [
            (p["fraction"], p["labels"], float(np.mean([c[i]["accuracy"] for c in curves])))
            for i, p in enumerate(curves[0])
        ]
        reached = next(((f, n) for f, n, a in mean if a >= goal - 1e-12), None)
        per_seed = []
        for r in runs:
            own = (
                _at(randoms[r["seed"]]["curve"], TARGET_RANDOM)["accuracy"] if r["seed"] in randoms else goal
            )
            per_seed.append(next((p["fraction"] for p in r["curve"] if p["accuracy"] >= own - 1e-12), None))
        rows[strategy] = {"mean": reached, "per_seed": per_seed}
    best = min(
        (s for s in rows if s != "random" and rows[s]["mean"]), key=lambda s: rows[s]["mean"][0], default=None
    )
    met = best is not None and rows[best]["mean"][0] <= TARGET_BEST + 1e-9
    return {"goal": goal, "rows": rows, "best": best, "met": met}


def plot(name: str, records: list[dict[str, Any]], folder: Path) -> Path | None:
    """Accuracy against labels, mean ± std over seeds, one line per strategy: ``folder/curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = _by_strategy(records)
    if not groups:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=110)
    for strategy, runs in groups.items():
        labels = np.array([p["labels"] for p in runs[0]["curve"]])
        acc = 100 * np.array([[p["accuracy"] for p in r["curve"]] for r in runs])
        mean, std = acc.mean(0), acc.std(0)
        style = {"color": "black", "linestyle": "--"} if strategy == "random" else {}
        (line,) = ax.plot(labels, mean, marker="o", markersize=3, label=f"{strategy} ({len(runs)})", **style)
        ax.fill_between(labels, mean - std, mean + std, alpha=0.12, color=line.get_color())
    head = records[0]
    encoders = ", ".join(f"{m}: {e}" for m, e in head.get("encoders", {}).items())
    ax.set_title(
        f"{name}\n{encoders}; pool {head['pool']['size']}, {head.get('eval_split', 'test')} {head['test_size']}",
        fontsize=8,
    )
    ax.set_xlabel("labels revealed")
    ax.set_ylabel(f"{head.get('eval_split', 'test')} accuracy %")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, title="strategy (seeds)", title_fontsize=7)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLOT
    tmp = folder / f".{PLOT}.tmp{os.getpid()}.png"
    fig.savefig(tmp, bbox_inches="tight")
    plt.close(fig)
    os.replace(tmp, path)
    return path


def _header_line(records: list[dict[str, Any]]) -> str:
    r = records[0]
    encoders = "; ".join(f"{m}: {e}" for m, e in r.get("encoders", {}).items())
    commit = (r.get("commit") or {}).get("sha") or "?"
    dirty = "+dirty" if (r.get("commit") or {}).get("dirty") else ""
    hardware = r.get("hardware") or {}
    seeds = sorted({x["seed"] for x in records})
    return (
        f"preset `{r['preset']}`"
        + (f" with `{' '.join(r['overrides'])}`" if r.get("overrides") else "")
        + f"; encoder {encoders}; pool {r['pool']['size']} ({'+'.join(r['pool']['splits'])}), "
        f"{r.get('eval_split', 'test')} {r['test_size']}; head: {r['head']}; seeds {', '.join(map(str, seeds))}; invocation {r['invocation']}, "
        f"commit {commit[:7]}{dirty}, {hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores"
    )


def render_loops(loops: dict[str, list[dict[str, Any]]], source: str) -> list[str]:
    lines = []
    for name, records in loops.items():
        groups = _by_strategy(records)
        first = groups.get("random", next(iter(groups.values())))[0]["curve"]
        found = target(records)
        lines += [f"#### {name}", "", _header_line(records), "", f"![{name}]({source}{name}/{PLOT})", ""]
        heads = [f"{p['labels']} ({100 * p['fraction']:.0f}%)" for p in first]
        extra = (
            f" | labels to reach random's {100 * TARGET_RANDOM:.0f}% accuracy ({100 * found['goal']:.2f}%): "
            "mean curve; each seed"
            if found
            else ""
        )
        lines += [
            "| strategy | runs | " + " | ".join(heads) + extra + " |",
            "|---|---:|" + "---:|" * len(heads) + ("---|" if found else ""),
        ]
        for strategy, runs in groups.items():
            cells = [strategy, str(len(runs))]
            cells += [_ms([r["curve"][i]["accuracy"] for r in runs]) for i in range(len(first))]
            if found:
                row = found["rows"][strategy]
                mean = f"{100 * row['mean'][0]:.0f}% ({row['mean'][1]})" if row["mean"] else "not reached"
                seeds = ", ".join("—" if f is None else f"{100 * f:.0f}%" for f in row["per_seed"])
                cells.append(f"{mean}; {seeds}")
            lines.append("| " + " | ".join(cells) + " |")
        if found:
            verdict = "met" if found["met"] else "not met"
            best = found["best"]
            how = (
                f"best strategy `{best}` reaches it with {100 * found['rows'][best]['mean'][0]:.0f}% of the pool"
                if best
                else "no strategy but random reaches it within the loop"
            )
            lines += ["", f"Target (<= {100 * TARGET_BEST:.0f}% of the labels): **{verdict}**: {how}."]
        lines.append("")
    return lines


WHO = {
    "omnifuse": "omnifuse (off-diagonal)",
    "omnifuse-pbnr": "omnifuse (prune by noise rate)",
    "cleanlab": "cleanlab find_label_issues",
}


def render_audits(audits: dict[str, list[dict[str, Any]]]) -> list[str]:
    lines = []
    for name, records in audits.items():
        lines += [
            f"#### {name}",
            "",
            _header_line(records) + f"; {records[0]['folds']}-fold cross-fitting",
            "",
        ]
        who = [w for w in WHO if all(w in r["results"] for r in records)]
        lines += [
            "| noise | runs | flipped | "
            + " | ".join(f"{WHO[w]}: flagged / precision % / recall %" for w in who)
            + " | out-of-fold accuracy % (given / true labels) |",
            "|---|---:|---:|" + "---|" * len(who) + "---|",
        ]
        for label, runs in _by_strategy(records).items():
            res = [r["results"] for r in runs]
            cells = [label, str(len(runs)), _ms([r["flipped"] for r in runs], 1, 0)]
            noisy = any(r["flipped"] for r in runs)  # no label flipped: precision and recall do not apply
            for w in who:
                scores = [_ms([x[w][k] for x in res]) if noisy else "—" for k in ("precision", "recall")]
                cells.append(" / ".join([_ms([x[w]["flagged"] for x in res], 1, 0), *scores]))
            accuracy = [r["oof_accuracy"] for r in runs], [r["oof_accuracy_true"] for r in runs]
            cells.append(f"{_ms(accuracy[0])} / {_ms(accuracy[1])}")
            lines.append("| " + " | ".join(cells) + " |")
        shown = next((r for r in sorted(records, key=lambda r: r["seed"]) if r.get("top")), None)
        if shown:
            lines += [
                "",
                f"Top {len(shown['top'])} rows omnifuse flags ({shown['label']}, seed {shown['seed']}; row = "
                "index in the pool; surest first):",
                "",
                "| # | row | given | suggested | score | excerpt |",
                "|---:|---:|---|---|---:|---|",
            ]
            for t in shown["top"]:
                text = t.get("excerpt", "").replace("|", "/").replace("<", "&lt;")
                lines.append(
                    f"| {t['rank']} | {t['row']} | {t['given']} | {t['suggested']} | {t['score']:.3f} | {text} |"
                )
        lines.append("")
    return lines


def render_page(pages: dict[str, list[dict[str, Any]]]) -> list[str]:
    """The labelling page's click latency and kill -9 records (``omnifuse bench label-page``), latest first."""
    runs = sorted(
        (r for records in pages.values() for r in records), key=lambda r: r["started"], reverse=True
    )
    if not runs:
        return []
    lines = [
        "#### label-page",
        "",
        "| run | clicks | answer ms: median / p95 / max | click (answer + next) ms: median / p95 / max | kill -9: "
        "answers acknowledged → kept after restart (lost) | load average before / after | commit | hardware |",
        "|---|---:|---|---|---|---|---|---|",
    ]
    for r in runs:
        a, c, k = r["answer_ms"], r["click_ms"], r["kill"]
        hardware = r.get("hardware") or {}
        cells = [
            r["label"],
            str(r["clicks"]),
            f"{a['median']:g} / {a['p95']:g} / {a['max']:g}",
            f"{c['median']:g} / {c['p95']:g} / {c['max']:g}",
            f"{k['acknowledged']} → {k['kept_after_restart']} ({k['lost']})",
            " / ".join(f"{v:g}" for v in r.get("load_average", [])) or "—",
            ((r.get("commit") or {}).get("sha") or "?")[:7],
            f"{hardware.get('cpu', '?')}, {hardware.get('cores', '?')} cores",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def render(results: str | Path) -> str:
    """The generated labelling section (writing each loop's curves PNG beside its records)."""
    results = Path(results)
    loops, audits = latest(results, "label-loop"), latest(results, "label-audit")
    pages = _all(results, "label-page")
    if not loops and not audits and not pages:
        return "_No labelling benchmark records yet: run `omnifuse bench label-loop-fsdd --seeds 3`._"
    for name, records in loops.items():
        plot(name, records, results / name)
    note = (
        "Generated by `omnifuse bench` from the `label-loop`, `label-audit` and `label-page` records in "
        f"`{results.name}/` (loops and audits: each one's latest invocation, accuracy % mean ± std over seeds)."
    )
    body = [*render_loops(loops, f"{results.name}/"), *render_audits(audits), *render_page(pages)]
    return "\n".join([note, "", *body]).rstrip()


def update_labelling(results: str | Path, path: str | Path) -> None:
    """Rewrite RESULTS.md's labelling region (appended at the end when the markers are missing)."""
    from omnifuse.bench.recorder import replace_region

    path = Path(path)
    body = render(results)
    # no records yet: only an existing region is rewritten (a RESULTS.md without labelling runs stays as it is)
    found = latest(results, "label-loop") or latest(results, "label-audit") or _all(results, "label-page")
    replace_region(path, BEGIN, END, body, path.read_text(encoding="utf-8") if found else None)
