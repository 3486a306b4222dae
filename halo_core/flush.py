"""`halo flush`: give the unified memory back after a stuck run.

Stops the servers, RPC workers and benches halo started (from their pid files, each checked by
pid and start time: never by process name), stops the toolbox containers those pid files name,
drops the page cache when root, and reads the GPU memory still in use from amdgpu sysfs.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import attrs

from .metrics import amdgpu_devices
from .runner import run_capture
from .serve import read_pid_files, stop_process


@attrs.frozen
class GpuUse:
    """Memory one amdgpu device has in use (bytes), as sysfs says."""

    card: str
    vram_used: int | None
    gtt_used: int | None


@attrs.frozen
class FlushReport:
    stopped: tuple[str, ...] = attrs.field(converter=tuple)  # "server pid 123 (port 8080)"
    stale: tuple[str, ...] = attrs.field(converter=tuple)  # pid files whose process was gone
    containers: tuple[str, ...] = attrs.field(converter=tuple)  # "llama-rocm-7.2.1: stopped"
    caches: str  # what happened to the page cache
    gpu: tuple[GpuUse, ...] = attrs.field(converter=tuple)


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def gpu_memory_used(root: Path = Path("/")) -> list[GpuUse]:
    return [GpuUse(device.parent.name, _read_int(device / "mem_info_vram_used"),
                   _read_int(device / "mem_info_gtt_used")) for device in amdgpu_devices(root)]


def _stop_container(name: str) -> str:
    podman = shutil.which("podman")
    if podman is None:
        return f"{name}: not stopped (podman not found)"
    done = run_capture([podman, "stop", name], timeout=120)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        return f"{name}: podman stop failed: {last[0]}"
    return f"{name}: stopped"


def drop_caches(root: Path = Path("/")) -> str:
    """sync, then 3 > proc/sys/vm/drop_caches under `root`, when running as root."""
    if os.geteuid() != 0:
        return "not dropped (not root: sudo halo flush drops the page cache)"
    target = root / "proc/sys/vm/drop_caches"
    if not target.exists():
        return f"not dropped ({target} does not exist)"
    os.sync()
    try:
        target.write_text("3\n")
    except OSError as exc:
        return f"not dropped ({target}: {exc.strerror})"
    return "dropped"


def flush(root: Path = Path("/"), *, containers: bool = True) -> FlushReport:
    """Stop what halo started, drop caches (as root), report GPU memory in use."""
    stopped, stale, names = [], [], []
    for info in read_pid_files():
        what = f"{info.kind} pid {info.pid}" + (f" (port {info.port})" if info.port else "")
        (stopped if stop_process(info) else stale).append(what)
        Path(info.pid_file).unlink(missing_ok=True)
        if info.container and info.container not in names:
            names.append(info.container)
    results = [_stop_container(name) for name in names] if containers else []
    return FlushReport(stopped, stale, results, drop_caches(root), gpu_memory_used(root))
