"""The package's import graph: every arrow points down (no cycle), and the lower layers never import the upper.

Imports are read from the source with ``ast``, function-level ones included (a deferred import still ties two
modules together), so this runs in milliseconds and needs no TensorFlow."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "omnifuse"

# what data, encoders, fusions, modalities, weights and the base modules must never reach for
UPPER = (
    "omnifuse.model",
    "omnifuse.modelio",
    "omnifuse.training",
    "omnifuse.pipeline",
    "omnifuse.evaluation",
)
UPPER += ("omnifuse.bench", "omnifuse.bench_report", "omnifuse.serving", "omnifuse.cli", "omnifuse.predictor")
LOWER = ("omnifuse.data", "omnifuse.encoders", "omnifuse.fusion", "omnifuse.modalities", "omnifuse.weights")
LOWER += ("omnifuse.names", "omnifuse.rundir", "omnifuse.errors", "omnifuse.metrics")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str | None:
    """The omnifuse module ``name`` is, or is inside (``omnifuse.pipeline.stream`` -> ``omnifuse.pipeline``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    # the bare package is a lazy facade (its names import their module on first use): importing it is no arrow
    return name if name and name != "omnifuse" else None


def imports(module: str) -> set[str]:
    """The omnifuse modules ``module`` imports, anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(filter(None, (_resolve(alias.name) for alias in node.names)))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            if not base.startswith("omnifuse"):
                continue
            for alias in node.names:  # `from omnifuse import pipeline` imports the submodule
                target = (
                    _resolve(f"{base}.{alias.name}") if f"{base}.{alias.name}" in MODULES else _resolve(base)
                )
                if target:
                    found.add(target)
    found.discard(module)
    return found


GRAPH = {module: imports(module) for module in MODULES}


def _cycle() -> list[str] | None:
    """One import cycle of the graph as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    path: list[str] = []

    def visit(module):
        state[module] = 1
        path.append(module)
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                return path[path.index(target) :] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[module] = 2
        path.pop()
        return None

    for module in sorted(GRAPH):
        if module not in state:
            found = visit(module)
            if found:
                return found
    return None


def test_the_reader_sees_function_level_and_from_package_imports():
    # the graph is only as good as the reader: check it on modules whose imports are known
    assert "omnifuse.errors" in GRAPH["omnifuse.rundir"]
    assert "omnifuse.errors" in GRAPH["omnifuse.label.audit"]
    assert "omnifuse.config" in GRAPH["omnifuse.label.audit"]  # imported inside a function
    assert "omnifuse.training" in GRAPH["omnifuse.cli"]  # imported inside a command
    assert GRAPH["omnifuse.errors"] == set()


def test_the_import_graph_has_no_cycle():
    assert _cycle() is None, " -> ".join(_cycle())


def _within(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, LOWER)))
def test_lower_layers_do_not_import_upper_ones(module):
    upward = sorted(t for t in GRAPH[module] if _within(t, UPPER) and not _within(t, LOWER))
    assert not upward, f"{module} imports {', '.join(upward)}"


@pytest.mark.parametrize("module", ["omnifuse.names", "omnifuse.errors"])
def test_base_modules_import_nothing_from_omnifuse(module):
    assert GRAPH[module] == set()
