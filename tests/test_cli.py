"""CLI basics: version, help, register_commands, error lines."""

from __future__ import annotations

import types

import click
from click.testing import CliRunner

import halo_core
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
