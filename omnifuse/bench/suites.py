"""What ``omnifuse bench NAME`` runs: the suites of ``suites.toml`` (data), a preset or .toml config, and the
references a run is compared with (``--compare``).

>>> [e.label for e in resolve("brain-mri-cv:fold0,fold1")]
['fold0', 'fold1']
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from omnifuse.errors import OmnifuseError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

SUITES_FILE = resources.files("omnifuse") / "bench" / "suites.toml"
REFERENCE_DIR = Path("benchmarks") / "reference"
_SUITE_KEYS = ("preset", "pooled", "variants")
_VARIANT_KEYS = ("label", "preset", "base", "overrides", "pretrain")


@dataclass(frozen=True)
class Entry:
    """One kind of run: an omnifuse preset (or .toml) with overrides, or a reference script."""

    label: str
    kind: str  # "omnifuse" | "reference"
    target: str  # preset name or .toml path; or the script's path
    overrides: tuple[str, ...] = ()
    # first `omnifuse pretrain` the same config, then train it from that encoder (model.<kind>.init)
    pretrain: bool = False


@dataclass(frozen=True)
class Suite:
    """A named list of runs benchmarked together. ``pooled``: its entries are the folds of one protocol (the tables
    add a row pooling them)."""

    name: str
    entries: tuple[Entry, ...]
    pooled: bool = False


def _unknown(where: str, table: dict[str, Any], valid: tuple[str, ...]) -> None:
    extra = [k for k in table if k not in valid]
    if extra:
        raise OmnifuseError(
            f"Unknown key {extra[0]!r} in {where} of {SUITES_FILE.name}. Valid keys: {', '.join(valid)}"
        )


def _strings(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise OmnifuseError(f"Expected {where} to be a list of 'key=value' strings. Received: {value!r}")
    return tuple(value)


def _suite(name: str, table: dict[str, Any], bases: dict[str, tuple[str, ...]]) -> Suite:
    where = f"[suites.{name}]"
    if not isinstance(table, dict):
        raise OmnifuseError(f"Expected {where} to be a table. Received: {table!r}")
    _unknown(where, table, _SUITE_KEYS)
    if not isinstance(table.get("pooled", False), bool):
        raise OmnifuseError(f"Expected {where} pooled to be true or false. Received: {table['pooled']!r}")
    variants = table.get("variants")
    if not isinstance(variants, list) or not variants:
        raise OmnifuseError(
            f"Expected {where} variants to be a non-empty list of tables. Received: {variants!r}"
        )
    entries: list[Entry] = []
    for i, variant in enumerate(variants):
        at = f"{where} variant {i + 1}"
        if not isinstance(variant, dict):
            raise OmnifuseError(f"Expected {at} to be a table {{ label = ..., ... }}. Received: {variant!r}")
        _unknown(at, variant, _VARIANT_KEYS)
        label, preset = variant.get("label"), variant.get("preset", table.get("preset"))
        if not isinstance(label, str) or not label or label in {e.label for e in entries}:
            raise OmnifuseError(f"Expected {at} to have a label of its own. Received: label = {label!r}")
        if not isinstance(preset, str) or not preset:
            raise OmnifuseError(
                f"Expected a preset for {at} ({label!r}): its own or the suite's. Received: {preset!r}"
            )
        base = variant.get("base")
        if base is not None and base not in bases:
            raise OmnifuseError(
                f"Expected {at} ({label!r}) base to name a list of [bases]. Received: {base!r}. "
                f"Bases: {', '.join(bases) or '(none)'}"
            )
        overrides = (*bases.get(base, ()), *_strings(f"{at} overrides", variant.get("overrides", [])))
        pretrain = variant.get("pretrain", False)
        if not isinstance(pretrain, bool):
            raise OmnifuseError(
                f"Expected {at} ({label!r}) pretrain to be true or false. Received: {pretrain!r}"
            )
        entries.append(Entry(label, "omnifuse", preset, overrides, pretrain))
    return Suite(name, tuple(entries), table.get("pooled", False))


def _load() -> dict[str, Any]:
    try:
        data = tomllib.loads(SUITES_FILE.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise OmnifuseError(f"Expected valid TOML in {SUITES_FILE.name}. Received: {exc}") from None
    _unknown(
        "the top level", data, ("bases", "references", "suites", "loops", "audits")
    )  # labelling ones: bench/loop.py
    return data


def reference_labels() -> dict[str, str]:
    """``[references]`` of ``suites.toml``: a reference script's label where it is not ``keras-<script>``."""
    labels = _load().get("references", {})
    if not isinstance(labels, dict) or not all(isinstance(v, str) and v for v in labels.values()):
        raise OmnifuseError(
            f"Expected [references] of {SUITES_FILE.name} to map script names to labels. Received: {labels!r}"
        )
    return labels


def load_suites() -> dict[str, Suite]:
    """Every suite of ``suites.toml``, checked (unknown keys, missing labels or presets, unknown bases); preset
    names and override keys are checked when a run loads its config (and by the tests, for every suite)."""
    data = _load()
    bases = {k: _strings(f"[bases] {k}", v) for k, v in data.get("bases", {}).items()}
    return {name: _suite(name, table, bases) for name, table in data.get("suites", {}).items()}


def bench_name(name: str) -> str:
    """The folder name of a benchmark: the preset or suite name (``SUITE:LABELS`` is its suite's), or a config
    file's stem."""
    if name.endswith((".toml", ".py")):
        return Path(name).stem
    suite = name.partition(":")[0]
    return suite if suite in load_suites() else name


def resolve(name: str) -> list[Entry]:
    """The runs that NAME stands for: a suite's entries (``SUITE:LABEL,LABEL`` for some of them), or one preset /
    .toml config."""
    from omnifuse.config import presets

    suites = load_suites()
    suite, _, labels = name.partition(":")
    if labels and suite in suites:
        wanted = [label.strip() for label in labels.split(",") if label.strip()]
        entries = {e.label: e for e in suites[suite].entries}
        unknown = [label for label in wanted if label not in entries]
        if unknown or not wanted:
            raise OmnifuseError(
                f"Expected labels of suite {suite!r} after the colon. Received: {labels!r}. "
                f"Labels: {', '.join(entries)}"
            )
        return [entries[label] for label in wanted]
    if name in suites:
        return list(suites[name].entries)
    if name in presets() or (name.endswith(".toml") and Path(name).is_file()):
        return [Entry(bench_name(name), "omnifuse", name)]
    raise OmnifuseError(
        f"Expected a preset, a .toml config, a suite, 'serve', 'reliability' or 'report'. Received: {name!r}. "
        f"Presets: {', '.join(presets())}. Suites: {', '.join(sorted(suites))}"
    )


def _repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def reference_scripts() -> list[Path]:
    """The plain-Keras reference scripts (``benchmarks/reference/*.py`` here or beside the package)."""
    for root in (Path.cwd(), _repo_root()):
        folder = root / REFERENCE_DIR
        if folder.is_dir():
            return sorted(p for p in folder.glob("*.py") if not p.name.startswith("_"))
    return []


def resolve_reference(ref: str) -> list[Entry]:
    """A reference: a script (``cifar10_cnn``, ``cifar10_cnn.py`` or a path to a .py file; labelled
    ``keras-<script>`` unless ``[references]`` names it otherwise), a preset, a suite, or one entry of a suite as
    ``SUITE:LABEL``."""
    scripts = {p.stem: p for p in reference_scripts()}
    labels = reference_labels()
    path = Path(ref)
    if path.suffix == ".py" and path.is_file():
        return [Entry(labels.get(path.stem, f"keras-{path.stem}"), "reference", str(path.resolve()))]
    if ref.removesuffix(".py") in scripts:
        script = scripts[ref.removesuffix(".py")]
        return [Entry(labels.get(script.stem, f"keras-{script.stem}"), "reference", str(script))]
    suites = load_suites()
    suite, _, label = ref.partition(":")
    if label and suite in suites:
        chosen = [e for e in suites[suite].entries if e.label == label]
        if not chosen:
            labels = ", ".join(e.label for e in suites[suite].entries)
            raise OmnifuseError(
                f"Expected a label of suite {suite!r} in --compare. Received: {label!r}. Labels: {labels}"
            )
        return chosen
    try:
        return resolve(ref)
    except OmnifuseError:
        raise OmnifuseError(
            f"Expected --compare to name a reference script, a .py file, a preset or a suite. Received: {ref!r}. "
            f"Reference scripts: {', '.join(scripts) or '(none found)'}"
        ) from None
