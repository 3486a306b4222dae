"""GPU facts: amdgpu through sysfs under a sysroot, NVIDIA through NVML on the live system.

Every GPU becomes one GpuFacts record; /sys/class/drm is walked here and nowhere else. NVML
comes from the optional nvidia-ml-py package (`pip install 'halo-llm[gpu]'`). halo imports it
only when the NVIDIA kernel driver shows itself, so a machine without one pays nothing, and a
missing package or libnvidia-ml.so means no NVIDIA GPUs, never an error. A sysroot is not asked
through NVML: it stands for another machine.
"""

from __future__ import annotations

import functools
import os
import re
import threading
from pathlib import Path
from typing import Callable

import attrs

from .hostfiles import host_path, is_live, read_int, read_scaled, read_text
from ..records import GpuFacts, GpuProcess

AMD, NVIDIA = "0x1002", "0x10de"
DRM = "/sys/class/drm"
NVIDIA_DRIVER = ("/dev/nvidiactl", "/proc/driver/nvidia/version", "/dev/dxg")
"""Where the NVIDIA kernel driver shows itself (native Linux and containers; WSL2)."""

Reader = Callable[[], float | None]


# -- amdgpu (and any DRM card) through sysfs ---------------------------------------------------

def _drm_cards(root: Path) -> list[tuple[str, str]]:
    """(card, host path of its device folder) of each DRM card, in card order: card1, not the
    connector card1-eDP-1 nor the render node renderD128."""
    drm = host_path(root, DRM)
    names = [p.name for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name)] if drm.is_dir() else []
    return [(name, f"{DRM}/{name}/device") for name in sorted(names, key=lambda n: int(n[4:]))
            if host_path(root, f"{DRM}/{name}/device").is_dir()]


def _text(root: Path, path: str) -> str:
    return (read_text(root, path) or "").strip()


def _hwmon(root: Path, dev: str) -> str | None:
    """The card's hwmon folder (temperature, power), as a host path."""
    folder = host_path(root, f"{dev}/hwmon")
    found = sorted(folder.glob("hwmon*")) if folder.is_dir() else []
    return f"{dev}/hwmon/{found[0].name}" if found else None


def _power_file(root: Path, mon: str | None) -> str | None:
    """amdgpu's power reading: power1_average (older kernels) or power1_input, microwatts."""
    names = (f"{mon}/power1_average", f"{mon}/power1_input") if mon else ()
    return next((p for p in names if host_path(root, p).exists()), None)


def _drm_gpu(root: Path, card: str, dev: str) -> GpuFacts:
    try:
        driver = os.path.basename(os.readlink(host_path(root, f"{dev}/driver")))
    except OSError:
        driver = ""
    pci = os.path.basename(os.path.realpath(host_path(root, dev)))  # /sys/devices/.../0000:c1:00.0
    mon = _hwmon(root, dev)
    power = _power_file(root, mon)
    return GpuFacts(
        card=card, vendor=_text(root, f"{dev}/vendor").lower(), device=_text(root, f"{dev}/device"),
        driver=driver, name=_text(root, f"{dev}/product_name"),
        pci=pci if re.fullmatch(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", pci) else "",
        vram_total=read_int(root, f"{dev}/mem_info_vram_total"),
        vram_used=read_int(root, f"{dev}/mem_info_vram_used"),
        gtt_total=read_int(root, f"{dev}/mem_info_gtt_total"),
        gtt_used=read_int(root, f"{dev}/mem_info_gtt_used"),
        busy_pct=read_scaled(root, f"{dev}/gpu_busy_percent", 1.0),
        temp_c=read_scaled(root, f"{mon}/temp1_input", 1e-3) if mon else None,
        power_w=read_scaled(root, power, 1e-6) if power else None,
        power_limit_w=read_scaled(root, f"{mon}/power1_cap", 1e-6) if mon else None,
    )


# -- NVIDIA through NVML ------------------------------------------------------------------------

_NVML_LOCK = threading.Lock()
_NVML: list = []  # [pynvml or None] once asked


def nvml_module():
    """pynvml, initialised once per process (threads asking at once wait for the first); None
    without the NVIDIA driver (then nvidia-ml-py is not even imported), without nvidia-ml-py,
    or without the NVML library. Ask it on the live system only: a sysroot stands for another
    machine."""
    with _NVML_LOCK:
        if not _NVML:
            _NVML.append(load_nvml() if any(os.path.exists(path) for path in NVIDIA_DRIVER) else None)
        return _NVML[0]


def load_nvml():
    """Import and initialise pynvml: the module, or None when nvidia-ml-py is not installed or
    NVML cannot start (libnvidia-ml.so missing, no driver loaded)."""
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return None
    return pynvml


def _ask(nvml, call, *args):
    """One NVML query; None where the GPU or its driver does not answer it."""
    try:
        return call(*args)
    except nvml.NVMLError:
        return None


def _watts(milliwatts: int | None) -> float | None:
    return None if milliwatts is None else round(milliwatts / 1000, 3)


def _processes(nvml, handle) -> tuple[GpuProcess, ...] | None:
    """Processes holding memory on the GPU (compute and graphics); None where NVML cannot say."""
    answers = [_ask(nvml, call, handle) for call in (nvml.nvmlDeviceGetComputeRunningProcesses,
                                                     nvml.nvmlDeviceGetGraphicsRunningProcesses)]
    if all(a is None for a in answers):
        return None
    found: dict[int, GpuProcess] = {}
    for proc in (p for a in answers for p in a or ()):
        found.setdefault(proc.pid, GpuProcess(proc.pid, proc.usedGpuMemory,
                                              _text(Path("/"), f"/proc/{proc.pid}/comm")))
    return tuple(found.values())


def _nvidia_gpu(nvml, index: int, driver: str | None, cuda: str | None) -> GpuFacts | None:
    ask = functools.partial(_ask, nvml)
    handle = ask(nvml.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return None
    pci, mem = ask(nvml.nvmlDeviceGetPciInfo, handle), ask(nvml.nvmlDeviceGetMemoryInfo, handle)
    util = ask(nvml.nvmlDeviceGetUtilizationRates, handle)
    cc = ask(nvml.nvmlDeviceGetCudaComputeCapability, handle)  # (9, 0)
    return GpuFacts(
        card=f"nvidia{index}",
        vendor=f"0x{pci.pciDeviceId & 0xFFFF:04x}" if pci else NVIDIA,  # the id is device << 16 | vendor
        device=f"0x{pci.pciDeviceId >> 16:04x}" if pci else "",
        driver="nvidia", name=ask(nvml.nvmlDeviceGetName, handle) or "",
        pci=pci.busId[-12:].lower() if pci else "",  # "00000000:01:00.0" -> "0000:01:00.0"
        vram_total=mem.total if mem else None, vram_used=mem.used if mem else None,
        busy_pct=util.gpu if util else None,
        temp_c=ask(nvml.nvmlDeviceGetTemperature, handle, nvml.NVML_TEMPERATURE_GPU),
        power_w=_watts(ask(nvml.nvmlDeviceGetPowerUsage, handle)),
        power_limit_w=_watts(ask(nvml.nvmlDeviceGetEnforcedPowerLimit, handle)),
        sm_clock_mhz=ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_SM),
        mem_clock_mhz=ask(nvml.nvmlDeviceGetClockInfo, handle, nvml.NVML_CLOCK_MEM),
        mem_clock_max_mhz=ask(nvml.nvmlDeviceGetMaxClockInfo, handle, nvml.NVML_CLOCK_MEM),
        mem_bus_width=ask(nvml.nvmlDeviceGetMemoryBusWidth, handle),
        compute_capability=".".join(map(str, cc)) if cc else None,
        driver_version=driver, cuda_version=cuda, processes=_processes(nvml, handle),
    )


def nvidia_gpus() -> list[GpuFacts]:
    """The NVIDIA GPUs of this machine through NVML; [] without driver, package or library."""
    nvml = nvml_module()
    if nvml is None:
        return []
    driver = _ask(nvml, nvml.nvmlSystemGetDriverVersion)
    cuda = _ask(nvml, nvml.nvmlSystemGetCudaDriverVersion_v2)  # 13000 -> "13.0"
    cuda_version = f"{cuda // 1000}.{cuda % 1000 // 10}" if cuda else None
    count = _ask(nvml, nvml.nvmlDeviceGetCount) or 0
    found = (_nvidia_gpu(nvml, index, driver, cuda_version) for index in range(count))
    return [gpu for gpu in found if gpu is not None]


# -- what the rest of halo asks ------------------------------------------------------------------

def read_gpus(root: Path = Path("/")) -> list[GpuFacts]:
    """Every GPU: the DRM cards under the sysroot, and on the live system the NVIDIA GPUs NVML
    sees (one that also has a DRM card is one record, named after the card)."""
    root = Path(root)
    found = [_drm_gpu(root, card, dev) for card, dev in _drm_cards(root)]
    if not is_live(root):
        return found
    for gpu in nvidia_gpus():
        same = next((i for i, g in enumerate(found) if gpu.pci and g.pci == gpu.pci), None)
        if same is None:
            found.append(gpu)
        else:
            found[same] = attrs.evolve(gpu, card=found[same].card)
    return found


def addressable_memory(found: list[GpuFacts]) -> tuple[int, tuple[GpuFacts, ...]]:
    """Memory a model can be loaded into, and the GPUs that hold it: the VRAM of all NVIDIA GPUs
    together (llama.cpp splits the layers across them), or VRAM + GTT of the one other card with
    the most (on an APU every card's GTT is the same RAM), whichever is larger; (0, ()) when no
    GPU reports its memory."""
    nvidia = tuple(g for g in found if g.vendor == NVIDIA and g.addressable)
    options = ([nvidia] if nvidia else []) + [(g,) for g in found if g.vendor != NVIDIA and g.addressable]
    best = max(options, key=lambda group: sum(g.addressable for g in group), default=())
    return sum(g.addressable for g in best), best


def theoretical_bandwidth(gpu: GpuFacts) -> float | None:
    """The vendor's peak memory bandwidth in GB/s: the highest memory clock x the bus width x 2
    (double data rate), as NVML reports them; None where either is unknown."""
    if not gpu.mem_clock_max_mhz or not gpu.mem_bus_width:
        return None
    return round(gpu.mem_clock_max_mhz * 1e6 * 2 * gpu.mem_bus_width / 8 / 1e9, 1)


def _combined(combine, read, handles) -> float:
    return float(combine(read(h) for h in handles))


def _nvidia_sensors() -> dict[str, Reader]:
    nvml = nvml_module()
    count = _ask(nvml, nvml.nvmlDeviceGetCount) if nvml else None
    if not count:
        return {}
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
    per_gpu = {  # column: (how the GPUs' readings combine, one GPU's reading)
        "gpu_busy_pct": (max, lambda h: nvml.nvmlDeviceGetUtilizationRates(h).gpu),
        "vram_used_bytes": (sum, lambda h: nvml.nvmlDeviceGetMemoryInfo(h).used),
        "gpu_temp_c": (max, lambda h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU)),
        "gpu_power_w": (sum, lambda h: nvml.nvmlDeviceGetPowerUsage(h) / 1000),
        "gpu_sm_clock_mhz": (max, lambda h: nvml.nvmlDeviceGetClockInfo(h, nvml.NVML_CLOCK_SM)),
    }
    readers = {column: functools.partial(_combined, combine, read, handles)
               for column, (combine, read) in per_gpu.items()}
    return {column: read for column, read in readers.items() if _ask(nvml, read) is not None}


def sensors(root: Path = Path("/")) -> dict[str, Reader]:
    """The GPU columns of the metrics CSV, for the sensors that exist: the first amdgpu card's
    sysfs files (busy %, VRAM and GTT used, hwmon temperature and power), else, on the live
    system, the NVIDIA GPUs through NVML (utilisation, memory used, temperature, power, SM
    clock: power and memory summed over the GPUs, the other readings their maximum)."""
    root = Path(root)
    dev = next((dev for _card, dev in _drm_cards(root) if _text(root, f"{dev}/vendor").lower() == AMD), None)
    if dev is None:
        return _nvidia_sensors() if is_live(root) else {}
    mon = _hwmon(root, dev)
    files = {"gpu_busy_pct": (f"{dev}/gpu_busy_percent", 1.0),
             "vram_used_bytes": (f"{dev}/mem_info_vram_used", 1.0),
             "gtt_used_bytes": (f"{dev}/mem_info_gtt_used", 1.0),
             "gpu_temp_c": (f"{mon}/temp1_input", 1e-3) if mon else None,
             "gpu_power_w": (_power_file(root, mon), 1e-6)}
    return {column: functools.partial(read_scaled, root, spec[0], spec[1])
            for column, spec in files.items()
            if spec and spec[0] and host_path(root, spec[0]).exists()}
