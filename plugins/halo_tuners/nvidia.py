"""`nvidia`: what an NVIDIA GPU's driver has in effect, read-only through NVML (docs/tuning.md).

Two halves: `read_nvml` asks NVML and returns the raw readings as plain JSON (`halo audit
--json` shows them under "readings"), and `nvml_checks` turns readings into checks without
asking anything, so recorded readings of a real GPU test it. halo changes no GPU setting: the
plan is always empty, the guidance names what an admin could run.
"""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import Availability, Check, HostFacts, Tuner, is_live, nvml_module

NVIDIA = "0x10de"  # the PCI vendor id of GpuFacts.vendor

CLOCK_EVENTS = {  # nvmlClocksEventReason* (nvml.h) bit -> (name, status, what it means)
    0x001: ("gpu_idle", "PASS", "idle"),
    0x002: ("applications_clocks_setting", "WARN", "application clocks set below the maximum"),
    0x004: ("sw_power_cap", "WARN", "held at the power limit"),
    0x008: ("hw_slowdown", "FAIL", "hardware slowdown (temperature or power brake)"),
    0x010: ("sync_boost", "PASS", "synchronised with other GPUs' boost"),
    0x020: ("sw_thermal_slowdown", "WARN", "driver slowdown for temperature"),
    0x040: ("hw_thermal_slowdown", "FAIL", "hardware slowdown for temperature"),
    0x080: ("hw_power_brake_slowdown", "FAIL", "external power brake (the power supply)"),
    0x100: ("display_clock_setting", "PASS", "clocks set by the display"),
    0x200: ("board_limit", "WARN", "board limit"),
    0x400: ("reliability", "WARN", "reliability limit"),
}
_RANK = {"PASS": 0, "WARN": 1, "FAIL": 2}


def _ask(nvml, errors: dict, key: str, call, *args):
    """One NVML query; None (the reason kept in `errors[key]`) where it is not answered."""
    try:
        return call(*args)
    except nvml.NVMLError as exc:
        errors[key] = str(exc)
        return None


def _text(value):
    return value.decode() if isinstance(value, bytes) else value


def _pair(value):
    return list(value) if value is not None else None


def _gpu(nvml, index: int) -> dict:
    errors: dict[str, str] = {}
    handle = _ask(nvml, errors, "handle", nvml.nvmlDeviceGetHandleByIndex, index)
    if handle is None:
        return {"index": index, "errors": errors}

    def ask(key, call, *args):
        return _ask(nvml, errors, key, call, handle, *args)

    pci = ask("pci", nvml.nvmlDeviceGetPciInfo)
    events = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    reasons = ask("clock_event_reasons", events) if events else None
    if reasons is None:  # a driver older than the call (R535) still has the old name
        reasons = ask("clock_event_reasons", nvml.nvmlDeviceGetCurrentClocksThrottleReasons)
        if reasons is not None:
            errors.pop("clock_event_reasons", None)
    util = ask("utilization_gpu_pct", nvml.nvmlDeviceGetUtilizationRates)
    clocks = {name: ask(f"clock_{name}_mhz", nvml.nvmlDeviceGetClockInfo, clock)
              for name, clock in (("sm", nvml.NVML_CLOCK_SM), ("mem", nvml.NVML_CLOCK_MEM))}
    max_clocks = {name: ask(f"max_clock_{name}_mhz", nvml.nvmlDeviceGetMaxClockInfo, clock)
                  for name, clock in (("sm", nvml.NVML_CLOCK_SM), ("mem", nvml.NVML_CLOCK_MEM))}
    return {
        "index": index,
        "name": _text(ask("name", nvml.nvmlDeviceGetName)),
        "pci": _text(pci.busId) if pci else None,
        "persistence_mode": ask("persistence_mode", nvml.nvmlDeviceGetPersistenceMode),
        "performance_state": ask("performance_state", nvml.nvmlDeviceGetPerformanceState),
        "utilization_gpu_pct": util.gpu if util else None,
        "temperature_c": ask("temperature_c", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
        "power_usage_mw": ask("power_usage_mw", nvml.nvmlDeviceGetPowerUsage),
        "power_limit_enforced_mw": ask("power_limit_enforced_mw", nvml.nvmlDeviceGetEnforcedPowerLimit),
        "power_limit_default_mw": ask("power_limit_default_mw", nvml.nvmlDeviceGetPowerManagementDefaultLimit),
        "power_limit_constraints_mw": _pair(ask("power_limit_constraints_mw",
                                                nvml.nvmlDeviceGetPowerManagementLimitConstraints)),
        "clocks_mhz": clocks,
        "max_clocks_mhz": max_clocks,
        "clock_event_reasons": reasons,
        "pcie_link_gen": ask("pcie_link_gen", nvml.nvmlDeviceGetCurrPcieLinkGeneration),
        "pcie_link_gen_max": ask("pcie_link_gen_max", nvml.nvmlDeviceGetMaxPcieLinkGeneration),
        "pcie_link_gen_gpu_max": ask("pcie_link_gen_gpu_max", nvml.nvmlDeviceGetGpuMaxPcieLinkGeneration),
        "pcie_link_width": ask("pcie_link_width", nvml.nvmlDeviceGetCurrPcieLinkWidth),
        "pcie_link_width_max": ask("pcie_link_width_max", nvml.nvmlDeviceGetMaxPcieLinkWidth),
        "ecc_mode": _pair(ask("ecc_mode", nvml.nvmlDeviceGetEccMode)),  # [current, pending]
        "mig_mode": _pair(ask("mig_mode", nvml.nvmlDeviceGetMigMode)),  # [current, pending]
        "errors": errors,
    }


def read_nvml(nvml) -> dict:
    """Every reading the checks judge, per GPU, as plain JSON: NVML's own units and codes
    (milliwatts, MHz, 0/1 modes, the clock-event bitmask); a value NVML does not answer is
    None, with NVML's reason under the GPU's "errors"."""
    errors: dict[str, str] = {}
    count = _ask(nvml, errors, "count", nvml.nvmlDeviceGetCount) or 0
    return {
        "driver_version": _text(_ask(nvml, errors, "driver_version", nvml.nvmlSystemGetDriverVersion)),
        "cuda_driver_version": _ask(nvml, errors, "cuda_driver_version", nvml.nvmlSystemGetCudaDriverVersion_v2),
        "nvml_version": _text(_ask(nvml, errors, "nvml_version", nvml.nvmlSystemGetNVMLVersion)),
        "gpus": [_gpu(nvml, index) for index in range(count)],
        "errors": errors,
    }


# -- readings -> checks (pure) ------------------------------------------------------------------

def _unreadable(name: str, gpu: dict, *keys: str) -> Check:
    why = next((gpu["errors"][k] for k in keys if k in gpu.get("errors", {})), "no answer")
    return Check(name, "WARN", f"unreadable through NVML ({why})")


def _watts(mw: int) -> str:
    return f"{mw / 1000:g} W"


def _cuda(version: int | None) -> str:
    return f"{version // 1000}.{version % 1000 // 10}" if version else "?"


def _persistence(gpu: dict, name: str, i: int) -> Check:
    mode = gpu.get("persistence_mode")
    if mode is None:
        return _unreadable(name, gpu, "persistence_mode")
    if mode == 1:
        return Check(name, "PASS", "persistence mode on")
    return Check(name, "WARN", "persistence mode off: with no client the driver lets the GPU go, "
                               "and the next start pays for setting it up again",
                 f"sudo nvidia-smi -i {i} -pm 1 (or enable nvidia-persistenced)")


def _power(gpu: dict, name: str, i: int) -> Check:
    limit, bounds = gpu.get("power_limit_enforced_mw"), gpu.get("power_limit_constraints_mw")
    if limit is None or not bounds:
        return _unreadable(name, gpu, "power_limit_enforced_mw", "power_limit_constraints_mw")
    top = bounds[1]
    seen = f"power limit {_watts(limit)} of {_watts(top)} max"
    if limit >= top:
        return Check(name, "PASS", seen)
    return Check(name, "WARN", f"{seen}: the GPU slows down at {limit / top:.0%} of the power it may draw",
                 f"sudo nvidia-smi -i {i} -pl {top // 1000}")


def clock_events(mask: int) -> list[str]:
    """The names of the clock-event (throttle) reasons set in NVML's bitmask; unknown bits as hex."""
    names = [CLOCK_EVENTS[bit][0] for bit in CLOCK_EVENTS if mask & bit]
    rest = mask & ~sum(CLOCK_EVENTS)
    return names + ([f"0x{rest:x}"] if rest else [])


def _clocks(gpu: dict, name: str) -> Check:
    mask = gpu.get("clock_event_reasons")
    if mask is None:
        return _unreadable(name, gpu, "clock_event_reasons")
    clocks, top = gpu.get("clocks_mhz") or {}, gpu.get("max_clocks_mhz") or {}
    seen = f"SM {clocks.get('sm', '?')} of {top.get('sm', '?')} MHz, memory {clocks.get('mem', '?')} of " \
           f"{top.get('mem', '?')} MHz"
    found = [CLOCK_EVENTS[bit] for bit in CLOCK_EVENTS if mask & bit]
    if not found:
        return Check(name, "PASS", f"{seen}; no clock events")
    status = max((s for _n, s, _w in found), key=_RANK.__getitem__)
    detail = f"{seen}; clock events: " + ", ".join(f"{n} ({w})" for n, _s, w in found)
    fix = "" if status == "PASS" else "check cooling and power delivery; the power-limit check for the cap"
    return Check(name, status, detail, fix)


def _pcie(gpu: dict, name: str) -> Check:
    gen, gen_max = gpu.get("pcie_link_gen"), gpu.get("pcie_link_gen_max")
    width, width_max = gpu.get("pcie_link_width"), gpu.get("pcie_link_width_max")
    if None in (gen, gen_max, width, width_max):
        return _unreadable(name, gpu, "pcie_link_gen", "pcie_link_gen_max", "pcie_link_width",
                           "pcie_link_width_max")
    seen = f"PCIe gen {gen} of {gen_max}, x{width} of x{width_max}"
    gpu_max = gpu.get("pcie_link_gen_gpu_max")
    if gpu_max and gpu_max > gen_max:
        seen += f" (the GPU could do gen {gpu_max}; the slot cannot)"
    if width < width_max:
        return Check(name, "WARN", f"{seen}: the link runs on fewer lanes than it has",
                     "reseat the card or move it to a full-width slot")
    idle = bool((gpu.get("clock_event_reasons") or 0) & 0x1) or gpu.get("utilization_gpu_pct") == 0
    if gen < gen_max and not idle:
        return Check(name, "WARN", f"{seen} while busy", "check the slot's and the BIOS's PCIe settings")
    if gen < gen_max:
        return Check(name, "PASS", f"{seen}: an idle GPU lowers its link speed to save power")
    return Check(name, "PASS", seen)


def _modes(gpu: dict, key: str) -> tuple[bool, bool] | None:
    pair = gpu.get(key)
    return (pair[0] == 1, pair[1] == 1) if pair else None


def _ecc(gpu: dict, name: str) -> Check | None:
    modes = _modes(gpu, "ecc_mode")
    if modes is None:
        return None  # a GPU without ECC (most GeForce cards) has nothing to say
    word = {True: "on", False: "off"}
    if modes[0] == modes[1]:
        return Check(name, "PASS", f"ECC {word[modes[0]]}")
    return Check(name, "WARN", f"ECC {word[modes[0]]}, {word[modes[1]]} after the next GPU reset or reboot")


def _mig(gpu: dict, name: str, i: int) -> Check | None:
    modes = _modes(gpu, "mig_mode")
    if modes is None:
        return None  # a GPU without MIG
    if modes[0]:
        return Check(name, "WARN", "MIG on: llama.cpp runs in one MIG slice, with part of the GPU's "
                                   "memory and SMs", f"sudo nvidia-smi -i {i} -mig 0 (then reset the GPU)")
    if modes[1]:
        return Check(name, "WARN", "MIG off, on after the next GPU reset: llama.cpp would get one slice",
                     f"sudo nvidia-smi -i {i} -mig 0")
    return Check(name, "PASS", "MIG off: llama.cpp sees the whole GPU")


def nvml_checks(readings: dict) -> list[Check]:
    """The checks of `read_nvml`'s readings: the driver once, then each GPU's persistence,
    power limit, clocks, PCIe link, ECC and MIG (ECC and MIG only where the GPU has them)."""
    if readings.get("unavailable"):
        return [Check("nvml", "WARN", readings["unavailable"], "pip install 'halo-llm[gpu]'")]
    driver = readings.get("driver_version")
    checks = [Check("driver", "PASS", f"driver {driver} · CUDA {_cuda(readings.get('cuda_driver_version'))}")
              if driver else Check("driver", "WARN", "driver version unreadable through NVML")]
    for gpu in readings.get("gpus", []):
        i = gpu["index"]
        if "handle" in gpu.get("errors", {}):
            checks.append(_unreadable(f"gpu{i}", gpu, "handle"))
            continue
        checks += [_persistence(gpu, f"gpu{i} persistence", i), _power(gpu, f"gpu{i} power-limit", i),
                   _clocks(gpu, f"gpu{i} clocks"), _pcie(gpu, f"gpu{i} pcie")]
        checks += [c for c in (_ecc(gpu, f"gpu{i} ecc"), _mig(gpu, f"gpu{i} mig", i)) if c is not None]
    return checks


class NvidiaTuner(Tuner):
    """Reads what an NVIDIA GPU's driver has in effect; changes nothing."""

    name = "nvidia"
    description = "NVIDIA GPUs through NVML, read-only: persistence, power limit, clocks, PCIe, ECC, MIG"

    def applies(self, facts: HostFacts) -> Availability:
        if not facts.live:
            return Availability(False, "NVIDIA GPUs are read through NVML on the machine itself, "
                                       "not through a sysroot")
        if not any(g.vendor == NVIDIA for g in facts.gpus):
            return Availability(False, "no NVIDIA GPU on this host (NVML sees none)")
        return Availability(True)

    def readings(self, root: Path) -> dict | None:
        if not is_live(root):
            return None  # a sysroot stands for another machine: NVML would answer for this one
        nvml = nvml_module()
        if nvml is None:
            return {"unavailable": "an NVIDIA GPU is here, but NVML cannot be read (nvidia-ml-py "
                                   "or libnvidia-ml.so missing)"}
        return read_nvml(nvml)

    def verify(self, root: Path) -> list[Check]:
        readings = self.readings(root)
        return nvml_checks(readings) if readings is not None else []

    def plan(self, root: Path) -> list:
        return []  # halo changes no GPU setting

    def guidance(self, root: Path) -> str:
        fixes = [f"{c.name}: {c.fix}" for c in self.verify(root) if c.status != "PASS" and c.fix]
        if not fixes:
            return ""
        return "halo changes no GPU setting; an admin could run:\n" + "\n".join(fixes)
