"""The interface docs are runnable: each ABC's example plugin registers through a real host,
and every hookspec is documented and exercised by some test."""

from __future__ import annotations

import inspect
import re
import textwrap
import types
from pathlib import Path

import pytest

from halo_core import hookspecs
from halo_core.interfaces import INTERFACES
from halo_core.plugins import PluginHost


def _example(cls) -> str:
    doc = inspect.getdoc(cls)
    match = re.search(r"::\n\n(.*?)(?:\n\n(?=\S)|\Z)", doc, re.S)
    assert match, f"{cls.__name__} docstring has no example plugin"
    return textwrap.dedent(match.group(1))


@pytest.mark.parametrize("kind", sorted(INTERFACES))
def test_docstring_example_is_a_working_plugin(kind):
    module = types.ModuleType(f"example_{kind}")
    exec(compile(_example(INTERFACES[kind]), module.__name__, "exec"), module.__dict__)
    host = PluginHost()
    host.register(module, module.__name__)
    registered = host.all(kind)
    assert len(registered) == 1, host.info()
    (obj,) = registered.values()
    assert isinstance(obj, INTERFACES[kind])
    assert host.info()[0].error is None


def test_required_methods_are_abstract_and_marked():
    for cls in INTERFACES.values():
        for name in cls.__abstractmethods__:
            assert getattr(cls, name).__doc__.startswith("REQUIRED."), f"{cls.__name__}.{name}"


def test_the_docs_table_matches_each_interface():
    """docs/architecture.md's table lists each interface's required (abstract) and optional
    members, no more and no fewer."""
    text = (Path(__file__).parents[1] / "docs" / "architecture.md").read_text()
    rows = {m[0]: m[1:] for m in re.findall(r"^\| `(\w+)` \| [^|]+ \| ([^|]*) \| ([^|]*) \| [^|]+ \|$",
                                              text, re.M)}
    assert set(rows) == {cls.__name__ for cls in INTERFACES.values()}
    for cls in INTERFACES.values():
        required, optional = ({re.match(r"`(\w+)", item).group(1) for item in re.findall(r"`[^`]+`", cell)}
                              for cell in rows[cls.__name__])
        members = {n for n in vars(cls) if not n.startswith("_")} - {"name", "description"}
        assert required == set(cls.__abstractmethods__), cls.__name__
        assert optional == members - required, cls.__name__


def test_every_hookspec_is_documented_and_tested():
    """Each hook has a docstring and a row in docs/plugins.md; an interface's registration hook
    is implemented by that interface's docstring example (which the test above registers),
    every other hook by some test."""
    specs = [n for n, f in vars(hookspecs).items() if callable(f) and hasattr(f, "halo_spec")]
    assert set(specs) >= {f"register_{k}" for k in INTERFACES} | {"register_commands"}
    docs = (Path(__file__).parents[1] / "docs" / "plugins.md").read_text()
    tests_text = "\n".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py")
                           if p.name != Path(__file__).name)
    by_hook = {f"register_{kind}": cls for kind, cls in INTERFACES.items()}
    for name in specs:
        assert getattr(hookspecs, name).__doc__, name
        assert f"| `{name}(" in docs, f"docs/plugins.md has no row for {name}"
        where = _example(by_hook[name]) if name in by_hook else tests_text
        assert f"def {name}(" in where, f"nothing implements {name}"
