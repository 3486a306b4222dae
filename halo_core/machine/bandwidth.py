"""Machine figures halo uses in its reports: the memory bandwidth behind the roofline.

The figure comes from $HALO_BANDWIDTH_GBS, else from $HALO_HOME/hw.json, written by
`halo hw bandwidth` for the device that runs the model: an NVIDIA GPU's theoretical figure from
NVML (memory clock x bus width x 2), else a host memcpy measurement; or by
`halo hw bandwidth --set GBS`, a known figure such as the ~215 GB/s measured on Strix Halo.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import attrs

from ..errors import HaloError
from .gpu import nvidia_gpus, theoretical_bandwidth
from ..runs import now
from ..store import halo_home, write_json

DEVICES = ("auto", "host", "gpu")


@attrs.frozen
class Bandwidth:
    gbs: float
    source: str  # "env" | "measured" | "theoretical" | "configured"
    detail: str = ""  # how the figure was found
    device: str = ""  # whose memory: "host", "nvidia0 NVIDIA H200"; "" when not known


def _hw_file():
    return halo_home() / "hw.json"


def configured_bandwidth() -> Bandwidth | None:
    env = os.environ.get("HALO_BANDWIDTH_GBS")
    if env:
        try:
            return Bandwidth(float(env), "env", "HALO_BANDWIDTH_GBS")
        except ValueError:
            raise HaloError(f"HALO_BANDWIDTH_GBS must be a number of GB/s, not {env!r}") from None
    try:
        data = json.loads(_hw_file().read_text())
        return Bandwidth(float(data["bandwidth_gbs"]), data.get("source", "configured"),
                         data.get("detail", ""), data.get("device", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_bandwidth(bw: Bandwidth) -> None:
    write_json(_hw_file(), {"bandwidth_gbs": bw.gbs, "source": bw.source, "detail": bw.detail,
                            "device": bw.device,
                            "saved_at": now()})


def _copy_worker(size: int, seconds: float, out) -> None:
    src = bytearray(os.urandom(1 << 20)) * (size >> 20)
    dst = bytearray(size)
    view_src, view_dst = memoryview(src), memoryview(dst)
    copied, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        view_dst[:] = view_src  # one memcpy: reads `size` bytes and writes `size` bytes
        copied += size
    out.put((copied, time.perf_counter() - start))


def measure_bandwidth(*, workers: int | None = None, size_mib: int = 256,
                      seconds: float = 2.0) -> Bandwidth:
    """Copy bandwidth of main memory: `workers` processes (default: one per core) each
    memcpy a buffer far larger than the caches; bytes read + written per second."""
    workers = workers or os.cpu_count() or 1
    size = size_mib << 20
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_copy_worker, args=(size, seconds, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds * 10 + 60) for _ in procs]
    for p in procs:
        p.join()
    gbs = sum(2 * copied / elapsed for copied, elapsed in results) / 1e9
    return Bandwidth(round(gbs, 1), "measured",
                     f"memcpy of {size_mib} MiB in {workers} process(es), {seconds:g}s, read+write",
                     "host")


def gpu_bandwidth() -> Bandwidth | None:
    """The vendor's theoretical memory bandwidth of the first NVIDIA GPU NVML sees; None
    without one that reports its memory clock and bus width."""
    for gpu in nvidia_gpus():
        gbs = theoretical_bandwidth(gpu)
        if gbs:
            how = (f"NVML: {gpu.mem_clock_max_mhz} MHz memory clock x {gpu.mem_bus_width}-bit bus "
                   "x 2 (double data rate)")
            return Bandwidth(gbs, "theoretical", how, f"{gpu.card} {gpu.name}".strip())
    return None


def device_bandwidth(device: str = "auto", *, seconds: float = 2.0) -> Bandwidth:
    """The bandwidth the roofline should use for the device that runs the model: "gpu", the
    NVIDIA GPU's theoretical figure; "host", a measured host memcpy (CPU backends, and APUs
    such as Strix Halo whose GPU reads the same RAM); "auto", the GPU's where NVML sees one."""
    if device not in DEVICES:
        raise HaloError(f"unknown bandwidth device {device!r} (known: {', '.join(DEVICES)})")
    if device != "host":
        bw = gpu_bandwidth()
        if bw is not None:
            return bw
        if device == "gpu":
            raise HaloError("no NVIDIA GPU reports its memory clock and bus width through NVML "
                            "(needs the NVIDIA driver and nvidia-ml-py: pip install 'halo-llm[gpu]')")
    return measure_bandwidth(seconds=seconds)


def roofline_bandwidth(on_status=None) -> Bandwidth:
    """The figure in use, or, on a machine that has none yet, one found now and kept (so a
    user's first table has its roofline column): the NVIDIA GPU's theoretical figure where NVML
    sees one, else a one-second host memcpy. `halo hw bandwidth` redoes it."""
    bw = configured_bandwidth()
    if bw is None:
        if on_status:
            on_status("finding the memory bandwidth once, for the roofline column (kept; "
                      "`halo hw bandwidth` redoes it)")
        bw = device_bandwidth("auto", seconds=1.0)
        save_bandwidth(bw)
    return bw


def roofline_pct(avg_ts: float, model_size: int | None, bw: Bandwidth | None) -> float | None:
    """% of the bandwidth limit for token generation: every generated token reads the
    weights once, so the ceiling is bandwidth / model bytes (an upper bound for MoE models,
    which read only their active experts)."""
    if not bw or not model_size or bw.gbs <= 0:
        return None
    return round(100.0 * avg_ts * model_size / (bw.gbs * 1e9), 1)
