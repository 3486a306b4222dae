"""The read-only `nvidia` tuner: its checks of recorded NVML readings of an H200, and where it
applies (here, with no NVIDIA GPU, it is skipped for real; on a GPU machine the real readings
go through the same checks).

tests/data/nvml-h200.json is a real capture of `read_nvml` on the project's H200 (driver
580.159.04, idle; nvidia-smi -q agreed on every value), the shape `halo audit --json` shows
under readings.nvidia. Each test sets the reading it is about, so its asserts hold for
another capture too."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from halo_core.machine import gpu
from halo_core.tune import tuning as tune
from halo_tuners.nvidia import NvidiaTuner, clock_events, nvml_checks, read_nvml

DATA = Path(__file__).parent / "data" / "nvml-h200.json"


@pytest.fixture
def readings():
    return json.loads(DATA.read_text())


def checked(readings, **gpu0) -> dict:
    """{check name: (status, detail, fix)} of the readings with GPU 0's `gpu0` values set."""
    changed = copy.deepcopy(readings)
    changed["gpus"][0].update(gpu0)
    return {c.name: (c.status, c.detail, c.fix) for c in nvml_checks(changed)}


def test_the_recorded_h200(readings):
    found = checked(readings)
    assert list(found) == ["driver", "gpu0 persistence", "gpu0 power-limit", "gpu0 clocks", "gpu0 pcie",
                           "gpu0 ecc", "gpu0 mig"]
    status, detail, _fix = found["driver"]
    assert status == "PASS" and detail.startswith(f"driver {readings['driver_version']} · CUDA ")
    # an idle H200 as the machine is set up: persistence on, 700 W of 700 W, idle clocks,
    # PCIe gen 5 x16, ECC on, MIG off
    assert {name: status for name, (status, _d, _f) in found.items() if status != "PASS"} == {}
    assert found["gpu0 clocks"][1] == ("SM 345 of 1980 MHz, memory 3201 of 3201 MHz; clock events: "
                                       "gpu_idle (idle)")


def test_persistence_off_is_a_warning(readings):
    assert checked(readings, persistence_mode=1)["gpu0 persistence"][0] == "PASS"
    status, detail, fix = checked(readings, persistence_mode=0)["gpu0 persistence"]
    assert status == "WARN" and detail.startswith("persistence mode off")
    assert fix.startswith("sudo nvidia-smi -i 0 -pm 1")


def test_a_power_limit_below_the_cards_maximum_is_a_warning(readings):
    top = readings["gpus"][0]["power_limit_constraints_mw"][1]
    assert checked(readings, power_limit_enforced_mw=top)["gpu0 power-limit"][0] == "PASS"
    status, detail, fix = checked(readings, power_limit_enforced_mw=top - 200_000)["gpu0 power-limit"]
    assert status == "WARN"
    assert detail.startswith(f"power limit {(top - 200_000) / 1000:g} W of {top / 1000:g} W max")
    assert fix == f"sudo nvidia-smi -i 0 -pl {top // 1000}"


def test_clock_events_are_decoded_and_judged(readings):
    assert clock_events(0) == [] and clock_events(0x1 | 0x4) == ["gpu_idle", "sw_power_cap"]
    assert clock_events(0x1000) == ["0x1000"]  # a bit a newer driver adds is shown, not dropped
    for mask, status in ((0, "PASS"), (0x1, "PASS"), (0x4, "WARN"), (0x20, "WARN"), (0x40, "FAIL"),
                         (0x80, "FAIL"), (0x8 | 0x1, "FAIL")):
        assert checked(readings, clock_event_reasons=mask)["gpu0 clocks"][0] == status, hex(mask)
    detail = checked(readings, clock_event_reasons=0x40)["gpu0 clocks"][1]
    assert "hw_thermal_slowdown (hardware slowdown for temperature)" in detail


def test_an_idle_link_at_a_lower_generation_is_no_failure(readings):
    gen_max = readings["gpus"][0]["pcie_link_gen_max"]
    width_max = readings["gpus"][0]["pcie_link_width_max"]
    idle = checked(readings, pcie_link_gen=1, pcie_link_width=width_max, clock_event_reasons=0x1,
                   utilization_gpu_pct=0)["gpu0 pcie"]
    assert idle[0] == "PASS" and "idle GPU lowers its link speed" in idle[1]
    busy = checked(readings, pcie_link_gen=1, pcie_link_width=width_max, clock_event_reasons=0,
                   utilization_gpu_pct=90)["gpu0 pcie"]
    assert busy[0] == "WARN" and busy[1].endswith("while busy")
    narrow = checked(readings, pcie_link_gen=gen_max, pcie_link_width=width_max // 2)["gpu0 pcie"]
    assert narrow[0] == "WARN" and f"x{width_max // 2} of x{width_max}" in narrow[1]


def test_mig_on_is_a_warning_and_ecc_is_information(readings):
    assert checked(readings, mig_mode=[0, 0])["gpu0 mig"][0] == "PASS"
    status, detail, fix = checked(readings, mig_mode=[1, 1])["gpu0 mig"]
    assert status == "WARN" and "one MIG slice" in detail and fix.startswith("sudo nvidia-smi -i 0 -mig 0")
    assert checked(readings, mig_mode=[0, 1])["gpu0 mig"][0] == "WARN"  # on after the next reset
    assert checked(readings, ecc_mode=[1, 1])["gpu0 ecc"] == ("PASS", "ECC on", "")
    assert checked(readings, ecc_mode=[1, 0])["gpu0 ecc"][0] == "WARN"


def test_what_nvml_does_not_answer_is_a_warning_or_left_out(readings):
    found = checked(readings, persistence_mode=None, ecc_mode=None, mig_mode=None,
                    errors={"persistence_mode": "Not Supported", "ecc_mode": "Not Supported",
                            "mig_mode": "Not Supported"})
    assert found["gpu0 persistence"] == ("WARN", "unreadable through NVML (Not Supported)", "")
    assert "gpu0 ecc" not in found and "gpu0 mig" not in found  # a GeForce has neither
    assert nvml_checks({"unavailable": "NVML cannot be read"})[0].status == "WARN"


# -- where the tuner applies -----------------------------------------------------------------------

NVIDIA_HERE = bool(gpu.nvidia_gpus())


@pytest.mark.skipif(NVIDIA_HERE, reason="NVML sees an NVIDIA GPU here")
def test_skipped_for_real_on_a_machine_without_an_nvidia_gpu(halo):
    done = halo("audit", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    skipped = {s["tuner"]: s["reason"] for s in data["skipped"]}
    assert skipped["nvidia"] == "no NVIDIA GPU on this host (NVML sees none)"
    assert all(c["tuner"] != "nvidia" for c in data["checks"]) and "nvidia" not in data["readings"]
    assert "not for this host: nvidia — no NVIDIA GPU on this host" in halo("audit").stdout
    only = halo("verify", "--only", "nvidia")
    assert only.returncode == 1
    assert only.stderr == ("Error: not for this host: nvidia — no NVIDIA GPU on this host (NVML sees "
                           "none)\n")


@pytest.mark.skipif(not NVIDIA_HERE, reason="no NVIDIA GPU seen through NVML here")
def test_the_real_gpus_readings_through_the_checks(halo):
    nvml = gpu.nvml_module()
    readings = read_nvml(nvml)
    assert readings["driver_version"] and len(readings["gpus"]) == len(gpu.nvidia_gpus())
    json.dumps(readings)  # plain JSON, as halo audit --json shows it
    data = json.loads(halo("audit", "--json").stdout)
    assert "nvidia" not in {s["tuner"] for s in data["skipped"]}
    assert data["readings"]["nvidia"]["gpus"][0]["name"] == readings["gpus"][0]["name"]
    names = [c["name"] for c in data["checks"] if c["tuner"] == "nvidia"]
    assert names[:5] == ["driver", "gpu0 persistence", "gpu0 power-limit", "gpu0 clocks", "gpu0 pcie"]


def test_a_sysroot_is_never_asked_through_nvml(fedora_root):
    assert NvidiaTuner().readings(fedora_root) is None and NvidiaTuner().verify(fedora_root) == []
    assert NvidiaTuner().plan(fedora_root) == [] and NvidiaTuner().guidance(fedora_root) == ""
    report = tune.verify_report(fedora_root)
    assert [(s.tuner, s.reason) for s in report.skipped] == [
        ("nvidia", "NVIDIA GPUs are read through NVML on the machine itself, not through a sysroot")]
