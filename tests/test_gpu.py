"""GPU facts (halo_core.gpu): amdgpu on sysroots, NVML absent here for real (nvidia-ml-py installed,
libnvidia-ml.so missing), and, only on a machine with an NVIDIA GPU, NVML's real facts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from halo_core.machine import gpu
from halo_core.llama.flush import gpu_memory_used
from halo_core.machine.gpu import (
    AMD, NVIDIA, addressable_memory, read_gpus, sensors, theoretical_bandwidth,
)
from halo_core.records import GpuFacts

from sysroot import GIB, amdgpu, strix_halo, write

MiB = 1 << 20
NVIDIA_DRIVER = any(os.path.exists(p) for p in gpu.NVIDIA_DRIVER)


def test_amdgpu_from_a_sysroot(tmp_path):
    root = strix_halo(tmp_path / "root")
    [card] = read_gpus(root)  # not card1-eDP-1 (a connector) nor renderD128
    assert (card.card, card.vendor, card.device, card.driver) == ("card1", AMD, "0x1586", "amdgpu")
    assert (card.vram_total, card.vram_used, card.gtt_used) == (512 * MiB, 98 * MiB, 21 * MiB)
    assert card.addressable == 512 * MiB + card.gtt_total
    assert (card.busy_pct, card.temp_c, card.power_w) == (87, 52.0, 65.0)
    # what amdgpu does not report here stays None; a sysroot's device folder has no PCI address
    assert (card.sm_clock_mhz, card.mem_bus_width, card.driver_version, card.processes) == (None,) * 4
    assert card.pci == "" and card.power_limit_w is None


def test_cards_in_card_order_and_other_drivers(tmp_path):
    root = tmp_path / "root"
    amdgpu(root, "card10", vram=10 * GIB, gtt=4 * GIB)
    write(root, "/sys/class/drm/card2/device/vendor", "0x8086\n")  # an Intel iGPU: ids only
    write(root, "/sys/class/drm/card2/device/device", "0x7d55\n")
    (root / "sys/class/drm/card3").mkdir()  # a card without a device folder is no GPU
    found = read_gpus(root)
    assert [g.card for g in found] == ["card2", "card10"]  # 2 before 10
    assert (found[0].vendor, found[0].vram_total, found[0].addressable) == ("0x8086", None, None)
    assert addressable_memory(found) == (14 * GIB, (found[1],))
    # the metrics columns come from the AMD card, and only for the files it has
    assert list(sensors(root)) == ["vram_used_bytes", "gtt_used_bytes"]
    assert sensors(root)["gtt_used_bytes"]() == 21 * MiB


def test_addressable_memory():
    apu = GpuFacts("card1", AMD, "0x1586", vram_total=512 * MiB, gtt_total=62 * GIB)
    small = GpuFacts("card0", AMD, "0x1586", vram_total=64 * MiB, gtt_total=62 * GIB)
    h200 = [GpuFacts(f"nvidia{i}", NVIDIA, "0x2335", vram_total=141 * GIB) for i in range(2)]
    # an APU's cards share one RAM: the largest counts, not the sum
    assert addressable_memory([small, apu]) == (512 * MiB + 62 * GIB, (apu,))
    # NVIDIA GPUs' VRAM adds up (llama.cpp splits the layers across them)
    assert addressable_memory([apu, *h200]) == (282 * GIB, tuple(h200))
    assert addressable_memory([apu, h200[0]]) == (141 * GIB, (h200[0],))
    assert addressable_memory([GpuFacts("card0", "0x8086", "0x7d55")]) == (0, ())


def test_theoretical_bandwidth():
    # H200 as NVML reports it: 3201 MHz memory clock, 6016-bit bus
    h200 = GpuFacts("nvidia0", NVIDIA, "0x2335", mem_clock_max_mhz=3201, mem_bus_width=6016)
    assert theoretical_bandwidth(h200) == 4814.3
    assert theoretical_bandwidth(GpuFacts("card1", AMD, "0x1586")) is None


def test_sensors_of_a_sysroot_never_ask_nvml(tmp_path):
    assert sensors(tmp_path) == {} and read_gpus(tmp_path) == []


@pytest.mark.skipif(NVIDIA_DRIVER, reason="an NVIDIA driver is loaded here")
def test_nvml_library_missing_is_no_gpu_and_no_error():
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is in the test extra")
    with pytest.raises(pynvml.NVMLError_LibraryNotFound):  # the case this test is about, for real
        pynvml.nvmlInit()
    assert gpu.load_nvml() is None
    assert gpu.nvidia_gpus() == [] and all(g.vendor != NVIDIA for g in read_gpus(Path("/")))


@pytest.mark.skipif(NVIDIA_DRIVER, reason="an NVIDIA driver is loaded here")
def test_no_nvidia_driver_costs_nothing():
    """Without the NVIDIA driver, facts, sensors, flush and the bandwidth choice never import
    pynvml: nvidia-ml-py being installed makes nothing slower."""
    pytest.importorskip("pynvml", reason="nvidia-ml-py is in the test extra")
    code = ("import sys; from pathlib import Path\n"
            "from halo_core.llama import flush\nfrom halo_core.machine import bandwidth as hw, hostfacts, metrics\n"
            "hostfacts.system_state(Path('/')); metrics.sensors(Path('/'))\n"
            "flush.gpu_memory_used(Path('/')); assert hw.gpu_bandwidth() is None\n"
            "print('pynvml' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


# -- a real NVIDIA GPU: runs only where NVML sees one ----------------------------------------------

@pytest.fixture
def nvidia():
    found = gpu.nvidia_gpus()
    if not found:
        pytest.skip("no NVIDIA GPU seen through NVML here")
    return found


CUDA_CLIENT = """
import ctypes, sys
cuda = ctypes.CDLL("libcuda.so.1")
dev, ctx, mem = ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
assert cuda.cuInit(0) == 0 and cuda.cuDeviceGet(ctypes.byref(dev), 0) == 0
assert cuda.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) == 0 and cuda.cuCtxSetCurrent(ctx) == 0
assert cuda.cuMemAlloc_v2(ctypes.byref(mem), ctypes.c_size_t(256 << 20)) == 0
print("ready", flush=True)
sys.stdin.read()
"""
"""A process that holds 256 MiB on GPU 0 through the CUDA driver (shipped with NVML's driver)
until its stdin closes."""


def test_nvidia_facts_through_nvml(nvidia, halo):
    for card in nvidia:
        assert card.name and card.vendor == NVIDIA and card.driver == "nvidia"
        assert card.vram_total > 0 and 0 <= card.vram_used <= card.vram_total
        assert card.driver_version and card.cuda_version and card.compute_capability
        assert card.mem_bus_width > 0 and card.mem_clock_max_mhz > 0 and card.sm_clock_mhz > 0
        assert card.power_w > 0 and card.power_limit_w >= card.power_w and card.temp_c > 0
        assert 0 <= card.busy_pct <= 100 and card.pci
        assert theoretical_bandwidth(card) > 100  # GB/s: any CUDA GPU's memory does more
    assert [g for g in read_gpus(Path("/")) if g.vendor == NVIDIA] == nvidia

    columns = sensors(Path("/"))
    assert list(columns) == ["gpu_busy_pct", "vram_used_bytes", "gpu_temp_c", "gpu_power_w",
                             "gpu_sm_clock_mhz"]
    assert columns["gpu_power_w"]() > 0 and columns["vram_used_bytes"]() > 0

    bw = json.loads(halo("hw", "bandwidth", "--json").stdout)
    assert bw["source"] == "theoretical" and bw["gbs"] == theoretical_bandwidth(nvidia[0])
    assert bw["device"] == f"{nvidia[0].card} {nvidia[0].name}" and "NVML" in bw["detail"]
    shown = halo("hw", "bandwidth", "--show")
    assert shown.stdout.startswith(f"{bw['gbs']:g} GB/s, theoretical, {bw['device']} (NVML: ")
    host = json.loads(halo("hw", "bandwidth", "--device", "host", "--seconds", "0.3", "--json").stdout)
    assert host["source"] == "measured" and host["device"] == "host" and host["gbs"] > 0

    client = subprocess.Popen([sys.executable, "-c", CUDA_CLIENT], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline() == "ready\n"
        in_use = {g.card: g for g in gpu_memory_used(Path("/"))}[nvidia[0].card]
        [mine] = [p for p in in_use.processes if p.pid == client.pid]
        assert mine.used is None or mine.used >= 256 << 20
        assert mine.name == Path(sys.executable).name[:15]
    finally:
        client.stdin.close()
        client.wait(timeout=60)
