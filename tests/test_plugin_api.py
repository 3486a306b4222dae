"""The declared surfaces: plugins import only `halo_core.plugin_api`, scripts only `halo_core`."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

import halo_core
from halo_core import hookspecs, interfaces, plugin_api
from halo_core.chat import EvalContext
from halo_core.records import HostFacts
from conftest import ROOT

PLUGIN_API = "halo_core.plugin_api"


def _imports(path: Path) -> list[tuple[int, str, tuple[str, ...]]]:
    """(line, module, names) for every import of halo_core or a module under it."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, ()) for a in node.names
                      if a.name.split(".")[0] == "halo_core"]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module \
                and node.module.split(".")[0] == "halo_core":
            found.append((node.lineno, node.module, tuple(a.name for a in node.names)))
    return found


def _plugin_modules() -> list[Path]:
    """Every module of the built-in plugins and of the example plugin packages."""
    packages = [ROOT / "plugins", *(p.parent for p in (ROOT / "examples").glob("*/pyproject.toml"))]
    return sorted(path for folder in packages for path in folder.rglob("*.py"))


def test_plugins_import_only_the_plugin_api():
    modules = _plugin_modules()
    assert any("halo_taskset" in p.name for p in modules)
    bad, used = [], set()
    for path in modules:
        for line, module, names in _imports(path):
            if module != PLUGIN_API:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
            used.update(names)
    assert bad == [], "plugins must import only halo_core.plugin_api:\n" + "\n".join(bad)
    assert used - set(plugin_api.__all__) == set()


def test_scripts_use_only_the_public_library():
    scripts = sorted((ROOT / "examples").glob("*.py"))
    assert scripts
    for path in scripts:
        for line, module, names in _imports(path):
            assert module == "halo_core", f"{path.relative_to(ROOT)}:{line} imports {module}"
            assert set(names) <= set(halo_core.__all__), (path, names)


@pytest.mark.parametrize("name", plugin_api.__all__)
def test_every_declared_name_is_the_object_it_names(name):
    """Each name is the very object of the halo_core module plugin_api says it comes from."""
    where = plugin_api._WHERE[name]
    module = importlib.import_module(f"halo_core.{where}" if where else "halo_core")
    assert getattr(plugin_api, name) is getattr(module, name)


def test_the_surface_is_what_plugin_authors_use():
    """Every name is used by a plugin (built-in or example) or is part of what an interface,
    a hook or the eval context gives a plugin: nothing exported for no one."""
    used = {n for path in _plugin_modules() for _line, _module, names in _imports(path) for n in names}
    given = "\n".join(inspect.getsource(m) for m in (interfaces, hookspecs, EvalContext, HostFacts))
    unused = [n for n in plugin_api.__all__ if n not in used and not re.search(rf"\b{re.escape(n)}\b", given)]
    assert unused == []


def test_the_docs_describe_the_whole_surface():
    text = (ROOT / "docs" / "plugins.md").read_text()
    missing = [n for n in plugin_api.__all__ if f"`{n}`" not in text]
    assert missing == [], f"docs/plugins.md does not mention {missing}"


def test_plugins_use_only_the_documented_eval_context():
    """A suite reads the EvalContext through its documented members, never its client."""
    documented = {"chat", "dataset", "max_tokens", "log", "concurrency", "timeout", "failures", "failed", "asked",
                  "suite", "unsafe_local_exec"}
    used = set()
    for path in _plugin_modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "context":
                used.add(node.attr)
    assert used and used <= documented, used - documented
