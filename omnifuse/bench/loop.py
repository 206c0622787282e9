"""The labelling benchmarks: ``omnifuse bench NAME`` for a ``[loops.NAME]`` or ``[audits.NAME]`` table of
``suites.toml``.

- A **loop** simulates train -> ``label next`` -> label -> train on a data set's frozen pretrained features, or
  with ``features = "tfidf"`` on its texts' tf-idf vectors (:mod:`omnifuse.label.simulate`): every strategy,
  ``random`` included, on the same seeded start per seed; one record per strategy and seed with accuracy against
  the number of labels.
- An **audit** flips a share of the pool's labels (uniformly, or between class pairs; or none), computes
  out-of-fold probabilities by k-fold cross-fitting, and scores the rows flagged by omnifuse's confident learning
  (:func:`omnifuse.label.confident.find_issues`) and by ``cleanlab.filter.find_label_issues`` on the same
  probabilities: one record per noise and seed, with precision and recall, and the top flagged rows.

Records: ``<results>/<name>/<timestamp>-<label>-seed<k>.json`` (``kind`` ``label-loop`` / ``label-audit``, left out
of the training tables); :mod:`omnifuse.bench.loop_report` renders them and the curves' PNG.

>>> run_labelling("label-loop-fsdd", seeds=3)   # as `omnifuse bench label-loop-fsdd --seeds 3`
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from omnifuse.bench.suites import SUITES_FILE
from omnifuse.errors import OmnifuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KINDS = {"loops": "label-loop", "audits": "label-audit"}
_KEYS = {
    "loops": (
        "preset",
        "overrides",
        "pool",
        "eval",
        "strategies",
        "start",
        "batch",
        "rounds",
        "c",
        "head",
        "features",
        "pseudo",
        "pseudo_weight",
    ),
    "audits": ("preset", "overrides", "pool", "noise", "folds", "top", "c"),
}
_NOISE_KEYS = ("label", "fraction", "pairs")
# a loop's features: "encoder", the preset's frozen pretrained encoders' (standardised); "tfidf", the text
# modalities' tf-idf vectors (sparse, the head's input) with an SVD embedding for the diversity strategies
# (omnifuse.label.simulate.tfidf_features)
FEATURES = ("encoder", "tfidf")
TFIDF_ENCODER = "tf-idf of words and word pairs (100,000, fitted on the pool; not pretrained)"
# a loop's settings and their defaults, kept in each record's "loop"
LOOP_DEFAULTS = (("start", 0.01), ("batch", 0.01), ("rounds", 9), ("pseudo", 0.0), ("pseudo_weight", 0.5))
EXCERPT = 200  # characters of a text kept in an audit record's top rows


def _number(table: dict[str, Any], key: str, where: str, bound: str, meaning: str) -> float:
    """``table[key]`` (its :data:`LOOP_DEFAULTS` value where absent), checked to be a number ``bound`` (">= 0" or
    "> 0"; a boolean is not a number here)."""
    value = table.get(key, dict(LOOP_DEFAULTS)[key])
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or value < 0 or (bound == "> 0" and value == 0):
        raise OmnifuseError(f"Expected {key} in {where} as a number {bound} ({meaning}). Received: {value!r}")
    return value


def load_labelling() -> dict[str, dict[str, Any]]:
    """Every ``[loops.NAME]`` and ``[audits.NAME]`` of suites.toml, checked, each with its ``kind``."""
    from omnifuse.label.next import parse_strategy

    data = tomllib.loads(SUITES_FILE.read_text(encoding="utf-8"))
    out = {}
    for section, kind in KINDS.items():
        for name, table in data.get(section, {}).items():
            where = f"[{section}.{name}] of {SUITES_FILE.name}"
            extra = [k for k in table if k not in _KEYS[section]]
            if extra:
                raise OmnifuseError(
                    f"Unknown key {extra[0]!r} in {where}. Valid keys: {', '.join(_KEYS[section])}"
                )
            if not isinstance(table.get("preset"), str):
                raise OmnifuseError(f"Expected a preset in {where}. Received: {table.get('preset')!r}")
            if section == "loops":
                from omnifuse.label.simulate import HEADS

                if table.get("head", "logistic") not in HEADS:
                    raise OmnifuseError(
                        f"Expected head in {where} as one of {', '.join(HEADS)}. Received: {table['head']!r}"
                    )
                if table.get("features", "encoder") not in FEATURES:
                    raise OmnifuseError(
                        f"Expected features in {where} as one of {', '.join(FEATURES)}. "
                        f"Received: {table['features']!r}"
                    )
                if table.get("features") == "tfidf" and table.get("head", "logistic") != "logistic":
                    raise OmnifuseError(
                        f"Expected the logistic head in {where}: features = 'tfidf' are sparse."
                    )
                pseudo = _number(
                    table, "pseudo", where, ">= 0", "pseudo-labelled pool rows per revealed label"
                )
                _number(table, "pseudo_weight", where, "> 0", "a pseudo-label's weight against a label's 1")
                if pseudo and table.get("head", "logistic") != "logistic":
                    raise OmnifuseError(
                        f"Expected the logistic head in {where}: pseudo-labels train that head."
                    )
                if table.get("features") == "tfidf" and "badge" in table.get("strategies", []):
                    raise OmnifuseError(
                        f"Expected no 'badge' in {where}: with features = 'tfidf' the diversity strategies read "
                        "an SVD embedding, not the head's input that badge needs."
                    )
            for strategy in table.get("strategies", []):
                try:
                    parse_strategy(strategy)
                except OmnifuseError as e:
                    raise OmnifuseError(f"In {where}: {e}") from None
            for noise in table.get("noise", []):
                bad = [k for k in noise if k not in _NOISE_KEYS]
                if bad or "label" not in noise:
                    raise OmnifuseError(
                        f"Expected each noise of {where} as {{ label, fraction, pairs? }}. Received: {noise!r}"
                    )
            out[name] = {"kind": kind, "pool": ["train"], "eval": "test", "overrides": [], "c": 1.0, **table}
    return out


def _features(spec: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """The pool (the spec's ``pool`` splits joined) and the features it is scored on (its ``eval`` split, under the
    keys ``test`` and ``test_labels``) of the spec's preset, standardised."""
    from omnifuse.bench.frozen import split_features
    from omnifuse.label.simulate import standardise, tfidf_features

    tfidf = spec.get("features", "encoder") == "tfidf"
    found = split_features(spec["preset"], spec["overrides"], data_dir, encode=not tfidf)
    splits = found["splits"]
    scored = spec.get("eval", "test")
    missing = [s for s in [*spec["pool"], scored] if s not in splits]
    if missing:
        raise OmnifuseError(
            f"Expected split {missing[0]!r} in {spec['preset']!r}. Received: {', '.join(splits)}"
        )
    parts = [splits[s] for s in spec["pool"]]

    def joined(key: str) -> dict[str, np.ndarray]:
        return {m: np.concatenate([p[key][m] for p in parts]) for m in parts[0][key]}

    texts = joined("texts")
    out = {
        "labels": np.concatenate([p["y"] for p in parts]),
        "masks": joined("masks"),
        "texts": texts,
        "test_labels": splits[scored]["y"],
        "classes": found["classes"],
        "encoders": found["encoders"],
    }
    if tfidf:
        if not texts:
            raise OmnifuseError(f"Expected a text modality in {spec['preset']!r} for features = 'tfidf'.")
        out["pool"], out["test"], out["embedding"] = {}, {}, {}
        for m in texts:
            (out["pool"][m], out["test"][m]), out["embedding"][m] = tfidf_features(
                texts[m], splits[scored]["texts"][m]
            )
        out["masks"] = {m: out["masks"].get(m, np.ones(len(out["labels"]), np.float32)) for m in texts}
        out["encoders"] = {m: TFIDF_ENCODER for m in texts}
        return out
    out["pool"], out["test"] = standardise(joined("x"), splits[scored]["x"])
    return out


def _header(spec: dict[str, Any], data: dict[str, Any], name: str, invocation: str) -> dict[str, Any]:
    from omnifuse.bench.recorder import environment

    return {
        **environment(),
        "name": name,
        "kind": spec["kind"],
        "invocation": invocation,
        "preset": spec["preset"],
        "overrides": list(spec["overrides"]),
        "encoders": data["encoders"],
        "head": (
            "a Keras dense softmax layer (AdamW, the epoch of least loss on a tenth of the revealed labels kept) "
            "on standardised frozen features"
            if spec.get("head") == "keras"
            else f"logistic regression (L2, C={spec['c']:g}) on "
            + (
                "the tf-idf vectors; kcenter, hybrid and typiclust spread over their 256-d SVD"
                if spec.get("features") == "tfidf"
                else "standardised frozen features"
            )
            + (
                f"; also trained on the pool's {spec['pseudo']:g} x as many most confident pseudo-labels as "
                f"revealed labels (weight {spec.get('pseudo_weight', dict(LOOP_DEFAULTS)['pseudo_weight']):g}, "
                "refreshed twice)"
                if spec.get("pseudo")
                else ""
            )
        ),
        "pool": {"splits": list(spec["pool"]), "size": int(len(data["labels"]))},
        "eval_split": spec.get("eval", "test"),
        "test_size": int(len(data["test_labels"])),
        "classes": data["classes"],
    }


def run_loop(
    spec: dict[str, Any], data: dict[str, Any], seed: int, head: dict[str, Any], echo
) -> list[dict[str, Any]]:
    """One seed of a loop: a record per strategy."""
    import time

    from omnifuse.label.simulate import simulate

    records = []
    settings = {k: spec.get(k, d) for k, d in LOOP_DEFAULTS}
    for strategy in spec.get("strategies", ["random", "margin"]):
        began = time.perf_counter()
        curve = simulate(
            data["pool"],
            data["labels"],
            data["test"],
            data["test_labels"],
            strategy,
            seed=seed,
            **settings,
            classes=len(data["classes"]),
            pool_masks=data["masks"],
            c=spec["c"],
            head=spec.get("head", "logistic"),
            embedding=data.get("embedding"),
        )
        last = curve[-1]
        echo(
            f"[bench] {head['name']}: {strategy}, seed {seed}: {100 * curve[0]['accuracy']:.2f}% at "
            f"{curve[0]['labels']} labels -> {100 * last['accuracy']:.2f}% at {last['labels']}"
        )
        records.append(
            {
                **head,
                "label": strategy,
                "seed": seed,
                "loop": settings,
                "curve": curve,
                "wall_seconds": round(time.perf_counter() - began, 3),
            }
        )
    return records


def _excerpt(text: str) -> str:
    text = " ".join(str(text).split())
    return text[:EXCERPT] + ("…" if len(text) > EXCERPT else "")


def run_audit(
    spec: dict[str, Any], data: dict[str, Any], seed: int, head: dict[str, Any], echo
) -> list[dict[str, Any]]:
    """One seed of an audit: a record per noise, omnifuse's flags beside cleanlab's on the same probabilities."""
    import time

    from cleanlab.filter import find_label_issues

    from omnifuse.label.audit import find_issues
    from omnifuse.label.simulate import _joined, flip_labels, out_of_fold, precision_recall

    classes = data["classes"]
    x = _joined(data["pool"])
    records = []
    for noise in spec.get("noise", [{"label": "clean", "fraction": 0.0}]):
        began = time.perf_counter()
        pairs = [(classes.index(a), classes.index(b)) for a, b in noise.get("pairs", [])]
        noisy, flipped = flip_labels(data["labels"], noise.get("fraction", 0.0), seed, pairs or None)
        probs = out_of_fold(x, noisy, spec.get("folds", 5), seed, spec["c"])
        ours, suggested, scores = find_issues(probs, noisy, "off_diagonal")
        pruned = find_issues(probs, noisy, "prune_by_noise_rate")[0]
        theirs = np.flatnonzero(find_label_issues(noisy, probs))
        result = {
            "omnifuse": precision_recall(ours, flipped),
            "omnifuse-pbnr": precision_recall(pruned, flipped),
            "cleanlab": precision_recall(theirs, flipped),
        }
        top = []
        texts = next(iter(data["texts"].values()), None)
        for rank, (i, s, score) in enumerate(zip(ours[: spec.get("top", 0)], suggested, scores), 1):
            row = {"rank": rank, "row": int(i), "given": classes[noisy[i]], "suggested": classes[s]}
            row |= {"score": round(float(score), 4), "flipped": bool(np.isin(i, flipped))}
            if texts is not None:
                row["excerpt"] = _excerpt(texts[i])
            top.append(row)
        echo(
            f"[bench] {head['name']}: {noise['label']}, seed {seed}: {len(flipped)} flipped; omnifuse "
            f"P {result['omnifuse']['precision']:.3f} R {result['omnifuse']['recall']:.3f}, cleanlab "
            f"P {result['cleanlab']['precision']:.3f} R {result['cleanlab']['recall']:.3f}"
        )
        records.append(
            {
                **head,
                "label": noise["label"],
                "seed": seed,
                "noise": {"fraction": noise.get("fraction", 0.0), "pairs": noise.get("pairs", [])},
                "flipped": int(len(flipped)),
                "folds": spec.get("folds", 5),
                "oof_accuracy": float((probs.argmax(1) == noisy).mean()),
                "oof_accuracy_true": float((probs.argmax(1) == data["labels"]).mean()),
                "results": result,
                "top": top,
                "wall_seconds": round(time.perf_counter() - began, 3),
            }
        )
    return records


def run_labelling(
    name: str,
    seeds: int = 3,
    data_dir: str | None = None,
    results: str | Path = Path("benchmarks") / "results",
    echo: Callable[[str], None] = print,
    first_seed: int = 0,
    overrides: Sequence[str] = (),
    threads: int | None = 1,
) -> list[dict[str, Any]]:
    """Run the labelling benchmark ``name`` for seeds first_seed.., write its records and regenerate the tables
    (``threads``: BLAS / OpenMP threads of the fits and k-means; None: the libraries' default)."""
    from threadpoolctl import threadpool_limits

    from omnifuse.bench.recorder import stamp, write_json
    from omnifuse.bench.report import update_results

    specs = load_labelling()
    if name not in specs:
        raise OmnifuseError(f"Expected a labelling benchmark. Received: {name!r}. Known: {', '.join(specs)}")
    spec = {**specs[name], "overrides": [*specs[name]["overrides"], *overrides]}
    data = _features(spec, data_dir)
    invocation = stamp()
    head = _header(spec, data, name, invocation)
    folder = Path(results) / name
    run = run_loop if spec["kind"] == "label-loop" else run_audit
    records = []
    # one BLAS / OpenMP thread: k-means and the fits spin-wait on a machine whose cores are busy (3x slower here)
    with threadpool_limits(threads):
        for seed in range(first_seed, first_seed + seeds):
            for record in run(spec, data, seed, head, echo):
                # "typiclust_hybrid:9" -> "typiclust_hybrid-9" in the file's name: a colon is no file name on Windows
                name = record["label"].replace(":", "-")
                write_json(folder / f"{stamp()}-{name}-seed{seed}.json", record)
                records.append(record)
    path = update_results(results)
    echo(f"[bench] {len(records)} record(s) in {folder}; tables regenerated in {path}")
    return records
