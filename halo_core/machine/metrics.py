"""Hardware metrics sampled during long runs, read through a sysroot (default "/").

Columns exist only for sensors that exist: the GPU's from halo_core.gpu (amdgpu: busy %, VRAM
and GTT used, temperature and power from sysfs and its hwmon; NVIDIA through NVML: utilisation,
memory used, temperature, power, SM clock), then CPU busy %, memory used, CPU package power
(RAPL powercap) and CPU temperature (k10temp / coretemp hwmon). `halo monitor` runs the sampler
on its own; every bench run writes metrics.csv beside its results.
"""

from __future__ import annotations

import csv
import functools
import os
import threading
import time
from pathlib import Path

from . import gpu
from .gpu import Reader
from .hostfacts import meminfo
from .hostfiles import host_path, read_int, read_scaled, read_text


def _hwmon_named(root: Path, names: tuple[str, ...]) -> str | None:
    """The host path of the first /sys/class/hwmon entry named one of `names`."""
    for mon in sorted(host_path(root, "/sys/class/hwmon").glob("hwmon*")):
        if (read_text(root, f"/sys/class/hwmon/{mon.name}/name") or "").strip() in names:
            return f"/sys/class/hwmon/{mon.name}"
    return None


class _CpuBusy:
    def __init__(self, root: Path):
        self.path = root / "proc/stat"
        self.last = self._read()

    def _read(self):
        try:
            fields = [float(x) for x in self.path.read_text().splitlines()[0].split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    def __call__(self) -> float | None:
        now = self._read()
        last, self.last = self.last, now
        if now is None or last is None or now[0] <= last[0]:
            return None
        return round(100.0 * (1 - (now[1] - last[1]) / (now[0] - last[0])), 1)


class _EnergyRate:
    """Watts from a cumulative microjoule counter (RAPL), handling wrap-around."""

    def __init__(self, root: Path, counter: str, max_range: str):
        self.read = functools.partial(read_int, root, counter)
        self.max = read_int(root, max_range)
        self.last = (time.monotonic(), self.read())

    def __call__(self) -> float | None:
        now = (time.monotonic(), self.read())
        last, self.last = self.last, now
        if now[1] is None or last[1] is None or now[0] <= last[0]:
            return None
        delta = now[1] - last[1]
        if delta < 0 and self.max:
            delta += self.max
        return round(delta / 1e6 / (now[0] - last[0]), 2)


def sensors(root: Path = Path("/")) -> dict[str, Reader]:
    """The readers available on this host (or sysroot), by CSV column name."""
    root = Path(root)
    readers = gpu.sensors(root)
    if (root / "proc/stat").exists():
        readers["cpu_busy_pct"] = _CpuBusy(root)
    if (root / "proc/meminfo").exists():
        def mem_used(r=root):
            info = meminfo(r)
            if "MemTotal" in info and "MemAvailable" in info:
                return float(info["MemTotal"] - info["MemAvailable"])
            return None
        readers["mem_used_bytes"] = mem_used
    rapl = "/sys/class/powercap/intel-rapl:0"
    if os.access(host_path(root, f"{rapl}/energy_uj"), os.R_OK):
        readers["cpu_power_w"] = _EnergyRate(root, f"{rapl}/energy_uj", f"{rapl}/max_energy_range_uj")
    cpu_mon = _hwmon_named(root, ("k10temp", "coretemp", "zenpower"))
    if cpu_mon is not None and host_path(root, f"{cpu_mon}/temp1_input").exists():
        readers["cpu_temp_c"] = functools.partial(read_scaled, root, f"{cpu_mon}/temp1_input", 1e-3)
    return readers


POWER_COLUMNS = ("gpu_power_w", "cpu_power_w")
"""Where a row's power comes from, in order: the GPU's (amdgpu's hwmon power, on an APU such as
Strix Halo the whole package; NVIDIA's NVML power of all GPUs together), else the CPU package
power from RAPL."""


class MetricsSampler:
    """Samples every `interval` seconds into a CSV file from a background thread.

    Use as a context manager; `average(column, start, end)` summarises a time window
    (wall-clock seconds, as time.time()). The sensors are found in that thread too, so that a
    start (NVML's is ~0.09 s) does not hold up what the caller starts next; asking for
    `readers`, `columns` or `power_column` waits for them.
    """

    def __init__(self, path: Path, *, root: Path = Path("/"), interval: float = 1.0):
        self.path, self.interval, self.root = Path(path), interval, Path(root)
        self.rows: list[dict[str, float | None]] = []
        self._readers: dict[str, Reader] | None = None
        self._setup_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="halo-metrics", daemon=True)
        self._lock = threading.Lock()

    @property
    def readers(self) -> dict[str, Reader]:
        with self._setup_lock:  # (held by the thread while it finds them)
            if self._readers is None:
                self._readers = sensors(self.root)
            return self._readers

    @property
    def columns(self) -> list[str]:
        return ["time", *self.readers]

    @property
    def power_column(self) -> str | None:
        return next((c for c in POWER_COLUMNS if c in self.readers), None)

    def sample(self) -> dict[str, float | None]:
        row: dict[str, float | None] = {"time": round(time.time(), 3)}
        for column, read in self.readers.items():
            try:
                row[column] = read()
            except Exception:  # a sensor that vanished mid-run is a gap, not a crash
                row[column] = None
        return row

    def _loop(self) -> None:
        columns = self.columns
        new = not self.path.exists() or self.path.stat().st_size == 0
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=columns)
            if new:
                writer.writeheader()
            while True:
                row = self.sample()
                with self._lock:
                    self.rows.append(row)
                writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
                fh.flush()
                if self._stop.wait(self.interval):
                    break

    def __enter__(self) -> "MetricsSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def average(self, column: str, start: float, end: float) -> float | None:
        """Mean of `column` over [start, end]; the nearest samples when none fall inside."""
        with self._lock:
            points = [(r["time"], r.get(column)) for r in self.rows if r.get(column) is not None]
        inside = [v for t, v in points if start <= t <= end]
        if not inside:
            inside = [v for t, v in points if start - self.interval <= t <= end + self.interval]
        return round(sum(inside) / len(inside), 3) if inside else None
