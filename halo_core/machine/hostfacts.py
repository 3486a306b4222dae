"""Machine facts, read through a sysroot (default "/"): what audit, verify and the tuners decide
on, and the provenance recorded with every run.

Everything comes from files (/proc, /sys, /etc, package databases), so a folder holding a
copy of those files is a complete stand-in for a machine. Only on the live system ("/") does
halo also ask tools that have no file to read: `rpm -q`, and NVML for NVIDIA GPUs (gpu.py holds
the GPU facts). What only a plugin needs (tuned's profile, ryzenadj's limits, toolbox
containers, ROCm) that plugin gathers, through its `host_facts` hook.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ToolFailed
from .gpu import AMD, addressable_memory, read_gpus
from .hostfiles import host_path, is_live, read_int, read_text
from ..records import HostFacts
from ..runner import run_capture
from ..store import to_json

if TYPE_CHECKING:
    from ..plugins import PluginHost

GIB = 1 << 30
PAGE_SIZE = 4096  # ttm.pages_limit counts 4 KiB pages

SYSCTL_KEYS = ("vm.swappiness", "vm.dirty_ratio", "vm.dirty_background_ratio",
               "vm.max_map_count", "vm.zone_reclaim_mode")
THP_ENABLED = "/sys/kernel/mm/transparent_hugepage/enabled"
THP_DEFRAG = "/sys/kernel/mm/transparent_hugepage/defrag"
TTM_PAGES_LIMIT = "/sys/module/ttm/parameters/pages_limit"
BIN_DIRS = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

def selected(value: str | None) -> str | None:
    """The active choice of a sysfs list ("always [madvise] never" -> "madvise")."""
    if value is None:
        return None
    match = re.search(r"\[([^\]]+)\]", value)
    return match.group(1) if match else value.strip()


def sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


def which(root: Path, name: str) -> str | None:
    """A program's host path: PATH on the live system, the usual bin folders in a sysroot."""
    if is_live(root):
        return shutil.which(name)
    for folder in BIN_DIRS:
        candidate = host_path(root, f"{folder}/{name}")
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return f"{folder}/{name}"
    return None


def kernel_version(release: str) -> tuple[int, int, int] | None:
    """"6.18.4-200.fc43.x86_64" -> (6, 18, 4)."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", release)
    if not match:
        return None
    return int(match.group(1)), int(match.group(2)), int(match.group(3) or 0)


def installed_ram(mem_total: int | None, carveout: int | None) -> int | None:
    """RAM on the board: what the kernel sees plus the BIOS VRAM carve-out, rounded up to 4 GiB."""
    if not mem_total:
        return None
    total = mem_total + (carveout or 0)
    step = 4 * GIB
    return -(-total // step) * step


def meminfo(root: Path = Path("/")) -> dict[str, int]:
    """/proc/meminfo in bytes."""
    out = {}
    for line in (read_text(root, "/proc/meminfo") or "").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[key] = int(parts[0]) * (1024 if parts[1:] == ["kB"] else 1)
    return out


def cpuinfo(root: Path = Path("/")) -> dict[str, str]:
    """The first processor's fields in /proc/cpuinfo."""
    fields: dict[str, str] = {}
    for line in (read_text(root, "/proc/cpuinfo") or "").splitlines():
        if not line.strip():
            if fields:
                break
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())
    return fields


def os_release(root: Path) -> dict[str, str]:
    text = read_text(root, "/etc/os-release") or read_text(root, "/usr/lib/os-release") or ""
    out = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and key.strip() and not key.startswith("#"):
            out[key.strip()] = value.strip().strip("\"'")
    return out


def firmware_version(root: Path, *, ask_tools: bool = True) -> str | None:
    """The linux-firmware package version: dpkg or pacman database, or `rpm -q` (a tool)."""
    status = read_text(root, "/var/lib/dpkg/status")
    if status:
        for stanza in status.split("\n\n"):
            fields = dict(re.findall(r"^([\w-]+): (.*)$", stanza, re.M))
            if fields.get("Package") == "linux-firmware" and "installed" in fields.get("Status", ""):
                return fields.get("Version")
    local = host_path(root, "/var/lib/pacman/local")
    if local.is_dir():
        for entry in sorted(local.glob("linux-firmware-[0-9]*")):
            match = re.search(r"%VERSION%\n(\S+)", read_text(root, f"/var/lib/pacman/local/{entry.name}/desc") or "")
            if match:
                return match.group(1)
    if ask_tools and shutil.which("rpm") and (is_live(root) or host_path(root, "/var/lib/rpm").is_dir()):
        try:
            done = run_capture(["rpm", "--root", str(Path(root).resolve()), "-q", "--qf",
                                "%{VERSION}-%{RELEASE}", "linux-firmware"], timeout=30)
        except ToolFailed:
            return None
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip().splitlines()[0]
    return None


def _vulkan_icds(root: Path) -> tuple[str, ...]:
    names = []
    for folder in ("/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"):
        path = host_path(root, folder)
        if path.is_dir():
            names += sorted(p.name for p in path.glob("*.json"))
    return tuple(names)


def read_facts(root: Path = Path("/"), *, ask_tools: bool = True,
               host: "PluginHost | None" = None) -> HostFacts:
    """Everything `halo audit` shows and the tuners decide on, for one sysroot; with `host`,
    also what its plugins know (`extra`, their `host_facts` hooks: tuned, ryzenadj, toolboxes,
    ROCm).

    `ask_tools=False` reads files only: a fact that needs a tool (the firmware version through
    rpm) is left None, and the plugins are told so.
    """
    root = Path(root)
    mem = meminfo(root)
    cpu = cpuinfo(root)
    gpus = read_gpus(root)
    release = os_release(root)
    amd = next((g for g in gpus if g.vendor == AMD), None)
    carveout = amd.vram_total if amd and cpu.get("vendor_id") == "AuthenticAMD" else None
    return HostFacts(
        root=root,
        live=is_live(root),
        cpu_model=cpu.get("model name", ""),
        cpu_vendor=cpu.get("vendor_id", ""),
        mem_total=mem.get("MemTotal"),
        mem_available=mem.get("MemAvailable"),
        installed_ram=installed_ram(mem.get("MemTotal"), carveout),
        kernel=(read_text(root, "/proc/sys/kernel/osrelease") or "").strip(),
        cmdline=(read_text(root, "/proc/cmdline") or "").strip(),
        os_id=release.get("ID", ""),
        os_like=tuple(release.get("ID_LIKE", "").split()),
        os_name=release.get("PRETTY_NAME", ""),
        gpus=gpus,
        ttm_pages_limit=read_int(root, TTM_PAGES_LIMIT),
        thp_enabled=selected(read_text(root, THP_ENABLED)),
        thp_defrag=selected(read_text(root, THP_DEFRAG)),
        sysctls={key: value.strip() for key in SYSCTL_KEYS
                 if (value := read_text(root, sysctl_path(key))) is not None},
        firmware=firmware_version(root, ask_tools=ask_tools),
        vulkan_icds=_vulkan_icds(root),
        extra=host.host_facts(root, ask_tools) if host is not None else {},
        boot_id=(read_text(root, "/proc/sys/kernel/random/boot_id") or "").strip(),
    )


def system_state(root: Path = Path("/")) -> dict:
    """Provenance for a run directory: halo, Python, kernel and its command line, CPU, memory,
    the GPUs (amdgpu VRAM/GTT; NVIDIA name, driver, CUDA, clocks), firmware, and the rest of
    the host facts."""
    from .. import __version__

    from ..plugins import get_host

    facts = read_facts(root, host=get_host())
    host = json.loads(to_json(facts))
    return {
        "captured_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "halo_version": __version__,
        "python": sys.version.split()[0],
        "hostname": platform.node(),
        "os": facts.os_name or platform.platform(),
        "kernel": facts.kernel or platform.release(),
        "kernel_cmdline": facts.cmdline,
        "cpu": facts.cpu_model or platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "mem_total_bytes": facts.mem_total,
        "mem_available_bytes": facts.mem_available,
        "gpu_memory_bytes": addressable_memory(facts.gpus)[0] or None,
        "gpus": host["gpus"],
        "firmware": facts.firmware,
        "host": host,
    }
