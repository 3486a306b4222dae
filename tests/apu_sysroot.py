"""Sysroots: folders laid out like / with realistic files for what cannot exist here
(an AMD APU's amdgpu sysfs and hwmon, RAPL, k10temp)."""

from __future__ import annotations

from pathlib import Path

GIB = 1 << 30

PROC_STAT = """cpu  4705 150 1120 1600000 350 0 60 0 0 0
cpu0 2400 75 560 800000 170 0 30 0 0 0
cpu1 2305 75 560 800000 180 0 30 0 0 0
intr 1201145 0 9 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0
ctxt 2450101
btime 1764000000
processes 10234
"""

MEMINFO = """MemTotal:       131072000 kB
MemFree:        120000000 kB
MemAvailable:   125000000 kB
Buffers:            2048 kB
Cached:          3000000 kB
SwapTotal:              0 kB
"""


def write(root: Path, rel: str, text: str) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def strix_halo(root: Path, *, gpu_power_w: float | None = 65.0, hwmon: bool = True,
               rapl: bool = True) -> Path:
    """An AMD Ryzen AI MAX+ 395 host as sysfs shows it: Radeon 8060S (card1, 0x1002),
    512 MiB BIOS VRAM, 108 GiB GTT, amdgpu hwmon, RAPL package energy, k10temp."""
    dev = "sys/class/drm/card1/device"
    write(root, f"{dev}/vendor", "0x1002\n")
    write(root, f"{dev}/device", "0x1586\n")
    write(root, f"{dev}/gpu_busy_percent", "87\n")
    write(root, f"{dev}/mem_info_vram_total", f"{512 << 20}\n")
    write(root, f"{dev}/mem_info_vram_used", f"{300 << 20}\n")
    write(root, f"{dev}/mem_info_gtt_total", f"{108 * GIB}\n")
    write(root, f"{dev}/mem_info_gtt_used", f"{18 * GIB}\n")
    write(root, f"{dev}/vbios_version", "113-STRXLGEN-001\n")
    (root / "sys/class/drm/card1-eDP-1").mkdir(parents=True, exist_ok=True)  # a connector, not a card
    if hwmon:
        write(root, f"{dev}/hwmon/hwmon5/name", "amdgpu\n")
        write(root, f"{dev}/hwmon/hwmon5/temp1_input", "52000\n")
        if gpu_power_w is not None:
            write(root, f"{dev}/hwmon/hwmon5/power1_average", f"{int(gpu_power_w * 1e6)}\n")
    if rapl:
        write(root, "sys/class/powercap/intel-rapl:0/name", "package-0\n")
        write(root, "sys/class/powercap/intel-rapl:0/energy_uj", "1000000\n")
        write(root, "sys/class/powercap/intel-rapl:0/max_energy_range_uj", "65532610987\n")
    write(root, "sys/class/hwmon/hwmon2/name", "k10temp\n")
    write(root, "sys/class/hwmon/hwmon2/temp1_input", "61250\n")
    write(root, "proc/stat", PROC_STAT)
    write(root, "proc/meminfo", MEMINFO)
    write(root, "proc/cpuinfo", "processor\t: 0\nmodel name\t: AMD RYZEN AI MAX+ 395 w/ Radeon 8060S\n")
    write(root, "proc/cmdline", "BOOT_IMAGE=/vmlinuz-6.18.4 root=UUID=1 ro amd_iommu=off ttm.pages_limit=27648000\n")
    return root
