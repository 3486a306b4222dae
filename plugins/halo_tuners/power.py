"""The `power` tuner: APU power limits (ryzenadj), VM sysctls, transparent huge pages and
RADV_PERFTEST=nogttspill, each applied now and persisted for the next boot.

Seed measurements (HP ZBook Ultra G1a, Qwen3.5-35B-A3B, Vulkan): ryzenadj 85 W took tg from
~39 to ~57 t/s (+46%), the largest single gain; the firmware still caps the slow PPT at 70 W.
sysctl, THP and nogttspill were applied together with it and not measured on their own.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from halo_core.plugin_api import (
    Change, Check, THP_DEFRAG, THP_ENABLED, TuneError, host_path,
    read_facts, read_text, selected, sysctl_path, which,
)

from .common import ApuTuner, data_text, file_change, fix, read_exact, setting
from .facts import power_limits

SYSCTL_CONF = "/etc/sysctl.d/99-llm-inference.conf"
THP_CONF = "/etc/tmpfiles.d/halo-thp.conf"
RADV_CONF = "/etc/environment.d/radv-llm.conf"
UNIT_DIR = "/etc/systemd/system"
UNITS = ("ryzenadj-llm.service", "ryzenadj-resume.service")
THP = {THP_ENABLED: "always", THP_DEFRAG: "defer+madvise"}
TOLERANCE_W = 5  # firmware reports limits a few watts off what was set
LIMIT_FLAGS = ("stapm", "fast", "slow", "apu-slow")


def sysctl_values(text: str) -> dict[str, str]:
    """"key = value" lines of a sysctl.d file."""
    out = {}
    for line in text.splitlines():
        key, eq, value = line.partition("=")
        if eq and not line.lstrip().startswith(("#", ";")):
            out[key.strip()] = value.strip()
    return out


def wanted_by(unit: str) -> list[str]:
    """The targets a unit's [Install] WantedBy= names (what `systemctl enable` links into)."""
    return [t for line in re.findall(r"^WantedBy=(.*)$", unit, re.M) for t in line.split()]


def _radv_lines(root: Path) -> list[str]:
    lines = (read_text(root, "/etc/environment") or "").splitlines()
    folder = host_path(root, "/etc/environment.d")
    if folder.is_dir():
        for path in sorted(folder.glob("*.conf")):
            lines += path.read_text(errors="replace").splitlines()
    return [line for line in lines if re.match(r"\s*RADV_PERFTEST=", line)]


def _has_nogttspill(root: Path) -> bool:
    lines = _radv_lines(root)
    return bool(lines) and "nogttspill" in lines[-1]  # the last assignment wins


class PowerTuner(ApuTuner):
    name = "power"
    description = "ryzenadj power limits, VM sysctls, transparent huge pages, RADV_PERFTEST=nogttspill"

    def __init__(self, watts: int = 85):
        self.watts = watts

    def configure(self, settings):
        value = setting(self.name, settings, "watts")
        if value is None:
            return self
        if not value.isdigit() or not 15 <= int(value) <= 120:
            raise TuneError(f"power.watts={value} is outside 15-120 W")
        return PowerTuner(int(value))

    # -- what it writes ------------------------------------------------------------------

    def limits_argv(self, program: str) -> tuple[str, ...]:
        return (program, *(f"--{flag}-limit={self.watts * 1000}" for flag in LIMIT_FLAGS))

    def unit_text(self, unit: str, program: str) -> str:
        return (data_text(unit).replace("@RYZENADJ@", program)
                .replace("@LIMITS@", " ".join(self.limits_argv(program)[1:])))

    def _unit_changes(self, root: Path, program: str) -> list[Change]:
        changes = []
        for unit in UNITS:
            text = self.unit_text(unit, program)
            path = f"{UNIT_DIR}/{unit}"
            changes += file_change(self.name, root, path, text, f"systemd unit {unit}: power "
                                   f"limits {self.watts} W at boot / after resume")
            for target in wanted_by(text):
                link = f"{UNIT_DIR}/{target}.wants/{unit}"
                current = os.readlink(host_path(root, link)) if host_path(root, link).is_symlink() else None
                if current != path:
                    changes.append(Change(self.name, "link", link, f"enable {unit} for {target}",
                                          before=current, after=path))
        return changes

    def _ryzenadj(self, root: Path) -> list[Change]:
        program = which(root, "ryzenadj")
        if not program:
            return []
        units = self._unit_changes(root, program)
        changes = []
        if units:
            changes.append(Change(self.name, "command", "systemctl",
                                  "on rollback, after the units are gone: reload systemd",
                                  undo=("systemctl", "daemon-reload")))
            changes += units
            changes.append(Change(self.name, "command", "systemctl", "load the new units",
                                  argv=("systemctl", "daemon-reload")))
        limits = power_limits(root)
        low = limits is not None and limits.get("stapm", 0) < self.watts - TOLERANCE_W
        if units or low:
            undo: tuple[str, ...] = ()
            if limits and all(flag in limits for flag in LIMIT_FLAGS):
                undo = (program, *(f"--{flag}-limit={round(limits[flag] * 1000)}" for flag in LIMIT_FLAGS))
            note = "" if undo else " (no undo: the firmware's limits return at the next boot)"
            changes.append(Change(self.name, "command", "ryzenadj",
                                  f"APU power limits {self.watts} W now (STAPM, fast, slow, APU slow){note}",
                                  argv=self.limits_argv(program), undo=undo))
        return changes

    def _radv(self, root: Path) -> list[Change]:
        if _has_nogttspill(root):
            return []
        current = read_exact(root, RADV_CONF)
        if current is None:
            after = data_text("radv-llm.conf")
        elif re.search(r"^\s*RADV_PERFTEST=", current, re.M):
            after = re.sub(r"^(\s*RADV_PERFTEST=)(\S*)", lambda m: m.group(1) + ",".join(
                filter(None, [m.group(2), "nogttspill"])), current, flags=re.M)
        else:
            after = current + ("" if current.endswith("\n") or not current else "\n") + "RADV_PERFTEST=nogttspill\n"
        return file_change(self.name, root, RADV_CONF, after,
                           "RADV_PERFTEST=nogttspill for Vulkan RADV (from the next login)")

    def plan(self, root: Path) -> list[Change]:
        conf = data_text("99-llm-inference.conf")
        changes = file_change(self.name, root, SYSCTL_CONF, conf, "VM sysctls, kept across reboots")
        for key, value in sysctl_values(conf).items():
            current = read_text(root, sysctl_path(key))
            if current is not None and current.strip() != value:
                changes.append(Change(self.name, "sysctl", key, f"{key} = {value} now",
                                      before=current.strip(), after=value))
        for path, value in THP.items():
            current = selected(read_text(root, path))
            if current is not None and current != value:
                changes.append(Change(self.name, "sysfs", path, f"transparent huge pages: {value} now",
                                      before=current, after=value))
        changes += file_change(self.name, root, THP_CONF, data_text("halo-thp.conf"),
                               "transparent huge pages at every boot (systemd-tmpfiles)")
        return changes + self._radv(root) + self._ryzenadj(root)

    def guidance(self, root: Path) -> str:
        if which(root, "ryzenadj"):
            return ""
        return ("ryzenadj is not installed, so the power limits stay as the firmware set them: "
                "build it from github.com/FlyGoat/RyzenAdj, copy it to /usr/local/bin, and run "
                "this again.")

    # -- what it checks ------------------------------------------------------------------

    def verify(self, root: Path) -> list[Check]:
        return [self._limits(root), self._memory(root)]

    def _limits(self, root: Path) -> Check:
        program = which(root, "ryzenadj")
        if not program:
            return Check("power-limits", "WARN", "ryzenadj not installed: the APU keeps the "
                                                 "firmware's power limits (85 W gave +46% tg on an HP ZBook Ultra G1a)",
                         "install RyzenAdj (github.com/FlyGoat/RyzenAdj), then " + fix(root, self.name))
        missing = [c.target for c in self._unit_changes(root, program)]
        limits = power_limits(root)
        if limits:
            seen = ", ".join(f"{k} {v:.0f} W" for k, v in limits.items())
        else:
            seen = "limits readable only as root on the machine itself"
        if missing:
            return Check("power-limits", "WARN", f"ryzenadj units not installed or enabled "
                                                 f"({len(missing)} missing); {seen}", fix(root, self.name))
        if limits and limits.get("stapm", 0) < self.watts - TOLERANCE_W:
            return Check("power-limits", "WARN", f"{seen}: below {self.watts} W", fix(root, self.name))
        cap = ""
        if limits and limits.get("slow", self.watts) < self.watts - TOLERANCE_W:
            cap = " (the firmware caps the slow limit; HP ZBook: 70 W)"
        return Check("power-limits", "PASS", f"ryzenadj {self.watts} W units installed and enabled; {seen}{cap}")

    def _memory(self, root: Path) -> Check:
        facts = read_facts(root, ask_tools=False)
        wrong = []
        for key, value in sysctl_values(data_text("99-llm-inference.conf")).items():
            current = facts.sysctls.get(key)
            if current is not None and current != value:
                wrong.append(f"{key}={current} (want {value})")
        if read_text(root, SYSCTL_CONF) is None:
            wrong.append(f"no {SYSCTL_CONF}")
        for label, current, want in (("THP", facts.thp_enabled, "always"),
                                     ("THP defrag", facts.thp_defrag, "defer+madvise")):
            if current is not None and current != want:
                wrong.append(f"{label} {current} (want {want})")
        if read_text(root, THP_CONF) is None:
            wrong.append("THP not kept across reboots")
        if not _has_nogttspill(root):
            wrong.append("RADV_PERFTEST=nogttspill not set")
        if wrong:
            return Check("memory-env", "WARN", "; ".join(wrong), fix(root, self.name))
        return Check("memory-env", "PASS", "VM sysctls, THP always (defrag defer+madvise), "
                                           "RADV_PERFTEST=nogttspill; all kept across reboots")
