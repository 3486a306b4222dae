"""Machine figures halo uses in its reports: the memory bandwidth behind the roofline.

The figure comes from $HALO_BANDWIDTH_GBS, else from $HALO_HOME/hw.json (written by
`halo hw bandwidth`, a measurement, or `halo hw bandwidth --set GBS`, a known figure such as
the ~215 GB/s measured on Strix Halo).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time

import attrs

from .errors import HaloError
from .runs import now
from .store import halo_home, write_json


@attrs.frozen
class Bandwidth:
    gbs: float
    source: str  # "env" | "measured" | "configured"
    detail: str = ""


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
                         data.get("detail", ""))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_bandwidth(bw: Bandwidth) -> None:
    write_json(_hw_file(), {"bandwidth_gbs": bw.gbs, "source": bw.source, "detail": bw.detail,
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
                     f"memcpy of {size_mib} MiB in {workers} process(es), {seconds:g}s, read+write")


def roofline_pct(avg_ts: float, model_size: int | None, bw: Bandwidth | None) -> float | None:
    """% of the bandwidth limit for token generation: every generated token reads the
    weights once, so the ceiling is bandwidth / model bytes (an upper bound for MoE models,
    which read only their active experts)."""
    if not bw or not model_size or bw.gbs <= 0:
        return None
    return round(100.0 * avg_ts * model_size / (bw.gbs * 1e9), 1)
