"""The package graph: which part of halo_core may import which, walked from the source (every
import statement, function-level and TYPE_CHECKING ones included), and no cycle anywhere, not
even between two modules of one package."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "halo_core"

KERNEL = "kernel"
# the declared direction: each part and the parts it may import (the kernel may import none)
ALLOWED: dict[str, set[str]] = {
    KERNEL: set(),
    "machine": {KERNEL},
    "models": {KERNEL},
    "llama": {KERNEL, "machine", "models"},
    "bench": {KERNEL, "machine", "models", "llama"},
    "servebench": {KERNEL, "machine", "models", "llama"},
    "evals": {KERNEL, "machine", "models", "llama"},
    "sweep": {KERNEL, "machine", "models", "llama", "bench", "evals"},
    "tune": {KERNEL, "machine", "models", "llama", "bench", "evals"},
    "optimize": {KERNEL, "machine", "models", "llama", "bench", "evals", "sweep"},
    "cli": {KERNEL, "machine", "models", "llama", "bench", "servebench", "evals", "sweep", "tune", "optimize"},
}


def module_name(path: Path) -> str:
    parts = ["halo_core", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def part(module: str) -> str:
    """The package a module belongs to: its first level under halo_core, or the kernel."""
    rest = module.split(".")[1:]
    if rest and rest[0] == "__main__":
        return "cli"
    return rest[0] if len(rest) > 1 or (rest and rest[0] in ALLOWED and rest[0] != KERNEL
                                        and (ROOT / rest[0]).is_dir()) else KERNEL


def imports(module: str) -> set[str]:
    """The halo_core modules `module` imports, anywhere in its source."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            stem = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{stem}.{a.name}" for a in node.names] + [stem]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target and target != module and target.startswith("halo_core"):
                found.add(target)
    return found  # a package's __init__ counts too: importing a submodule runs it


GRAPH = {m: imports(m) for m in MODULES}


def test_every_part_is_declared():
    assert {part(m) for m in MODULES} <= set(ALLOWED)


def test_parts_import_only_in_the_declared_direction():
    wrong = sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets
                   if part(t) != part(m) and part(t) not in ALLOWED[part(m)])
    assert not wrong, "\n".join(wrong)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_module_imports_in_a_circle():
    # halo_core/__init__ names its library calls lazily (strings), so it imports only the kernel
    cycle = find_cycle(GRAPH)
    assert cycle is None, " -> ".join(cycle)


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_walk_sees_function_level_imports():
    # the CLI imports each command's library module inside the command's function
    assert "halo_core.bench.report" in GRAPH["halo_core.cli.bench"]
    assert "halo_core.llama.rpc" in GRAPH["halo_core.cli.models"]


@pytest.mark.parametrize("name", sorted(p for p in ALLOWED if p != KERNEL))
def test_each_feature_is_a_package(name):
    assert (ROOT / name / "__init__.py").is_file()
