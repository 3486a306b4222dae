"""`halo flush`: stop what halo started, drop the page cache, show GPU memory in use."""

from __future__ import annotations

from pathlib import Path

import click

from ..flush import flush as run_flush
from .common import emit_json


@click.command()
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Read and write /proc and /sys under this sysroot.")
@click.option("--keep-containers", is_flag=True, help="Do not stop the toolbox containers halo used.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def flush(root, keep_containers, as_json):
    """Stop the servers, RPC workers and benches halo started (pid files), stop the
    containers they ran in, drop the page cache (as root) and print the GPU memory still in use."""
    report = run_flush(root, containers=not keep_containers)
    if as_json:
        emit_json(report)
        return
    for what in report.stopped:
        click.echo(f"stopped {what}")
    for what in report.stale:
        click.echo(f"already gone: {what}")
    if not report.stopped and not report.stale:
        click.echo("nothing halo started is running")
    for line in report.containers:
        click.echo(f"container {line}")
    click.echo(f"page cache: {report.caches}")
    if not report.gpu:
        click.echo("GPU memory: no amdgpu device")
    for gpu in report.gpu:
        vram, gtt = _mib(gpu.vram_used), _mib(gpu.gtt_used)
        click.echo(f"GPU memory in use ({gpu.card}): VRAM {vram}, GTT {gtt}")


def _mib(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"
