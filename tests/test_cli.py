"""CLI basics: version, help, register_commands, error lines."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types

import click
import pytest
from click.testing import CliRunner

import halo_core
from conftest import ROOT
from halo_core import PluginHost, hookimpl, set_host
from halo_core.cli import cli


def test_version(halo):
    done = halo("--version")
    assert done.returncode == 0
    assert done.stdout.strip() == f"halo, version {halo_core.__version__}"


def test_plugin_adds_a_command():
    @hookimpl
    def register_commands(cli):
        @cli.command(name="hello-test")
        def hello():
            """Say hello."""
            click.echo("hello from a plugin")

    host = PluginHost()
    host.register(types.SimpleNamespace(register_commands=register_commands), "cmds")
    set_host(host)
    try:
        host.add_commands(cli)
        result = CliRunner().invoke(cli, ["hello-test"])
        assert result.exit_code == 0
        assert result.output == "hello from a plugin\n"
    finally:
        cli.commands.pop("hello-test", None)
        set_host(None)


def test_bad_flag_is_a_usage_error(halo):
    done = halo("bench", "run", "--pp", "0", "--tg", "0")
    assert done.returncode == 2
    assert "--pp and --tg cannot both be 0" in done.stderr
    assert "Traceback" not in done.stderr


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    """Every command a user can run: leaves, and groups that run on their own (`halo eval`)."""
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command, here = group.get_command(ctx, name), (*path, name)
        if isinstance(command, click.Group):
            if command.invoke_without_command:
                yield " ".join(here)
            yield from _commands(command, here)
        else:
            yield " ".join(here)


def test_every_command_has_a_documented_library_call():
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `halo ([a-z -]+)` \| (.+) \|$", text, re.M))
    assert sorted(rows) == sorted(_commands(cli))
    for command, calls in rows.items():
        names = re.findall(r"halo_core\.(\w+)\(", calls)
        assert names, command
        for name in names:
            assert name in halo_core.__all__ and callable(getattr(halo_core, name)), (command, name)


def test_import_halo_core_defers_the_library_calls():
    code = ("import sys, halo_core; loaded = sorted(m for m in sys.modules if m.startswith('halo_core.'));"
            "halo_core.run_bench; import json; print(json.dumps([loaded, 'halo_core.bench' in sys.modules]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded, bench_after = json.loads(done.stdout)
    assert not {"halo_core.bench", "halo_core.llama", "halo_core.evals", "halo_core.tune",
                "halo_core.plugins", "halo_core.models"} & set(loaded), loaded
    assert bench_after
    assert halo_core.start_server is importlib.import_module("halo_core.llama.server").start_server
    assert set(halo_core.__all__) <= set(dir(halo_core))


def test_the_command_table_holds_each_commands_own_help():
    """`halo --help` lists core commands from COMMANDS without importing them: the help there
    is each command's own first docstring paragraph."""
    from halo_core.cli import COMMANDS, LazyGroup

    group = LazyGroup()
    for name, (_module, _attr, text) in COMMANDS.items():
        command = group.get_command(click.Context(group), name)
        assert " ".join(command.help.split("\n\n")[0].split()) == text, name


def test_version_and_help_import_no_command_module():
    code = ("import sys; from halo_core.cli import main\n"
            "for args in (['--version'], ['--help']):\n"
            "    try: main(args)\n"
            "    except SystemExit: pass\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('httpx', 'rich', 'numpy')"
            " or m.startswith('halo_core.cli.') and m != 'halo_core.cli.common')\n"
            "print(heavy, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "[]"


def _command(path: str) -> click.Command:
    command = cli
    for name in path.split():
        command = command.get_command(click.Context(command), name)
    return command


def _reached(function, seen=None) -> list:
    """The objects a CLI function's body names (its function-level imports, the module's
    globals, `module.attr`), following calls into other functions of the CLI's own modules."""
    import ast
    import inspect
    import textwrap

    seen = set() if seen is None else seen
    if function in seen or not getattr(function, "__module__", "").startswith("halo_core.cli"):
        return []
    seen.add(function)
    module = sys.modules[function.__module__]
    tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    names = dict(vars(module))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = importlib.import_module("." * node.level + (node.module or ""), module.__package__)
            for alias in node.names:
                value = getattr(source, alias.name, None)
                if value is None:
                    value = importlib.import_module(f"{source.__name__}.{alias.name}")
                names[alias.asname or alias.name] = value
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id in names:
            found.append(names[node.id])
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and isinstance(names.get(node.value.id), types.ModuleType):
            found.append(getattr(names[node.value.id], node.attr, None))
    for obj in list(found):
        if inspect.isfunction(obj):
            found += _reached(obj, seen)
    return found


def test_each_command_calls_the_library_call_the_table_names():
    """The table is not only true of halo_core: each command's code reaches the very function
    its row names (the CLI is a thin layer over the library, not a second copy of it)."""
    text = (ROOT / "docs" / "architecture.md").read_text()
    rows = dict(re.findall(r"^\| `halo ([a-z -]+)` \| (.+) \|$", text, re.M))
    missing = []
    for command, calls in rows.items():
        reached = _reached(_command(command).callback)
        for name in re.findall(r"halo_core\.(\w+)\(", calls):
            target = getattr(halo_core, name)
            if not any(obj is target for obj in reached):
                missing.append(f"halo {command}: {name}")
    assert not missing, missing


def test_public_calls_are_named_as_the_functions_behind_them():
    from halo_core import _LAZY

    differ = sorted(f"{public} -> {module}.{attr}" for public, (module, attr) in _LAZY.items()
                    if public != attr)
    assert not differ, differ


def test_a_sigterm_that_lands_where_python_can_only_print_it_still_stops_the_block():
    """(seen in CI) a SIGTERM handled inside an at-fork hook or a __del__ raises where Python only
    prints the exception; the block must still end as if interrupted, not run on."""
    import os
    import signal
    import time

    from halo_core.cli.common import sigterm_as_interrupt

    class SignalledInDel:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):  # the handler runs here, inside __del__: its exception is only printed
                pass

    ran_on = False
    with pytest.raises(KeyboardInterrupt):
        with sigterm_as_interrupt():
            obj = SignalledInDel()
            del obj
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                time.sleep(0.01)
            ran_on = True
    assert not ran_on
