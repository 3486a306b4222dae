"""`halo flush`: give the unified memory back after a stuck run.

Stops the servers, RPC workers and benches halo started (from their pid files, each checked by
pid and start time: never by process name), asks the backends those pid files name to release
what they left behind (`Backend.release()`: a toolbox backend stops its container), drops the
page cache when root, and reads the GPU memory still in use (halo_core.gpu: amdgpu sysfs;
NVIDIA through NVML, with the processes holding it).
"""

from __future__ import annotations

import os
from pathlib import Path

import attrs

from ..errors import UnknownName
from ..machine.gpu import read_gpus
from ..plugins import PluginHost, get_host
from ..records import GpuFacts
from .process import forget, read_pid_files, stop_process


@attrs.frozen
class FlushReport:
    stopped: tuple[str, ...] = attrs.field(converter=tuple)  # "server pid 123 (port 8080)"
    stale: tuple[str, ...] = attrs.field(converter=tuple)  # pid files whose process was gone
    released: tuple[str, ...] = attrs.field(converter=tuple)  # "container llama-rocm-7.2.1: stopped"
    caches: str  # what happened to the page cache
    gpu: tuple[GpuFacts, ...] = attrs.field(converter=tuple)  # the GPUs that report memory in use


def gpu_memory_used(root: Path = Path("/")) -> list[GpuFacts]:
    """The GPUs that report the memory they have in use (VRAM, GTT; NVIDIA: per process too)."""
    return [g for g in read_gpus(root) if g.vram_used is not None or g.gtt_used is not None]


def _release(name: str, host: PluginHost) -> str:
    """What backend `name` says it released; a backend that is gone has nothing to release."""
    try:
        return host.backend(name).release()
    except UnknownName:
        return ""
    except Exception as exc:  # a plugin's bug must not stop the flush half way
        return f"{name}: release failed: {exc}"


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


def flush_memory(root: Path = Path("/"), *, release: bool = True,
          host: PluginHost | None = None) -> FlushReport:
    """Stop what halo started, let its backends release what they left (unless `release` is
    false), drop caches (as root), report GPU memory in use."""
    stopped, stale, backends = [], [], []
    for info in read_pid_files():
        (stopped if stop_process(info) else stale).append(str(info))
        forget(info)
        backends += [n for n in info.backend.split(",") if n and n not in backends]
    released = []
    if release:
        host = host or get_host()
        released = [line for line in (_release(n, host) for n in backends) if line]
    return FlushReport(stopped, stale, released, drop_caches(root), gpu_memory_used(root))
