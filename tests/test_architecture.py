"""The import graph matches docs/ARCHITECTURE.md: packages form layers, nothing imports back, privates stay private.

Read from the source with ``ast`` (every import, including those inside functions and ``TYPE_CHECKING`` blocks), so
a lazy import cannot hide a cycle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each product package and what it may import (besides itself). docs/ARCHITECTURE.md draws the same table.
LAYERS: dict[str, frozenset[str]] = {
    "core": frozenset(),
    "simulators": frozenset({"core"}),
    "encoder_onnx": frozenset({"core", "simulators"}),
    "llm_runtime": frozenset({"core"}),
    "agent": frozenset({"core", "encoder_onnx", "llm_runtime"}),
    "training": frozenset({"core", "simulators", "encoder_onnx", "llm_runtime"}),
    "evaluation": frozenset({"core", "simulators", "encoder_onnx", "llm_runtime", "agent"}),
    "demo": frozenset({"core", "simulators", "agent"}),
}
ENTRY_POINTS = ("main.py", "bench")  # may import any public module of any package


@dataclass(frozen=True)
class Import:
    source: str  # the importing module, dotted
    target: str  # the imported module, dotted
    names: tuple[str, ...]  # names taken with ``from target import ...``
    line: int

    def __str__(self) -> str:
        names = f" ({', '.join(self.names)})" if self.names else ""
        return f"{self.source}:{self.line} imports {self.target}{names}"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(source: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of a ``from`` import, relative ones included."""
    if node.level == 0:
        return node.module or ""
    base = source.split(".") if is_package else source.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(path: Path) -> Iterator[Import]:
    source = module_name(path)
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(source, alias.name, (), node.lineno)
        elif isinstance(node, ast.ImportFrom):
            target = resolve(source, is_package, node)
            yield Import(source, target, tuple(a.name for a in node.names), node.lineno)


def python_files(*tops: str) -> list[Path]:
    files: list[Path] = []
    for top in tops:
        path = ROOT / top
        files.extend([path] if path.is_file() else sorted(path.rglob("*.py")))
    return files


def product_imports() -> list[Import]:
    return [imp for path in python_files(*LAYERS) for imp in imports_of(path)]


def all_imports() -> list[Import]:
    return product_imports() + [imp for path in python_files(*ENTRY_POINTS) for imp in imports_of(path)]


def top(module: str) -> str:
    return module.split(".")[0]


def is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


def private_module_owner(target: str) -> str | None:
    """The package whose private module ``target`` is (``agent.alerts`` for ``agent.alerts._store``), else None."""
    parts = target.split(".")
    for i, part in enumerate(parts):
        if is_private(part):
            return ".".join(parts[:i])
    return None


def inside(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def package_graph(imports: list[Import], depth: int) -> dict[str, set[str]]:
    """Edges between sibling packages ``depth`` levels deep (1: top level; 2: ``agent.alerts`` vs ``agent.station``).

    A module directly in a parent package is not a sibling of its subpackages: ``agent.daemon`` composing
    ``agent.alerts`` is the parent's job, not a cycle."""
    packages = {
        module_name(p.parent) for p in python_files(*LAYERS) if p.name == "__init__.py" and module_name(p.parent)
    }

    def owner(module: str) -> str | None:
        parts = module.split(".")
        if len(parts) < depth:
            return None
        name = ".".join(parts[:depth])
        return name if name in packages else None

    graph: dict[str, set[str]] = {}
    for imp in imports:
        a, b = owner(imp.source), owner(imp.target)
        if a and b and a != b and a.rpartition(".")[0] == b.rpartition(".")[0]:
            graph.setdefault(a, set()).add(b)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


# --- the rules ------------------------------------------------------------------------------------------------------


def test_the_scan_sees_the_packages() -> None:
    """Guard against a vacuous pass: the scan must find every layer and the edges we know exist."""
    imports = product_imports()
    assert {top(i.source) for i in imports} == set(LAYERS)
    assert any(top(i.source) == "agent" and top(i.target) == "llm_runtime" for i in imports)
    assert len(imports) > 500
    assert "agent.alerts" in package_graph(imports, 2)["agent.cluster"]


@pytest.mark.parametrize("package", sorted(LAYERS))
def test_each_package_imports_only_its_lower_layers(package: str) -> None:
    bad = [
        str(i)
        for i in product_imports()
        if top(i.source) == package and top(i.target) in LAYERS and top(i.target) != package
        if top(i.target) not in LAYERS[package]
    ]
    assert not bad, f"{package} may import only {sorted(LAYERS[package])}:\n" + "\n".join(bad)


def test_the_declared_layers_have_no_cycle() -> None:
    graph = {package: set(allowed) for package, allowed in LAYERS.items()}
    assert find_cycle(graph) is None


@pytest.mark.parametrize("depth", [1, 2])
def test_no_package_imports_one_that_imports_it_back(depth: int) -> None:
    cycle = find_cycle(package_graph(product_imports(), depth))
    assert cycle is None, "package cycle: " + " -> ".join(cycle or [])


def test_no_private_module_or_name_is_imported_from_outside_its_package() -> None:
    bad = []
    for imp in all_imports():
        if top(imp.target) not in LAYERS:
            continue
        owner = private_module_owner(imp.target)
        if owner is not None and not inside(imp.source, owner):
            bad.append(str(imp))
        private_names = [n for n in imp.names if is_private(n)]
        if private_names and not inside(imp.source, imp.target.rsplit(".", 1)[0] if owner is None else owner):
            bad.append(str(imp))
    assert not bad, "private modules or names used across packages:\n" + "\n".join(bad)


def test_the_rules_catch_what_they_should() -> None:
    """The checks above fail on the shapes they exist for."""
    assert find_cycle({"a": {"b"}, "b": {"a"}}) == ["a", "b", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert private_module_owner("agent.alerts._pg_store") == "agent.alerts"
    assert private_module_owner("agent.alerts") is None
    assert private_module_owner("agent.__init__") is None
    assert not inside("agent.cluster._epochs", "agent.alerts")


def test_the_architecture_page_states_the_same_layers() -> None:
    """docs/ARCHITECTURE.md's table is the human copy of LAYERS: they must not drift apart."""
    rows = {}
    for line in (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].strip("`") in LAYERS:
            allowed = set() if cells[1] == "nothing of ours" else {c.strip(" `") for c in cells[1].split(",")}
            rows[cells[0].strip("`")] = allowed
    assert rows == {package: set(allowed) for package, allowed in LAYERS.items()}
