"""The `halo` command line: a thin layer over the library calls.

Each command group lives in its own module here (bench.py, models.py, ...) and is added to
the `cli` group below; plugins add theirs through the `register_commands` hook.
"""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from .. import __version__
from ..plugins import get_host
from .common import HaloGroup, emit_json


@click.group(cls=HaloGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="halo")
def cli():
    """halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp."""


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def plugins(as_json):
    """List plugins: name, version, source, what each registers, load errors."""
    infos = get_host().info()
    if as_json:
        emit_json(infos)
        return
    table = Table("plugin", "version", "source", "registers", "error")
    for info in infos:
        registers = "; ".join(f"{k}: {', '.join(v)}" for k, v in info.registers.items())
        table.add_row(info.name, info.version or "-", info.source, registers or "-",
                      info.error or "")
    Console().print(table)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def backends(as_json):
    """List backends and whether each can run here (and why not)."""
    rows = []
    for name, backend in sorted(get_host().backends().items()):
        availability = backend.availability()
        rows.append({"name": name, "description": backend.description,
                     "available": availability.available, "reason": availability.reason,
                     "hint": availability.hint})
    if as_json:
        emit_json(rows)
        return
    table = Table("backend", "available", "description / why not")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else "no",
                      row["description"] if row["available"] else row["reason"])
    Console().print(table)


from .bench import bench  # noqa: E402
from .eval import eval  # noqa: E402
from .flush import flush  # noqa: E402
from .hw import hw, monitor  # noqa: E402
from .models import models  # noqa: E402
from .serve import serve  # noqa: E402
from .sweep import sweep  # noqa: E402
from .tune import audit, rollback, tune, verify  # noqa: E402

for _group in (bench, eval, hw, models, monitor, serve, sweep, flush, audit, verify, tune, rollback):
    cli.add_command(_group)


def main(argv: list[str] | None = None) -> None:
    get_host().add_commands(cli)
    cli.main(args=argv, prog_name="halo")
