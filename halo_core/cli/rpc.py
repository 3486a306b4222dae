"""`halo rpc`: llama.cpp RPC workers — start one (`serve`), check them (`status`), `stop`."""

from __future__ import annotations

import shlex

import click
from rich.table import Table

from ..errors import HaloError, ToolFailed
from ..records import RpcWorker
from ..llama.rpc import (
    DEFAULT_PORT, NO_AUTH, UnsafeWorkerBind, WORKER_FLAGS, WorkerSpec, check_worker_bind, limit_advice,
    parse_endpoints, probe_workers, start_worker, stop_workers, rpc_workers,
)
from ..llama.process import UnsafeBind, check_passthrough, connect_host
from ..store import human_size
from .common import PassThrough, backend_flags, passthrough, backend_options, emit_json, err_console, print_table, split_list
from .serve import echo_stopped, hold


@click.group()
def rpc():
    """llama.cpp RPC workers: split a model over several machines (or GPUs).

    Start a worker on each box with `halo rpc serve`, check them with `halo rpc status`, then
    give them to `halo bench run --rpc` or `halo serve --rpc`."""


@rpc.command("serve", cls=PassThrough)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option("--device", "devices", multiple=True,
              help="Devices to expose, e.g. CUDA0 or Vulkan0 (repeat or comma-separate; default: "
                   "every GPU, else the CPU).")
@click.option("--mem", type=click.IntRange(min=1), default=None,
              help="MiB to expose (older rpc-server builds only; newer ones report each device's own).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU device threads.")
@click.option("--cache", is_flag=True, help="Keep received tensors in the worker's local cache "
                                             "(faster reloads of the same model).")
@click.option("--backend", default=None, help="Backend to run the worker on [default: the configured default].")
@backend_flags
@click.option("--insecure", is_flag=True, help="Allow a non-loopback --host (RPC has no authentication).")
@click.option("--timeout", type=float, default=60, show_default=True,
              help="Seconds to wait for the worker to answer.")
@click.option("--detach", is_flag=True, help="Leave the worker running in the background (pid file).")
@click.option("--json", "as_json", is_flag=True, help="Print the worker record as JSON once ready.")
@passthrough
def serve_cmd(host, port, devices, mem, threads, cache, backend, backend_opts, insecure, timeout,
              detach, as_json, extra):
    """Start an RPC worker (ggml-rpc-server / rpc-server) and wait until it answers.

    Anything after `--` goes to the worker as it is."""
    try:
        check_worker_bind(host, port, insecure)
        check_passthrough(extra, WORKER_FLAGS)
    except (UnsafeWorkerBind, UnsafeBind) as exc:
        raise click.UsageError(str(exc)) from None
    if insecure:
        err_console.print(f"[yellow]warning[/yellow]: {NO_AUTH}; {limit_advice(port)}", highlight=False)
    spec = WorkerSpec(host=host, port=port, devices=split_list(devices), mem=mem, threads=threads,
                      cache=cache, insecure=insecure, extra=extra, ready_timeout=timeout,
                      **({"backend": backend} if backend else {}))
    try:
        worker = start_worker(spec, detach=detach, backend_options=backend_options(backend_opts))
    except ToolFailed as exc:
        if exc.log_tail:
            click.echo(f"worker log (last lines):\n{exc.log_tail}", err=True)
        raise
    info = worker.info
    hold(worker, [f"RPC worker on {info.backend}: {info.url} (pid {info.pid})",
                  f"command: {shlex.join(info.argv)}", f"log: {info.log}"],
         as_json=as_json, detach=detach, stop=f"halo rpc stop --port {info.port}",
         what="RPC worker", noun="worker")


def _devices(w: RpcWorker) -> str:
    return "; ".join(f"{d.name} {human_size(d.free)} free of {human_size(d.total)}"
                     for d in w.devices) or "-"


def _rate(w: RpcWorker) -> str:
    return f"{w.bandwidth * 8 / 1e9:.2f} Gbit/s" if w.bandwidth else (w.bandwidth_note or "-")


@rpc.command()
@click.argument("endpoints", required=False)
@click.option("--no-bandwidth", is_flag=True, help="Skip the 64 MiB upload that measures the link.")
@click.option("--timeout", type=float, default=5, show_default=True, help="Seconds to wait for each answer.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def status(endpoints, no_bandwidth, timeout, as_json):
    """Each worker (HOST:PORT,...; default: those halo started here): reachable, protocol
    version, devices and free memory, round-trip time and link bandwidth.

    Exit code 1 when a worker is down or incompatible."""
    if endpoints:
        targets = parse_endpoints(endpoints)
    else:
        targets = tuple(f"{connect_host(info.host)}:{info.port}" for info, alive in rpc_workers() if alive)
        if not targets:
            click.echo("no RPC workers started by halo (give HOST:PORT,... to check others)")
            return
    found = probe_workers(targets, timeout=timeout, bandwidth=not no_bandwidth)
    if as_json:
        emit_json(found)
    else:
        table = Table("worker", "state", "protocol", "devices (RPC order)", "round trip", "upload")
        for w in found:
            table.add_row(w.endpoint, w.state, w.version or "-", _devices(w),
                          f"{w.rtt_ms:.2f} ms" if w.rtt_ms is not None else "-", _rate(w))
        print_table(table)
        for w in found:
            if w.error:
                click.echo(f"{w.endpoint}: {w.error}")
        total = sum(w.total_memory for w in found)
        if total:
            click.echo(f"cluster memory: {human_size(total)} on {sum(len(w.devices) for w in found)} device(s)")
    bad = [w for w in found if w.state in ("down", "incompatible")]
    if bad:
        raise HaloError(f"{len(bad)} of {len(found)} RPC worker(s) not usable: {bad[0].endpoint} "
                        f"{bad[0].state}: {bad[0].error}")


@rpc.command()
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="Only the worker on this port.")
def stop(port):
    """Stop the RPC workers halo started (from their pid files)."""
    echo_stopped(stop_workers(port), "RPC worker", port,
                 lambda info: f"RPC worker {info.url}, {info.backend}")
