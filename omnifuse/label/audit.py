"""Which labels look wrong: out-of-fold probabilities by k-fold cross-fitting, then confident learning; and which
samples are duplicates.

1. **Cross-fitting**: the labelled rows (every split of the CSV or folder) are cut into ``folds`` stratified folds;
   for each, a model is trained on the other folds (with a run's config, a preset or a config file) and predicts
   the fold it never saw. Every row then has probabilities from a model its own label did not train.
2. **Confident learning** (Northcutt et al., 2021): class j's threshold t_j is the mean probability of j over the
   rows labelled j; a row "confidently belongs" to the likeliest class among those whose probability reaches their
   threshold. The confident joint counts (given label, confident class). By default (pruning by noise rate) the
   joint, calibrated to the label counts, says how many rows of each (given i, true j) pair there are, and that
   many rows labelled i with the largest p(j) - p(i) are flagged (never one the model agrees with); with
   ``method="off_diagonal"`` only the rows off its diagonal are. Flags are ranked by how sure the finding is:
   p(suggested class) - p(given label).
3. **Duplicates** (:mod:`omnifuse.label.duplicates`): exact and near-duplicate samples, within and across splits.

Writes ``issues.csv`` (flagged rows, surest first), ``duplicates.csv``, ``report.md`` (the top rows shown: image
thumbnails, text excerpts) and ``probabilities.csv`` (every row's out-of-fold probabilities).

>>> omnifuse.label.audit("pets.csv", label="species", folds=5, out="audit/")["issues"][:3]
"""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.data import Split
from omnifuse.errors import OmnifuseError
from omnifuse.label.confident import METHODS, confident_joint, find_issues  # noqa: F401  (re-exported)
from omnifuse.label.duplicates import duplicate_groups
from omnifuse.modalities import held_as
from omnifuse.modalities import kind as modality_kind
from omnifuse.rundir import atomic_write_text

SHOWN = 20  # flagged rows shown in the report
EXCERPT = 160  # characters of a text shown in the report


def _whole(ds) -> tuple[Split, np.ndarray]:
    """Every split of ``ds`` as one, rows in the order of their ids, and each row's split name."""
    names = [s for s in ("train", "val", "test") if s in ds.splits]
    parts = [ds.splits[s] for s in names]
    merged = Split(
        inputs={k: np.concatenate([p.inputs[k] for p in parts]) for k in parts[0].inputs},
        labels={k: np.concatenate([p.labels[k] for p in parts]) for k in parts[0].labels},
        ids=np.concatenate([p.ids for p in parts]),
        masks={k: np.concatenate([p.masks[k] for p in parts]) for k in parts[0].masks},
    )
    split_of = np.concatenate([np.full(len(p), s) for s, p in zip(names, parts)])
    order = np.array(sorted(range(len(merged)), key=lambda k: _sort_key(merged.ids[k])), np.int64)
    return merged.take(order), split_of[order]


def _sort_key(row_id) -> tuple:
    return (0, int(row_id), "") if str(row_id).isdigit() else (1, 0, str(row_id))


def _raw_rows(data: Path, ds, label: str) -> tuple[list[str], dict[str, str], dict[str, dict[str, str]]]:
    """The columns used, their kinds and each row's cells (by id, files as absolute paths), to write fold CSVs."""
    from omnifuse.data.schema import read_csv as _read_csv

    if data.is_file():
        kinds = dict(ds.meta["columns"])
        header, lines = _read_csv(data)
        rows = {}
        for line, cells in lines:
            values = dict(zip(header, cells))
            row = {c: values.get(c, "") for c in kinds}
            for c, kind in kinds.items():
                if held_as(kind) == "path" and row[c].strip():
                    row[c] = str((data.parent / row[c].strip()).resolve())
            rows[str(line)] = row
        return list(kinds), kinds, rows
    whole, _ = _whole(ds)
    kinds = {m: k for m, k in ds.modalities.items()}
    rows = {}
    for i, row_id in enumerate(whole.ids.tolist()):
        row = {}
        stem = data / row_id
        for m, kind in kinds.items():
            if held_as(kind) == "text":
                present = whole.masks.get(m, np.ones(len(whole)))[i] > 0
                row[m] = str(whole.inputs[m][i]) if present else ""
            else:
                suffixes = modality_kind(kind, m).SUFFIXES
                found = [f for f in stem.parent.glob(f"{stem.name}.*") if f.suffix.lower() in suffixes]
                found = found or ([stem] if stem.is_file() and stem.suffix.lower() in suffixes else [])
                row[m] = str(found[0].resolve()) if found else ""
        rows[str(row_id)] = row
    return list(kinds), kinds, rows


def _write_csv(path: Path, columns: list[str], rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def _fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    smallest = np.bincount(labels).min() if len(labels) else 0
    if folds < 2 or len(labels) < folds:
        raise OmnifuseError(
            f"Expected --folds between 2 and the number of rows ({len(labels)}). Received: {folds}"
        )
    if smallest < folds:
        from sklearn.model_selection import KFold

        splitter = KFold(folds, shuffle=True, random_state=seed).split(labels)
    else:
        splitter = StratifiedKFold(folds, shuffle=True, random_state=seed).split(labels, labels)
    out = np.zeros(len(labels), np.int64)
    for f, (_, test) in enumerate(splitter):
        out[test] = f
    return out


def out_of_fold(
    data: Path, ds, label: str, folds: int, config: Any, overrides: list[str] | dict, seed: int, work: Path
) -> tuple[np.ndarray, np.ndarray, Split, np.ndarray]:
    """Each row's probabilities from the model of the folds it is not in; also the rows, labels and splits."""
    from omnifuse import train
    from omnifuse.config import Config, load_config
    from omnifuse.label.pool import predict_pool, read_pool
    from omnifuse.predictor import Predictor

    whole, split_of = _whole(ds)
    task = next(iter(ds.tasks))
    labels, classes = whole.labels[task], ds.tasks[task]
    fold = _fold_of(labels, folds, seed)
    columns, kinds, raw = _raw_rows(data, ds, label)
    probs = np.zeros((len(whole), len(classes)), np.float32)
    base = config if isinstance(config, Config) else load_config(config or "table")
    for f in range(folds):
        rows = [
            dict(raw[str(i)], **{"__label": classes[y], "split": "test" if k == f else "train"})
            for i, y, k in zip(whole.ids.tolist(), labels.tolist(), fold.tolist())
        ]
        fold_csv = work / f"fold{f}.csv"
        _write_csv(fold_csv, [*columns, "__label", "split"], rows)
        cfg = base.replace(
            {
                "name": f"fold{f}",
                "data.sets": ["table"],
                "data.csv": str(fold_csv),
                "data.folder": "",
                "data.label": "__label",
                "data.kinds": {c: k for c, k in kinds.items()},
                "data.allow_outside_paths": True,
                "train.seed": seed + f,
                "track.tensorboard": False,  # the fold runs are removed after the audit: no logs to keep
            }
        ).replace(overrides or [])
        run = train(cfg, runs_root=work / "runs")
        held = [i for i, k in enumerate(fold.tolist()) if k == f]
        pool_csv = work / f"fold{f}_held.csv"
        _write_csv(pool_csv, columns, [raw[str(whole.ids[i])] for i in held])
        predictor = Predictor(run)
        fold_classes = predictor.tasks[next(iter(predictor.tasks))]
        out = predict_pool(predictor, read_pool(pool_csv))[next(iter(predictor.tasks))]
        for j, c in enumerate(fold_classes):  # a class missing from a fold's training rows stays at 0
            probs[held, classes.index(c)] = out[:, j]
    return probs, labels, whole, split_of


def _load(data: Path, label: str, kinds: dict[str, str] | None):
    from omnifuse.data.table import load_csv, load_folder

    if data.is_file():
        return load_csv(data, label, kinds=kinds, test_fraction=0.2)
    if data.is_dir():
        return load_folder(data, label=label or "class")
    raise OmnifuseError(
        f"Expected DATA to be a CSV file or a folder. Received: '{data}', which does not exist"
    )


def audit(
    data: str | Path,
    label: str = "",
    folds: int = 5,
    config: Any = None,
    run: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    out: str | Path = "audit",
    kinds: dict[str, str] | None = None,
    seed: int = 0,
    duplicate_threshold: float = 0.95,
    method: str = "prune_by_noise_rate",
) -> dict[str, Any]:
    """Audit the labels of ``data`` (a CSV with ``label`` column, or a folder root/<class>/<files>).

    The cross-fitted models use ``run``'s config (a run directory), else ``config`` (a preset, a .toml file or a
    Config; default ``"table"``), with ``overrides`` (keep them small: ``folds`` models are trained); ``method``:
    which rows are flagged (:func:`find_issues`). Returns
    ``issues`` (dicts: ``id``, ``split``, ``given``, ``suggested``, ``score``, ``p_given``, ``p_suggested``),
    ``duplicates`` (see :func:`omnifuse.label.duplicates.duplicate_groups`), ``confident_joint``, ``classes``,
    ``probabilities`` (N, C) and ``files`` (the CSVs and report written to ``out``).
    """
    if method not in METHODS:
        raise OmnifuseError(f"Expected method {' or '.join(map(repr, METHODS))}. Received: {method!r}")
    data = Path(data).expanduser()
    ds = _load(data, label, kinds)
    if run is not None:
        from omnifuse.config import read_run_config

        config = read_run_config(run)
    task = next(iter(ds.tasks))
    classes = ds.tasks[task]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="audit-", dir=out) as work:
        probs, labels, whole, split_of = out_of_fold(
            data, ds, label, folds, config, overrides or [], seed, Path(work)
        )
    _, joint, _ = confident_joint(probs, labels)
    flagged, suggested, scores = find_issues(probs, labels, method)
    issues = [
        {
            "id": _plain(whole.ids[i]),
            "split": str(split_of[i]),
            "given": classes[labels[i]],
            "suggested": classes[s],
            "score": float(score),
            "p_given": float(probs[i, labels[i]]),
            "p_suggested": float(probs[i, s]),
        }
        for i, s, score in zip(flagged.tolist(), suggested.tolist(), scores.tolist())
    ]
    groups = duplicate_groups(
        whole.inputs,
        whole.masks,
        ds.modalities,
        whole.ids,
        np.array([classes[y] for y in labels]),
        split_of,
        duplicate_threshold,
    )
    files = _write(out, data, ds, whole, split_of, probs, labels, issues, groups, joint, folds, method)
    return {
        "issues": issues,
        "duplicates": groups,
        "confident_joint": joint.tolist(),
        "classes": list(classes),
        "probabilities": probs,
        "ids": [_plain(i) for i in whole.ids],
        "files": files,
    }


def _plain(value):
    return value.item() if hasattr(value, "item") else value


def _csv_text(columns: list[str], rows: list[list[Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return buffer.getvalue()


def _write(
    out, data, ds, whole, split_of, probs, labels, issues, groups, joint, folds, method
) -> dict[str, str]:
    classes = ds.tasks[next(iter(ds.tasks))]
    where = "line" if data.is_file() else "sample"
    files = {
        "issues": out / "issues.csv",
        "duplicates": out / "duplicates.csv",
        "probabilities": out / "probabilities.csv",
        "report": out / "report.md",
    }
    keys = ["id", "split", "given", "suggested", "score", "p_given", "p_suggested"]
    atomic_write_text(
        files["issues"],
        _csv_text([where if k == "id" else k for k in keys], [[_fmt(it[k]) for k in keys] for it in issues]),
    )
    atomic_write_text(
        files["duplicates"],
        _csv_text(
            ["group", f"{where}s", "kind", "splits", "labels", "leak", "conflict"],
            [
                [g, " ".join(map(str, d["ids"])), "exact" if d["exact"] else "near", " ".join(d["splits"])]
                + [" ".join(d["labels"]), d["leak"], d["conflict"]]
                for g, d in enumerate(groups, 1)
            ],
        ),
    )
    atomic_write_text(
        files["probabilities"],
        _csv_text(
            [where, "split", "given", *(f"p_{c}" for c in classes)],
            [
                [_plain(i), s, classes[y], *(f"{p:.6g}" for p in row)]
                for i, s, y, row in zip(whole.ids, split_of, labels, probs)
            ],
        ),
    )
    atomic_write_text(
        files["report"], _report(out, data, ds, whole, issues, groups, joint, folds, where, method)
    )
    return {k: str(v) for k, v in files.items()}


def _fmt(value):
    return f"{value:.4f}" if isinstance(value, float) else value


def _report(out, data, ds, whole, issues, groups, joint, folds, where, method) -> str:
    classes = ds.tasks[next(iter(ds.tasks))]
    n = len(whole)
    lines = [
        f"# Label audit of `{data.name}`",
        "",
        f"{n} labelled rows, {folds}-fold cross-fitted probabilities, confident learning "
        f"({method.replace('_', ' ')}): **{len(issues)} row(s) flagged** ({100 * len(issues) / max(n, 1):.1f}%). "
        "Full lists: `issues.csv`, `duplicates.csv`.",
        "",
        "## Confident joint (rows: given label, columns: the class the row confidently belongs to)",
        "",
        "| given \\ confident | " + " | ".join(classes) + " |",
        "|---|" + "---|" * len(classes),
        *(f"| {c} | " + " | ".join(str(v) for v in row) + " |" for c, row in zip(classes, joint)),
        "",
        f"## Likely label errors (top {min(SHOWN, len(issues))}, surest first)",
        "",
    ]
    if not issues:
        lines.append("None found.")
    else:
        lines += [f"| {where} | split | given | suggested | score | sample |", "|---|---|---|---|---|---|"]
    index = {str(_plain(i)): k for k, i in enumerate(whole.ids)}
    thumbs = out / "thumbs"
    for issue in issues[:SHOWN]:
        k = index[str(issue["id"])]
        shown = []
        for name, kind in sorted(ds.modalities.items()):
            if whole.masks.get(name, np.ones(n))[k] <= 0:
                continue
            stem = str(issue["id"]).replace("/", "_")
            glimpse = modality_kind(kind, name).glimpse(
                whole.inputs[name][k], name, thumbs, stem, chars=EXCERPT
            )
            if glimpse is not None:
                shown.append(glimpse)
        lines.append(
            f"| {issue['id']} | {issue['split']} | {issue['given']} | {issue['suggested']} | "
            f"{issue['score']:.2f} | {'<br>'.join(shown) or '—'} |"
        )
    leaks = [g for g in groups if g["leak"]]
    lines += [
        "",
        f"## Duplicates: {len(groups)} group(s) of {sum(len(g['ids']) for g in groups)} rows; "
        f"{len(leaks)} span splits (leaks), {sum(g['conflict'] for g in groups)} hold different labels",
        "",
    ]
    for g in groups[:SHOWN]:
        tags = (
            ["exact" if g["exact"] else "near"]
            + (["**leak**"] if g["leak"] else [])
            + (["**labels differ**"] if g["conflict"] else [])
        )
        lines.append(
            f"- {where}s {', '.join(map(str, g['ids']))}: {', '.join(tags)}; splits {', '.join(g['splits'])}; "
            f"labels {', '.join(g['labels'])}"
        )
    return "\n".join(lines) + "\n"
