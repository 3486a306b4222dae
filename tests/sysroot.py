"""Sysroots with realistic files for the parts of a Strix Halo that cannot exist here:
amdgpu sysfs, /proc, root-owned /etc, GRUB, tuned, ryzenadj.

`fedora(path)`: Fedora 43, 64 GB, BIOS VRAM 512 MB, GRUB with BLS (grub2-mkconfig), tuned on
throughput-performance: a stock machine halo can tune completely.
`ubuntu(path)`: Ubuntu 24.04, 128 GB, BIOS VRAM still 32 GB, kernel 6.17, linux-firmware
20251125, `amd_iommu=pt amdgpu.gttsize=126976` on the command line (update-grub), no tuned.
`intel(path)`: a laptop that is not an AMD APU.

The tools in these sysroots (tuned-adm, ryzenadj) are stubs that fail if run: halo never runs
commands against a sysroot. `fake_rpm(bin_dir)` stands in for rpm, which this machine lacks.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

GIB = 1 << 30
KB = 1024

STUB = "#!/bin/sh\necho \"$0: a sysroot stub; halo must not run it\" >&2\nexit 97\n"


def write(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    target.chmod(mode)
    return target


def link(root: Path, path: str, to: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(to, target)


def meminfo(total_kb: int, available_kb: int) -> str:
    return (f"MemTotal:       {total_kb} kB\n"
            f"MemFree:        {available_kb - 2000000} kB\n"
            f"MemAvailable:   {available_kb} kB\n"
            "Buffers:            8052 kB\n"
            "Cached:          2893212 kB\n"
            "SwapCached:            0 kB\n"
            "SwapTotal:       8388604 kB\n"
            "SwapFree:        8388604 kB\n"
            "HugePages_Total:       0\n"
            "Hugepagesize:       2048 kB\n")


def cpuinfo(vendor: str, model: str, cpus: int = 2) -> str:
    block = ("processor\t: {n}\nvendor_id\t: {vendor}\ncpu family\t: 26\nmodel\t\t: 112\n"
             "model name\t: {model}\nstepping\t: 0\ncpu MHz\t\t: 2000.000\ncache size\t: 1024 KB\n"
             "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep avx2 avx512f\n\n")
    return "".join(block.format(n=n, vendor=vendor, model=model) for n in range(cpus))


def amdgpu(root: Path, card: str, *, vram: int, gtt: int, vram_used: int = 98 * 1024 * 1024,
           gtt_used: int = 21 * 1024 * 1024) -> None:
    dev = f"/sys/class/drm/{card}/device"
    write(root, f"{dev}/vendor", "0x1002\n")
    write(root, f"{dev}/device", "0x1586\n")
    write(root, f"{dev}/mem_info_vram_total", f"{vram}\n")
    write(root, f"{dev}/mem_info_vram_used", f"{vram_used}\n")
    write(root, f"{dev}/mem_info_gtt_total", f"{gtt}\n")
    write(root, f"{dev}/mem_info_gtt_used", f"{gtt_used}\n")
    link(root, f"{dev}/driver", "../../../../bus/pci/drivers/amdgpu")
    (root / f"sys/class/drm/{card}-eDP-1").mkdir(parents=True)  # a connector, not a card
    (root / "sys/class/drm/renderD128").mkdir(parents=True, exist_ok=True)


def common(root: Path, *, kernel: str, cmdline: str, total_kb: int) -> None:
    write(root, "/proc/sys/kernel/osrelease", kernel + "\n")
    write(root, "/proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")
    write(root, "/proc/cmdline", cmdline + "\n")
    write(root, "/proc/meminfo", meminfo(total_kb, total_kb - 6_000_000))
    for key, value in {"swappiness": "60", "dirty_ratio": "20", "dirty_background_ratio": "10",
                       "max_map_count": "65530", "zone_reclaim_mode": "0"}.items():
        write(root, f"/proc/sys/vm/{key}", value + "\n")
    write(root, "/sys/kernel/mm/transparent_hugepage/enabled", "always [madvise] never\n")
    write(root, "/sys/kernel/mm/transparent_hugepage/defrag",
          "always defer defer+madvise [madvise] never\n")
    # the kernel default: half of what the OS sees, in 4 KiB pages
    write(root, "/sys/module/ttm/parameters/pages_limit", f"{total_kb * KB // 2 // 4096}\n")
    link(root, "/etc/systemd/system/multi-user.target.wants/sshd.service",
         "/usr/lib/systemd/system/sshd.service")


FEDORA_GRUB = """\
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR="$(sed 's, release .*$,,g' /etc/system-release)"
GRUB_DEFAULT=saved
GRUB_DISABLE_SUBMENU=true
GRUB_TERMINAL_OUTPUT="console"
GRUB_CMDLINE_LINUX="rhgb quiet"
GRUB_DISABLE_RECOVERY="true"
GRUB_ENABLE_BLSCFG=true
"""

FEDORA_KERNEL = "6.18.5-200.fc43.x86_64"
FEDORA_MEM_KB = 65_246_516  # 64 GB board, 512 MB carve-out, kernel reservations


def fedora(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    common(root, kernel=FEDORA_KERNEL, total_kb=FEDORA_MEM_KB,
           cmdline=f"BOOT_IMAGE=(hd0,gpt2)/vmlinuz-{FEDORA_KERNEL} "
                   "root=UUID=3b1c4e0a-9f41-4a8e-b0a5-1f0c9e6d2a11 ro rootflags=subvol=root rhgb quiet")
    write(root, "/etc/os-release", 'NAME="Fedora Linux"\nVERSION="43 (Workstation Edition)"\n'
          "ID=fedora\nVERSION_ID=43\nPRETTY_NAME=\"Fedora Linux 43 (Workstation Edition)\"\n")
    write(root, "/proc/cpuinfo", cpuinfo("AuthenticAMD", "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"))
    amdgpu(root, "card1", vram=512 * 1024 * 1024, gtt=FEDORA_MEM_KB * KB // 2 // 4096 * 4096)
    write(root, "/etc/default/grub", FEDORA_GRUB)
    write(root, "/boot/grub2/grub.cfg", "#\n# DO NOT EDIT THIS FILE\n#\n# It is automatically generated "
          "by grub2-mkconfig\n#\nset pager=1\nblscfg\n")
    write(root, "/boot/grub2/grubenv", "# GRUB Environment Block\nsaved_entry=0f1b2c-" + FEDORA_KERNEL
          + "\nboot_success=1\n" + "#" * 900 + "\n")
    write(root, f"/boot/loader/entries/0f1b2c-{FEDORA_KERNEL}.conf",
          f"title Fedora Linux ({FEDORA_KERNEL}) 43 (Workstation Edition)\nversion {FEDORA_KERNEL}\n"
          f"linux /vmlinuz-{FEDORA_KERNEL}\ninitrd /initramfs-{FEDORA_KERNEL}.img\n"
          "options root=UUID=3b1c4e0a-9f41-4a8e-b0a5-1f0c9e6d2a11 ro rootflags=subvol=root rhgb quiet\n"
          "grub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n")
    write(root, "/etc/tuned/active_profile", "throughput-performance\n")
    write(root, "/etc/tuned/profile_mode", "auto\n")
    write(root, "/usr/sbin/tuned-adm", STUB, 0o755)
    write(root, "/usr/local/bin/ryzenadj", STUB, 0o755)
    link(root, "/etc/sysctl.d/99-sysctl.conf", "../sysctl.conf")
    write(root, "/etc/sysctl.conf", "# System default settings live in /usr/lib/sysctl.d/00-system.conf.\n")
    write(root, "/usr/share/vulkan/icd.d/radeon_icd.x86_64.json", '{"ICD": {"library_path": "libvulkan_radeon.so"}}\n')
    write(root, "/var/lib/rpm/.halo-test-linux-firmware", "20251111-1.fc43\n")
    return root


UBUNTU_GRUB = """\
# If you change this file, run 'update-grub' afterwards to update
# /boot/grub/grub.cfg.
# For full documentation of the options in this file, see:
#   info -f grub -n 'Simple configuration'

GRUB_DEFAULT=0
GRUB_TIMEOUT_STYLE=hidden
GRUB_TIMEOUT=0
GRUB_DISTRIBUTOR=`( . /etc/os-release; echo ${NAME:-Ubuntu} ) 2>/dev/null || echo Ubuntu`
GRUB_CMDLINE_LINUX_DEFAULT="quiet splash amd_iommu=pt amdgpu.gttsize=126976"
GRUB_CMDLINE_LINUX=""

# Uncomment to disable graphical terminal (grub-pc only)
#GRUB_TERMINAL=console
"""

UBUNTU_KERNEL = "6.17.0-1012-oem"
UBUNTU_MEM_KB = 99_104_768  # 128 GB board, 32 GB still carved out as VRAM
UBUNTU_DPKG = """\
Package: linux-firmware
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 1123456
Maintainer: Ubuntu Kernel Team <kernel-team@lists.ubuntu.com>
Architecture: all
Version: 20251125.git1e2c15348-0ubuntu1
Description: Firmware for Linux kernel drivers

Package: tuned-utils
Status: deinstall ok config-files
Version: 2.21.0-1
"""


def ubuntu(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    common(root, kernel=UBUNTU_KERNEL, total_kb=UBUNTU_MEM_KB,
           cmdline=f"BOOT_IMAGE=/boot/vmlinuz-{UBUNTU_KERNEL} root=UUID=7d2e9c1b-aa10-4c55-9b0e-2d3f4a5b6c7d "
                   "ro quiet splash amd_iommu=pt amdgpu.gttsize=126976 vt.handoff=7")
    write(root, "/etc/os-release", 'PRETTY_NAME="Ubuntu 24.04.3 LTS"\nNAME="Ubuntu"\nVERSION_ID="24.04"\n'
          "ID=ubuntu\nID_LIKE=debian\n")
    write(root, "/proc/cpuinfo", cpuinfo("AuthenticAMD", "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"))
    amdgpu(root, "card0", vram=32 * GIB, gtt=126976 * 1024 * 1024)
    write(root, "/etc/default/grub", UBUNTU_GRUB)
    write(root, "/boot/grub/grub.cfg", "#\n# DO NOT EDIT THIS FILE\n#\n# It is automatically generated "
          "by grub-mkconfig using templates\n#\n### BEGIN /etc/grub.d/00_header ###\n")
    write(root, "/usr/bin/ryzenadj", STUB, 0o755)
    write(root, "/var/lib/dpkg/status", UBUNTU_DPKG)
    write(root, "/etc/environment", 'PATH="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"\n')
    return root


def intel(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    common(root, kernel="6.18.7-200.fc43.x86_64", total_kb=32_500_000,
           cmdline="BOOT_IMAGE=(hd0,gpt2)/vmlinuz-6.18.7-200.fc43.x86_64 ro rhgb quiet")
    write(root, "/etc/os-release", "ID=fedora\nVERSION_ID=43\nPRETTY_NAME=\"Fedora Linux 43\"\n")
    write(root, "/proc/cpuinfo", cpuinfo("GenuineIntel", "Intel(R) Core(TM) Ultra 7 155H"))
    write(root, "/etc/default/grub", FEDORA_GRUB)
    return root


PROC_STAT = """cpu  4705 150 1120 1600000 350 0 60 0 0 0
cpu0 2400 75 560 800000 170 0 30 0 0 0
cpu1 2305 75 560 800000 180 0 30 0 0 0
intr 1201145 0 9 0 0 0 0 0 0 1 0 0 0 0 0 0 0 0 0 0
ctxt 2450101
btime 1764000000
processes 10234
"""


def sensors(root: Path, *, card: str = "card1", gpu_power_w: float | None = 65.0,
            hwmon: bool = True, rapl: bool = True) -> Path:
    """The sensors the metrics sampler reads, added to a sysroot: amdgpu busy % and hwmon
    (temperature, package power), RAPL package energy, k10temp, /proc/stat."""
    dev = f"/sys/class/drm/{card}/device"
    write(root, f"{dev}/gpu_busy_percent", "87\n")
    if hwmon:
        write(root, f"{dev}/hwmon/hwmon5/name", "amdgpu\n")
        write(root, f"{dev}/hwmon/hwmon5/temp1_input", "52000\n")
        if gpu_power_w is not None:
            write(root, f"{dev}/hwmon/hwmon5/power1_average", f"{int(gpu_power_w * 1e6)}\n")
    if rapl:
        write(root, "/sys/class/powercap/intel-rapl:0/name", "package-0\n")
        write(root, "/sys/class/powercap/intel-rapl:0/energy_uj", "1000000\n")
        write(root, "/sys/class/powercap/intel-rapl:0/max_energy_range_uj", "65532610987\n")
    write(root, "/sys/class/hwmon/hwmon2/name", "k10temp\n")
    write(root, "/sys/class/hwmon/hwmon2/temp1_input", "61250\n")
    write(root, "/proc/stat", PROC_STAT)
    return root


def strix_halo(root: Path, **options) -> Path:
    """The Fedora Strix Halo sysroot with every sensor the sampler reads."""
    return sensors(fedora(root), **options)


def fake_rpm(bin_dir: Path) -> Path:
    """An `rpm` that answers `rpm --root ROOT -q ... linux-firmware` from a file in the sysroot."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    write(bin_dir, "rpm", '#!/bin/sh\nroot=/\nwhile [ $# -gt 0 ]; do\n'
          '  case "$1" in --root) root=$2; shift;; esac; shift\ndone\n'
          'cat "$root/var/lib/rpm/.halo-test-linux-firmware" 2>/dev/null || '
          '{ echo "package linux-firmware is not installed"; exit 1; }\n', 0o755)
    return bin_dir


def reboot(root: Path, *, cmdline: str | None = None) -> None:
    """What a reboot does to a sysroot after a kernel apply: the GRUB parameters come into
    effect (cmdline, ttm limit, GTT size) and the boot id changes."""
    import re

    grub = (root / "etc/default/grub").read_text()
    params = " ".join(v for v in re.findall(r'^GRUB_CMDLINE_LINUX(?:_DEFAULT)?="([^"]*)"', grub, re.M) if v)
    current = (root / "proc/cmdline").read_text().split()
    boot = [t for t in current if t.startswith(("BOOT_IMAGE=", "root=", "ro", "rootflags="))]
    write(root, "/proc/cmdline", (cmdline or " ".join(boot + params.split())) + "\n")
    pages = re.search(r"ttm\.pages_limit=(\d+)", grub)
    if pages:
        write(root, "/sys/module/ttm/parameters/pages_limit", pages.group(1) + "\n")
        for card in (root / "sys/class/drm").glob("card*/device/mem_info_gtt_total"):
            card.write_text(f"{int(pages.group(1)) * 4096}\n")
    write(root, "/proc/sys/kernel/random/boot_id", f"{uuid.uuid4()}\n")


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under a sysroot: (kind, bytes or link target, permission bits)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = str(path.relative_to(root))
            if path.is_symlink():
                out[rel] = ("link", os.readlink(path), None)
            elif path.is_dir():
                out[rel] = ("dir", None, path.stat().st_mode & 0o7777)
            else:
                out[rel] = ("file", path.read_bytes(), path.stat().st_mode & 0o7777)
    return out


# -- pytest fixtures (import them into a test module to use them) ------------------------

import pytest  # noqa: E402


@pytest.fixture
def rpm_on_path(tmp_path, monkeypatch):
    bin_dir = fake_rpm(tmp_path / "bin")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.fixture
def fedora_root(tmp_path, rpm_on_path) -> Path:
    return fedora(tmp_path / "fedora")


@pytest.fixture
def ubuntu_root(tmp_path) -> Path:
    return ubuntu(tmp_path / "ubuntu")


@pytest.fixture
def intel_root(tmp_path) -> Path:
    return intel(tmp_path / "intel")
