"""Facts about the machine recorded with every run, read through a sysroot (default "/")."""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from datetime import datetime, timezone
from pathlib import Path

import attrs

from .records import GpuMemory


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


def _int_file(root: Path, rel: str) -> int | None:
    text = _read(root, rel)
    return int(text) if text and text.isdigit() else None


def gpu_memory(root: Path = Path("/")) -> GpuMemory:
    """Memory the GPU can address: VRAM + GTT of the amdgpu card that has the most, read from
    /sys/class/drm/cardN/device/mem_info_{vram,gtt}_total; else MemTotal from /proc/meminfo.

    Cards are not added up: on an APU the GTT of every card is the same system RAM.
    """
    best: GpuMemory | None = None
    drm = Path(root) / "sys/class/drm"
    cards = sorted(drm.glob("card*"), key=lambda p: p.name) if drm.is_dir() else []
    for card in cards:
        if not re.fullmatch(r"card\d+", card.name):
            continue  # connectors such as card1-eDP-1
        rel = f"sys/class/drm/{card.name}/device"
        vram, gtt = _int_file(root, f"{rel}/mem_info_vram_total"), _int_file(root, f"{rel}/mem_info_gtt_total")
        if vram is None and gtt is None:
            continue
        found = GpuMemory(total=(vram or 0) + (gtt or 0), source="amdgpu", vram=vram or 0,
                          gtt=gtt or 0, card=card.name)
        if best is None or found.total > best.total:
            best = found
    if best is not None:
        return best
    return GpuMemory(total=meminfo(root).get("MemTotal", 0), source="meminfo")


def cpu_model(root: Path = Path("/")) -> str:
    for line in (_read(root, "proc/cpuinfo") or "").splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def system_state(root: Path = Path("/")) -> dict:
    """Provenance for a run directory: halo, Python, kernel and its command line, CPU, memory,
    GPUs with their VRAM/GTT totals, firmware, and the rest of the host facts."""
    from . import __version__
    from .hostfacts import read_facts
    from .store import to_json

    facts = read_facts(root)
    host = json.loads(to_json(facts))
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "halo_version": __version__,
        "python": sys.version.split()[0],
        "hostname": platform.node(),
        "os": facts.os_name or platform.platform(),
        "kernel": facts.kernel or platform.release(),
        "kernel_cmdline": facts.cmdline,
        "cpu": facts.cpu_model or cpu_model(root),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": facts.mem_total,
        "mem_available_bytes": facts.mem_available,
        "gpu_memory": attrs.asdict(gpu_memory(root)),
        "gpus": host["gpus"],
        "firmware": facts.firmware,
        "host": host,
    }
