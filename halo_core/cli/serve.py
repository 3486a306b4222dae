"""`halo serve`: start llama-server (foreground or --detach), `status`, `stop`."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click
from rich.table import Table
from rich.markup import escape

from ..errors import ToolFailed
from ..runner import describe_exit, tail_of
from ..llama.flags import DEFAULT_CACHE_TYPE, DEFAULT_CTX, KV_TYPES
from ..llama.server import ServerSpec, load_presets, preset_spec
from ..llama.process import UnsafeBind, check_bind, check_passthrough, servers, stop_servers
from ..llama.server import start_server
from ..llama.rpc import parse_endpoints, parse_tensor_split
from ..store import human_size, to_dict
from .common import PassThrough, backend_flags, backend_options, emit_json, passthrough, err_console, print_table, sigterm_as_interrupt


class DefaultRunGroup(click.Group):
    """`halo serve MODEL` means `halo serve run MODEL`; `status` and `stop` are subcommands."""

    def parse_args(self, ctx, args):
        if not args or (args[0] not in self.commands and args[0] not in ("-h", "--help")):
            args = ["run", *args]
        return super().parse_args(ctx, args)


@click.group(cls=DefaultRunGroup)
def serve():
    """Serve a model with llama-server: `halo serve MODEL`, `halo serve --preset NAME`,
    `halo serve status`, `halo serve stop`."""


def server_options(f=None, *, ctx_default: str = str(DEFAULT_CTX), parallel_default: str = "1"):
    """The llama-server options `halo serve` and `halo bench serve` share (server_spec reads
    them)."""
    if f is None:
        return lambda g: server_options(g, ctx_default=ctx_default, parallel_default=parallel_default)
    options = [
        click.option("--preset", help="A preset from configs/serve-presets.ini (see `halo serve presets`)."),
        click.option("--backend", default=None,
                     help="Backend to run llama-server on (default: the preset's, else the default "
                          "backend: `halo backends` shows it)."),
        click.option("-c", "--ctx", type=click.IntRange(min=256), default=None,
                     help=f"Context size [default: {ctx_default}]."),
        click.option("-np", "--parallel", type=click.IntRange(min=1), default=None,
                     help=f"Parallel request slots [default: {parallel_default}]."),
        click.option("--cache-type", type=click.Choice(tuple(KV_TYPES)), default=None,
                     help=f"K/V cache type [default: the profile's, else {DEFAULT_CACHE_TYPE}]."),
        click.option("--ngram", is_flag=True, default=None, help="n-gram speculation (ngram-simple, draft 64/4)."),
        click.option("--no-think", is_flag=True, default=None, help="Reasoning budget 0."),
        click.option("--threads", type=click.IntRange(min=1), default=None),
        click.option("--rpc", default=None, metavar="HOST:PORT,...",
                     help="llama.cpp RPC workers to split the model over (see `halo rpc`)."),
        click.option("--tensor-split", "-ts", "tensor_split", default=None, metavar="N0,N1,...",
                     help="Share of the model per device, RPC workers' devices first (-ts)."),
        click.option("--no-profile", is_flag=True,
                     help="Ignore the profile `halo optimize` measured for this model here."),
        backend_flags,
    ]
    for option in reversed(options):
        f = option(f)
    return f


def server_spec(model: str | None, preset: str | None, **options) -> ServerSpec:
    """The ServerSpec of MODEL or --preset NAME from server_options' values and any other
    ServerSpec fields (None: the preset's or the default). `no_profile` (the --no-profile flag)
    turns the profile off; otherwise `profile` names the workload whose profile applies."""
    if "no_profile" in options:
        options["profile"] = "" if options.pop("no_profile") else (options.get("profile") or "chat")
    options.update(rpc=parse_endpoints(options.get("rpc") or ()),
                   tensor_split=parse_tensor_split(options.get("tensor_split")))
    if preset:
        return preset_spec(preset, **options)
    return ServerSpec(model=model, **{k: v for k, v in options.items() if v is not None})


@serve.command(cls=PassThrough)
@click.argument("model", required=False)
@server_options
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True)
@click.option("--api-key", default=None, help="Require this key (needed for a non-loopback --host).")
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host without --api-key.")
@click.option("--timeout", type=float, default=600, show_default=True, help="Seconds to wait for /health.")
@click.option("--detach", is_flag=True, help="Leave the server running in the background (pid file).")
@click.option("--json", "as_json", is_flag=True, help="Print the server record as JSON once ready.")
@passthrough
def run(model, preset, backend, host, port, ctx, parallel, cache_type, ngram, no_think, api_key,
        insecure, threads, rpc, tensor_split, no_profile, timeout, detach, backend_opts, as_json,
        extra):
    """Start llama-server for MODEL (or --preset) and wait until it is ready.

    Anything after `--` goes to llama-server as it is.
    """
    if bool(model) == bool(preset):
        raise click.UsageError("give a MODEL or --preset NAME (one of them)")
    try:
        check_bind(host, api_key, insecure)
        check_passthrough(extra)
    except UnsafeBind as exc:
        raise click.UsageError(str(exc)) from None
    spec = server_spec(model, preset, backend=backend, host=host, port=port, ctx=ctx, parallel=parallel,
                       cache_type=cache_type, ngram=ngram, no_think=no_think, api_key=api_key,
                       insecure=insecure, threads=threads, ready_timeout=timeout, extra=tuple(extra),
                       rpc=rpc, tensor_split=tensor_split, no_profile=no_profile)
    status = (lambda msg: err_console.print(f"[dim]{escape(msg)}[/dim]", soft_wrap=True, highlight=False))
    try:
        server = start_server(spec, detach=detach, on_status=status,
                              backend_options=backend_options(backend_opts))
    except ToolFailed as exc:
        if exc.log_tail:
            click.echo(f"llama-server log (last lines):\n{exc.log_tail}", err=True)
        raise
    info = server.info
    lines = [f"serving {spec.model} on {info.backend}: {info.url}/v1 (pid {info.pid})",
             f"command: {shlex.join(info.argv)}", f"log: {info.log}"]
    for worker in info.rpc:
        devices = ", ".join(f"{d.name} {human_size(d.total)}" for d in worker.devices)
        lines.append(f"RPC worker {worker.endpoint} (protocol {worker.version}): {devices}")
    hold(server, lines, as_json=as_json, detach=detach, stop=f"halo serve stop --port {info.port}")


def hold(server, lines: list[str], *, as_json: bool, detach: bool, stop: str,
         what: str = "llama-server", noun: str = "server") -> None:
    """Say how a started server (or RPC worker) runs, then leave it running (--detach) or
    wait for it: Ctrl-C or SIGTERM stops it, a death exits 1 with the log tail."""
    if as_json:
        emit_json(server.info)
    else:
        click.echo("\n".join(lines))
    if detach:
        if not as_json:
            click.echo(f"detached; stop it with: {stop}")
        return
    if not as_json:
        click.echo(f"Ctrl-C stops the {noun}")
    sys.stdout.flush()
    try:
        with sigterm_as_interrupt():
            code = server.wait()
    except KeyboardInterrupt:
        server.stop()
        err_console.print(f"{noun} stopped")
        return
    server.stop()
    tail = tail_of(Path(server.info.log), 15)
    last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "no output")
    click.echo(f"{what} log (last lines):\n{tail}", err=True)
    raise ToolFailed(f"{what} {describe_exit(code)}: {last.strip()} (log: {server.info.log})")


@serve.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(as_json):
    """The servers halo started and whether each still runs."""
    rows = servers()
    if as_json:
        emit_json([{"running": alive, **to_dict(info)} for info, alive in rows])
        return
    if not rows:
        click.echo("no servers started by halo")
        return
    table = Table("port", "pid", "state", "backend", "model", "url", "started")
    for info, alive in rows:
        table.add_row(str(info.port), str(info.pid), "running" if alive else "gone",
                      info.backend, info.model, f"{info.url}/v1", info.started)
    print_table(table)


@serve.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Only the server on this port.")
def stop(port):
    """Stop the servers halo started (from their pid files)."""
    echo_stopped(stop_servers(port), "server", port,
                 lambda info: f"port {info.port}, {info.backend}")


def echo_stopped(stopped, what: str, port: int | None, describe) -> None:
    """One line per process stopped, or that none of `what` was running."""
    if not stopped:
        click.echo(f"no running {what} started by halo" + (f" on port {port}" if port else ""))
    for info in stopped:
        click.echo(f"stopped pid {info.pid} ({describe(info)})")


@serve.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def presets(as_json):
    """List the serve presets (configs/serve-presets.ini + $HALO_HOME/serve-presets.ini)."""
    items = list(load_presets().values())
    if as_json:
        emit_json(items)
        return
    table = Table("preset", "model", "ctx", "parallel", "description")
    for p in items:
        table.add_row(p.name, p.model, str(p.ctx), str(p.parallel), p.description)
    print_table(table)
