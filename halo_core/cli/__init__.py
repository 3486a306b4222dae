"""The `halo` command line: a thin layer over the library calls.

Each command group lives in its own module here (bench.py, models.py, ...) and is imported
only when that command runs (`COMMANDS`), so `halo --version`, `halo --help` and a short
command pay for no module they do not use; plugins add theirs through the `register_commands`
hook, loaded when a name is not a core command or when commands are listed.
"""

from __future__ import annotations

import contextlib
import gc
from importlib import import_module

import click

from .. import __version__
from .common import HaloGroup, emit_json, print_table

# name -> (module in halo_core.cli, attribute, the one-line help `halo --help` shows);
# tests/test_cli.py holds the help to each command's own
COMMANDS: dict[str, tuple[str, str, str]] = {
    "audit": ("tune", "audit", "One screen: what this machine is and runs, and how well it is tuned."),
    "bench": ("bench", "bench", "Benchmark llama.cpp (llama-bench) across models, backends and settings."),
    "eval": ("eval", "eval", "Evaluate the model behind an OpenAI-compatible server."),
    "flush": ("flush", "flush", "Stop the servers, RPC workers and benches halo started (pid files), let their backends release what they started (toolbox containers), drop the page cache (as root) and print the GPU memory still in use."),
    "hw": ("hw", "hw", "Machine figures halo uses (memory bandwidth for the roofline)."),
    "models": ("models", "models", "List the catalog, fetch models, find and remove their files, check that they fit."),
    "monitor": ("hw", "monitor", "Sample hardware metrics (GPU busy, VRAM/GTT, temperatures, power, CPU, memory) to CSV."),
    "optimize": ("optimize", "optimize", "Find the fastest llama.cpp settings for a model on this machine (`halo optimize MODEL`), `halo optimize show [RUN]`, `halo optimize list`."),
    "rpc": ("rpc", "rpc", "llama.cpp RPC workers: split a model over several machines (or GPUs)."),
    "rollback": ("tune", "rollback", "Undo the newest tuning transaction (or finish one a crash interrupted)."),
    "serve": ("serve", "serve", "Serve a model with llama-server: `halo serve MODEL`, `halo serve --preset NAME`, `halo serve status`, `halo serve stop`."),
    "sweep": ("sweep", "sweep", "Eval scores and speed of server settings side by side, each against the first."),
    "tune": ("tune", "tune", "Show the tuning plan as a diff (dry run), or apply it as a transaction."),
    "verify": ("tune", "verify", "The checklist of the tuners that apply to this host (9 points on a Strix Halo): PASS, WARN or FAIL, and the fix."),
}


@contextlib.contextmanager
def paused_gc():
    """Importing a command's modules (and the plugins) allocates much and frees little: the
    cyclic collector's passes meanwhile find nothing to free. Paused for that time, `halo
    bench run --help` starts ~10 ms (4%) sooner on 2 cores; the command itself runs with it on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


class LazyGroup(HaloGroup):
    """The root group: core commands imported on first use, plugin commands added once."""

    _plugin_host = None  # the host whose plugins' commands were added
    _plugin_names: tuple[str, ...] = ()

    def add_plugin_commands(self) -> None:
        """Let plugins add their commands; a name a core command has is that plugin's error."""
        from ..plugins import get_host

        with paused_gc():
            host = get_host()
        if host is self._plugin_host:
            return
        for name in self._plugin_names:  # another host now (tests, embedding applications)
            self.commands.pop(name, None)
        staging = click.Group()
        staging.commands = {name: click.Command(name) for name in COMMANDS}
        staging.commands.update(self.commands)
        taken = dict(staging.commands)
        with paused_gc():
            host.add_commands(staging)
        added = {n: c for n, c in staging.commands.items() if n not in taken}
        self.commands.update(added)
        self._plugin_host, self._plugin_names = host, tuple(added)

    def _core(self, name: str) -> click.Command:
        module, attr, _help = COMMANDS[name]
        with paused_gc():
            command = getattr(import_module(f".{module}", __name__), attr)
        self.commands[name] = command
        return command

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name in COMMANDS:
            return self._core(name)
        self.add_plugin_commands()
        return self.commands.get(name)

    def list_commands(self, ctx):
        self.add_plugin_commands()
        return sorted(set(self.commands) | set(COMMANDS))

    def format_commands(self, ctx, formatter):
        """The command list of --help, without importing the core commands' modules."""
        names = self.list_commands(ctx)
        limit = formatter.width - 6 - max(len(n) for n in names)
        rows = []
        for name in names:
            command = self.commands.get(name)
            if command is None:  # a core command not imported yet: its help from COMMANDS
                rows.append((name, click.utils.make_default_short_help(COMMANDS[name][2], limit)))
            elif not command.hidden:
                rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halo")
def cli():
    """halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json):
    """List plugins (name, version, source, what each registers, load errors) and the
    default backend and model."""
    from rich.table import Table

    from ..config import defaults
    from ..plugins import get_host

    cli.add_plugin_commands()  # so a plugin whose register_commands fails shows its error
    infos, chosen = get_host().info(), defaults()
    if as_json:
        emit_json({"plugins": infos, "defaults": chosen})
        return
    table = Table("plugin", "version", "source", "registers", "error")
    for info in infos:
        registers = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registers.items())
        table.add_row(info.name, info.version or "-", info.source, registers or "-",
                      info.error or "")
    print_table(table)
    click.echo(_defaults_line(chosen, "backend", "model"))


def _defaults_line(chosen, *keys: str) -> str:
    """"default backend: native (built-in) · ...": each default and where it came from."""
    return " · ".join(f"default {key}: {getattr(chosen, key)} ({chosen.origin[key]})"
                      for key in keys)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def backends(as_json):
    """List backends, whether each can run here (and why not), the llama.cpp build each runs
    (`llama-server --version` in it, once per binary: a stopped toolbox container is started for
    it the first time), and the default one."""
    from rich.table import Table

    from ..bench.inventory import llama_cpp_version
    from ..config import defaults
    from ..plugins import get_host

    rows, chosen = [], defaults()
    for name, backend in sorted(get_host().backends().items()):
        availability = backend.availability()
        rows.append({"name": name, "description": backend.description,
                     "available": availability.available, "reason": availability.reason,
                     "hint": availability.hint, "options": dict(backend.option_help),
                     "llama_cpp": llama_cpp_version(backend) if availability.available else "",
                     "default": name == chosen.backend})
    if as_json:
        emit_json(rows)
        return
    table = Table("backend", "available", "llama.cpp", "description / why not",
                  "options (--backend-opt)")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else "no", row["llama_cpp"] or "-",
                      row["description"] if row["available"] else row["reason"],
                      ", ".join(row["options"]))
    print_table(table)
    click.echo(_defaults_line(chosen, "backend"))


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="halo")
