"""Host facts read through a sysroot: what `halo audit` shows and the tuners decide on."""

from __future__ import annotations

from pathlib import Path

from halo_core.machine.hostfacts import GIB, installed_ram, is_live, kernel_version, read_facts, selected
from halo_core.plugins import PluginHost
from halo_native import rocm_version
from halo_tuners.facts import parse_ryzenadj_info, power_limits, tuned_profile

from sysroot import FEDORA_MEM_KB, UBUNTU_MEM_KB

RYZENADJ_INFO = """\
CPU Family: Strix Halo
SMU BIOS Interface Version: 26
Version: v0.17.0
PM Table Version: 5d0008
|        Name         |   Value   |     Parameter      |
|---------------------|-----------|--------------------|
| STAPM LIMIT         |    85.000 | stapm-limit        |
| STAPM VALUE         |    12.345 |                    |
| PPT LIMIT FAST      |    85.000 | fast-limit         |
| PPT VALUE FAST      |    14.012 |                    |
| PPT LIMIT SLOW      |    70.000 | slow-limit         |
| PPT VALUE SLOW      |    13.876 |                    |
| StapmTimeConst      |       nan | stapm-time         |
| PPT LIMIT APU       |    70.000 | apu-slow-limit     |
"""


def test_fedora_strix_halo(fedora_root):
    f = read_facts(fedora_root)
    assert not f.live and f.root == fedora_root
    assert f.cpu_vendor == "AuthenticAMD" and f.cpu_model == "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"
    assert f.is_amd_apu
    assert f.mem_total == FEDORA_MEM_KB * 1024
    assert f.installed_ram == 64 * GIB  # 62.2 GiB seen + 0.5 GiB carve-out, rounded up
    assert f.kernel == "6.18.5-200.fc43.x86_64"
    assert f.os_id == "fedora" and f.os_name == "Fedora Linux 43 (Workstation Edition)"
    assert [g.card for g in f.gpus] == ["card1"]  # not card1-eDP-1 nor renderD128
    gpu = f.amd_gpu
    assert (gpu.vendor, gpu.device, gpu.driver) == ("0x1002", "0x1586", "amdgpu")
    assert gpu.vram_total == 512 * 1024 * 1024 and gpu.gtt_total == f.ttm_pages_limit * 4096
    assert tuned_profile(fedora_root) == "throughput-performance"
    assert (f.thp_enabled, f.thp_defrag) == ("madvise", "madvise")
    assert f.sysctls == {"vm.swappiness": "60", "vm.dirty_ratio": "20", "vm.dirty_background_ratio": "10",
                         "vm.max_map_count": "65530", "vm.zone_reclaim_mode": "0"}
    assert f.firmware == "20251111-1.fc43"  # through rpm --root
    assert f.vulkan_icds == ("radeon_icd.x86_64.json",) and rocm_version(fedora_root) is None
    assert power_limits(fedora_root) is None  # tools are asked on the live system only
    assert f.extra == {}  # read without a plugin host: the core's facts only
    assert f.cmdline_params["root"] == "UUID=3b1c4e0a-9f41-4a8e-b0a5-1f0c9e6d2a11" and "rhgb" in f.cmdline_params
    assert len(f.boot_id) == 36


def test_ubuntu_with_a_large_carveout(ubuntu_root):
    f = read_facts(ubuntu_root)
    assert f.mem_total == UBUNTU_MEM_KB * 1024
    assert f.installed_ram == 128 * GIB  # 94.5 GiB seen + 32 GiB carve-out
    assert f.amd_gpu.card == "card0" and f.amd_gpu.vram_total == 32 * GIB
    assert f.firmware == "20251125.git1e2c15348-0ubuntu1"  # from /var/lib/dpkg/status
    assert f.cmdline_params["amd_iommu"] == "pt" and f.cmdline_params["amdgpu.gttsize"] == "126976"
    assert tuned_profile(ubuntu_root) is None and f.os_like == ("debian",)


def test_intel_is_not_an_amd_apu(intel_root):
    f = read_facts(intel_root)
    assert f.cpu_vendor == "GenuineIntel" and f.gpus == () and not f.is_amd_apu
    assert f.installed_ram == 32 * GIB


def test_files_only_mode_skips_tools(fedora_root):
    assert read_facts(fedora_root, ask_tools=False).firmware is None


def test_empty_sysroot_reads_as_unknowns(tmp_path):
    f = read_facts(tmp_path)
    assert (f.cpu_model, f.kernel, f.mem_total, f.installed_ram, f.gpus, f.firmware) == ("", "", None, None, (), None)
    assert not f.is_amd_apu


def test_helpers():
    assert is_live(Path("/")) and not is_live(Path("/tmp"))
    assert selected("always [madvise] never\n") == "madvise" and selected("always\n") == "always"
    assert selected(None) is None
    assert kernel_version("6.18.4-200.fc43.x86_64") == (6, 18, 4)
    assert kernel_version("6.17-rc3") == (6, 17, 0) and kernel_version("garbage") is None
    assert installed_ram(62 * GIB, None) == 64 * GIB and installed_ram(None, GIB) is None
    assert parse_ryzenadj_info(RYZENADJ_INFO) == {"stapm": 85.0, "fast": 85.0, "slow": 70.0, "apu-slow": 70.0}
    assert parse_ryzenadj_info("ryzenadj: unable to init") == {}


def test_plugins_add_what_only_they_need(fedora_root, tmp_path):
    """tuned, ryzenadj, ROCm and toolbox facts come from their plugins' host_facts hooks."""
    host = PluginHost.from_entry_points()
    f = read_facts(fedora_root, host=host)
    assert f.extra["tuners"] == {"tuned": "throughput-performance",
                                 "power": "ryzenadj limits not readable (root on the machine itself)"}
    assert f.extra["native"] == {"rocm": "none"}
    assert "toolbox" not in f.extra  # `toolbox list` on the live system only
    (tmp_path / "opt" / "rocm" / ".info").mkdir(parents=True)
    (tmp_path / "opt" / "rocm" / ".info" / "version").write_text("7.2.4-45\n")
    assert read_facts(tmp_path, host=host).extra["native"] == {"rocm": "7.2.4-45"}
    (tmp_path / "opt" / "rocm" / ".info" / "version").unlink()
    (tmp_path / "opt" / "rocm-6.4.1").mkdir()
    assert rocm_version(tmp_path) == "6.4.1"
