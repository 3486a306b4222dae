"""Facts about the machine recorded with every run, read through a sysroot (default "/")."""

from __future__ import annotations

import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path


def _read(root: Path, rel: str) -> str | None:
    try:
        return (root / rel).read_text(errors="replace").strip()
    except OSError:
        return None


def meminfo(root: Path = Path("/")) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in (_read(root, "proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def cpu_model(root: Path = Path("/")) -> str:
    for line in (_read(root, "proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def system_state(root: Path = Path("/")) -> dict:
    """Provenance for a run directory: halo, Python, kernel, CPU, memory."""
    from . import __version__

    mem = meminfo(root)
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "halo_version": __version__,
        "python": sys.version.split()[0],
        "hostname": platform.node(),
        "os": platform.platform(),
        "kernel": platform.release(),
        "kernel_cmdline": _read(root, "proc/cmdline"),
        "cpu": cpu_model(root),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": mem.get("MemTotal"),
        "mem_available_bytes": mem.get("MemAvailable"),
    }
