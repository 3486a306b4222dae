"""CLI basics: version, help, register_commands, error lines."""

from __future__ import annotations

import importlib
import json
import re
import subprocess
import sys
import types

import click
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
    assert halo_core.start_server is importlib.import_module("halo_core.llama.server").serve
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
