"""`halo flush`: stop what halo started, drop the page cache, show GPU memory in use."""

from __future__ import annotations

from pathlib import Path

import click

from ..llama.flush import flush_memory as run_flush
from .common import emit_json


@click.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Read and write /proc and /sys under this sysroot.")
@click.option("--keep-containers", is_flag=True,
              help="Do not ask the backends halo used to release what they started (a toolbox "
                   "backend stops its container).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def flush(root, keep_containers, as_json):
    """Stop the servers, RPC workers and benches halo started (pid files), let their backends
    release what they started (toolbox containers), drop the page cache (as root) and print the
    GPU memory still in use."""
    report = run_flush(root, release=not keep_containers)
    if as_json:
        emit_json(report)
        return
    for what in report.stopped:
        click.echo(f"stopped {what}")
    for what in report.stale:
        click.echo(f"already gone: {what}")
    if not report.stopped and not report.stale:
        click.echo("nothing halo started is running")
    for line in report.released:
        click.echo(line)
    click.echo(f"page cache: {report.caches}")
    if not report.gpu:
        click.echo("GPU memory: no amdgpu or NVIDIA GPU")
    for gpu in report.gpu:
        used = f"VRAM {_mib(gpu.vram_used)}" + (f", GTT {_mib(gpu.gtt_used)}" if gpu.gtt_used is not None else "")
        click.echo(f"GPU memory in use ({gpu.card}{', ' + gpu.name if gpu.name else ''}): {used}")
        for proc in gpu.processes or ():
            click.echo(f"  pid {proc.pid} {proc.name or '?'}: {_mib(proc.used)}")


def _mib(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"
