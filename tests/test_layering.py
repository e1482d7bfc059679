"""The package's layers, read from its source: lower layers never import higher ones, sibling
layers never import each other, and no import cycle exists between modules or packages.

Every import counts, including those inside functions (a lazy import is still a dependency).
Layers, from the bottom up:

0. shared types and settings: ``constants``, ``version``, ``errors``, ``labels``,
   ``resampling``, ``contracts``, ``config``, ``settings``, ``console``, ``assets``;
1. ``audio`` and ``model`` (neither imports the other);
2. ``engine``, ``perf`` and ``hf`` (ExHuBERT as transformers classes, built on ``model``);
3. ``tui``, ``session``, ``server``, ``outputs``;
4. ``commands`` and the package's own ``__init__`` (the public API);
5. ``cli``, which hands each command line to one command;
6. ``__main__``, which runs the ``cli``.

Within layers 1-3 a package imports no sibling: the dashboard and the session layer meet only
through the shared types.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT_DIR

PACKAGE = ROOT_DIR / "streamser"

BOTTOM = {
    *("constants", "version", "errors", "labels", "resampling", "contracts", "config"),
    *("settings", "console", "assets"),
}
LAYER_OF: dict[str, int] = {
    **dict.fromkeys(BOTTOM, 0),
    "audio": 1,
    "model": 1,
    "engine": 2,
    "perf": 2,
    "hf": 2,
    "tui": 3,
    "session": 3,
    "server": 3,
    "outputs": 3,
    "commands": 4,
    "cli": 5,
    "__main__": 6,
    "__init__": 4,
}
SIDEWAYS_OK = {0}
"""Layers whose members may import each other: the shared bottom."""


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT_DIR).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1] if len(parts) > 2 else [*parts[:-1], "__init__"]
    return ".".join(parts)


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: its subpackage, or the top-level module's name."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def imports_of(path: Path, module: str) -> set[str]:
    """Every ``streamser`` module this file imports, at any depth of the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "streamser"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            if base.split(".")[0] != "streamser":
                continue
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                found.add(candidate if _is_module(candidate) else base)
    return {m for m in found if m != module}


def _is_module(name: str) -> bool:
    rel = Path(*name.split("."))
    return (ROOT_DIR / rel).with_suffix(".py").exists() or (ROOT_DIR / rel / "__init__.py").exists()


def graph() -> dict[str, set[str]]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        name = module_name(path)
        out[name] = imports_of(path, name)
    return out


GRAPH = graph()


def test_every_unit_has_a_layer() -> None:
    units = {unit_of(m) for m in GRAPH}
    assert units <= set(LAYER_OF), f"modules outside any layer: {sorted(units - set(LAYER_OF))}"


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_imports_point_down(module: str) -> None:
    unit = unit_of(module)
    wrong = []
    for target in sorted(GRAPH[module]):
        if target == "streamser":
            wrong.append(f"{target} (import the module that defines it, not the package)")
            continue
        other = unit_of(target)
        if other == unit:
            continue
        if LAYER_OF[other] > LAYER_OF[unit] or (
            LAYER_OF[other] == LAYER_OF[unit] and LAYER_OF[unit] not in SIDEWAYS_OK
        ):
            wrong.append(f"{target} (layer {LAYER_OF[other]}, from layer {LAYER_OF[unit]})")
    assert not wrong, f"{module} imports upward or sideways: {', '.join(wrong)}"


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_between_modules() -> None:
    assert _cycles(GRAPH) == []


def test_no_import_cycle_between_packages() -> None:
    units: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        units.setdefault(unit_of(module), set()).update(
            unit_of(t) for t in targets if unit_of(t) != unit_of(module)
        )
    assert _cycles(units) == []


def test_the_checker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    """The parser itself: an import inside a function is found."""
    probe = PACKAGE / "engine" / "pipeline.py"
    assert "streamser.audio.ring" in imports_of(probe, "streamser.engine.pipeline")
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]
