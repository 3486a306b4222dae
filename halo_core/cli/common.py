"""What every command module shares: error handling, JSON output, list options."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading

import click

from ..errors import HaloError


def __getattr__(name: str):
    """`err_console`: rich's Console for stderr, made when a command module first asks."""
    if name == "err_console":
        from rich.console import Console

        globals()["err_console"] = console = Console(stderr=True)
        return console
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class HaloGroup(click.Group):
    """Turns HaloError from any subcommand into one clean line and exit code 1."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except HaloError as exc:
            raise click.ClickException(str(exc)) from None


class PassThrough(click.Command):
    """A command that hands llama.cpp what follows `--`, exactly as given, in its `extra`
    argument. Everything before `--` is halo's: an option halo does not have is a usage error
    (with click's "did you mean"), never something llama.cpp is left to reject."""

    def parse_args(self, ctx, args):
        rest: tuple[str, ...] = ()
        if "--" in args:
            cut = args.index("--")
            args, rest = args[:cut], tuple(args[cut + 1:])
        ctx.meta["halo.passthrough"] = rest
        return super().parse_args(ctx, args)


def passthrough(f):
    """Give the command its arguments after `--` as `extra` (use with cls=PassThrough)."""
    @functools.wraps(f)
    def with_extra(*args, **kwargs):
        return f(*args, extra=click.get_current_context().meta.get("halo.passthrough", ()), **kwargs)

    return with_extra


def emit_json(value) -> None:
    from ..store import to_json

    click.echo(to_json(value), nl=False)


def print_table(*tables) -> None:
    """Print rich tables on stdout: in a terminal at its width; piped or redirected (where
    rich would assume 80 columns and cut every column short) at the tables' own width."""
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        wide = console.options.update_width(1000)
        console = Console(width=max([console.width, *(console.measure(t, options=wide).maximum for t in tables)]))
    for table in tables:
        console.print(table)


SHORTHAND_PREFIX = "backend_opt_"


def backend_flags(f):
    """--backend-opt KEY=VALUE (repeatable) and the shorthand flags plugins declare for their
    backends' options (`option_shorthands`: native's --llama-cpp-dir DIR is
    --backend-opt llama_cpp_dir=DIR). The command gets them all in `backend_opts`."""
    from ..plugins import get_host

    shorthands = get_host().option_shorthands()

    @functools.wraps(f)
    def folded(*args, backend_opts=(), **kwargs):
        values = {key: kwargs.pop(SHORTHAND_PREFIX + key, None) for key in shorthands.values()}
        given = tuple(f"{key}={value}" for key, value in values.items() if value is not None)
        return f(*args, backend_opts=tuple(backend_opts) + given, **kwargs)

    for flag, key in sorted(shorthands.items(), reverse=True):
        folded = click.option(f"--{flag}", SHORTHAND_PREFIX + key, default=None, metavar="VALUE",
                              help=f"Short for --backend-opt {key}=VALUE.")(folded)
    return click.option("--backend-opt", "backend_opts", multiple=True, metavar="KEY=VALUE",
                        help="An option for the backend (repeatable; `halo backends` lists them).")(folded)


def backend_options(pairs: tuple[str, ...]) -> dict[str, str]:
    """{KEY: VALUE} from --backend-opt (and its shorthands); a pair without "=" is a usage error."""
    options = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not (eq and key.strip()):
            raise click.UsageError(f"--backend-opt takes KEY=VALUE, not {pair!r}")
        options[key.strip()] = value
    return options


def split_list(values: tuple[str, ...]) -> tuple[str, ...]:
    """--backend a,b --backend c -> (a, b, c)."""
    return tuple(v.strip() for item in values for v in item.split(",") if v.strip())


@contextlib.contextmanager
def sigterm_as_interrupt():
    """SIGTERM (`halo flush`, `kill`) ends the block like Ctrl-C, so cleanup runs.

    A signal handled inside code whose exceptions Python can only print (an at-fork hook while a
    subprocess starts, a __del__) would be lost: the interrupt goes to sys.unraisablehook, which
    sends the SIGTERM again a moment later, to be handled where it can stop the block."""
    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    inside = threading.Event()

    def resend():  # not once the block is over: the default SIGTERM would kill the process
        if inside.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    def on_unraisable(info):
        if isinstance(info.exc_value, KeyboardInterrupt):  # sent again once out of here
            threading.Timer(0.05, resend).start()
            return
        previous_hook(info)

    previous = signal.signal(signal.SIGTERM, on_term)
    previous_hook, sys.unraisablehook = sys.unraisablehook, on_unraisable
    inside.set()
    try:
        yield
    finally:
        inside.clear()
        signal.signal(signal.SIGTERM, previous)
        sys.unraisablehook = previous_hook


def spinner_status(spinner):
    """The on_status callback of a command showing progress in `spinner` (rich's status): each
    message replaces the last, a Note (a finding) is printed above it and stays, once (a
    --slots search starts a server per slot count, each with the same profile)."""
    from rich.markup import escape

    from ..records import Note

    printed: set[str] = set()

    def status(msg: str) -> None:
        if isinstance(msg, Note) and msg not in printed:
            printed.add(msg)
            spinner.console.print(f"[dim]{escape(msg)}[/dim]", soft_wrap=True, highlight=False)
        spinner.update(msg)

    return status
