"""`halo hw` (machine figures) and `halo monitor` (the metrics sampler on its own)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from ..machine.bandwidth import (
    DEVICES, Bandwidth, configured_bandwidth, device_bandwidth, save_bandwidth,
)
from ..machine.metrics import MetricsSampler
from .common import emit_json, err_console


@click.group()
def hw():
    """Machine figures halo uses (memory bandwidth for the roofline)."""


@hw.command("bandwidth")
@click.option("--set", "set_gbs", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Record a known figure in GB/s instead of measuring (e.g. 215 on Strix Halo).")
@click.option("--show", is_flag=True, help="Print the figure in use without measuring.")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Whose memory: an NVIDIA GPU's (the vendor's theoretical figure through NVML), "
                   "the host's (a measured memcpy), or auto: the GPU's where NVML sees one.")
@click.option("--seconds", type=click.FloatRange(min=0.1), default=2.0, show_default=True,
              help="How long the host memcpy runs.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def hw_bandwidth(set_gbs, show, device, seconds, as_json):
    """Record the memory bandwidth of the device that runs the model, for roofline percentages:
    an NVIDIA GPU's theoretical figure, a measured host memcpy, or a known figure (--set)."""
    if show:
        bw = configured_bandwidth()
        if bw is None:
            raise click.ClickException("no bandwidth figure yet: run `halo hw bandwidth` or `--set GBS`")
    elif set_gbs is not None:
        bw = Bandwidth(set_gbs, "configured", "set by `halo hw bandwidth --set`")
        save_bandwidth(bw)
    else:
        with err_console.status("finding the memory bandwidth"):
            bw = device_bandwidth(device, seconds=seconds)
        save_bandwidth(bw)
    if as_json:
        emit_json(bw)
    else:
        click.echo(f"{bw.gbs:g} GB/s, {bw.source}" + (f", {bw.device}" if bw.device else "")
                   + (f" ({bw.detail})" if bw.detail else ""))


@click.command()
@click.option("--interval", type=click.FloatRange(min=0.05), default=1.0, show_default=True,
              help="Seconds between samples.")
@click.option("--duration", type=click.FloatRange(min=0), default=None,
              help="Stop after this many seconds (default: until Ctrl-C).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="CSV file to append to (default: metrics-<time>.csv here).")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Sysroot to read sensors from.")
def monitor(interval, duration, output, root):
    """Sample hardware metrics (GPU busy, VRAM/GTT, temperatures, power, CPU, memory) to CSV."""
    output = output or Path(time.strftime("metrics-%Y%m%dT%H%M%S.csv"))
    sampler = MetricsSampler(output, root=root, interval=interval)
    click.echo(f"sampling {', '.join(sampler.columns[1:]) or 'nothing (no sensors found)'} "
               f"every {interval:g}s into {output}", err=True)
    started = time.monotonic()
    try:
        with sampler:
            while duration is None or time.monotonic() - started < duration:
                time.sleep(min(interval, 0.5))
                if sampler.rows:
                    last = sampler.rows[-1]
                    err_console.print(" ".join(f"{k}={v}" for k, v in last.items() if k != "time"),
                                      end="\r", highlight=False)
    except KeyboardInterrupt:
        pass
    click.echo(f"\n{len(sampler.rows)} samples in {output}", err=True)
