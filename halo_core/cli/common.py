"""What every command module shares: error handling, JSON output, list options."""

from __future__ import annotations

import contextlib
import signal

import click
from rich.console import Console

from ..errors import HaloError
from ..store import to_json

err_console = Console(stderr=True)


class HaloGroup(click.Group):
    """Turns HaloError from any subcommand into one clean line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HaloError as exc:
            raise click.ClickException(str(exc)) from None


def emit_json(value) -> None:
    click.echo(to_json(value), nl=False)


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """--backend a,b --backend c -> (a, b, c)."""
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (`halo flush`, `kill`) ends the block like Ctrl-C, so cleanup runs."""
    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_term)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
