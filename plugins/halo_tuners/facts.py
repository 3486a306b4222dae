"""What the tuners know about a machine that halo's core does not need: tuned's active profile
and the APU's power limits as ryzenadj reads them. `halo audit` shows them and every run's
system.json records them, through the `host_facts` hook."""

from __future__ import annotations

import os
from pathlib import Path

from halo_core.plugin_api import ToolFailed, hookimpl, is_live, read_text, run_capture, which

TUNED_PROFILE = "/etc/tuned/active_profile"
_RYZENADJ_ROWS = {"STAPM LIMIT": "stapm", "PPT LIMIT FAST": "fast", "PPT LIMIT SLOW": "slow",
                  "PPT LIMIT APU": "apu-slow"}


def tuned_profile(root: Path) -> str | None:
    """tuned's active profile, from /etc/tuned/active_profile under `root`."""
    return (read_text(root, TUNED_PROFILE) or "").strip() or None


def parse_ryzenadj_info(text: str) -> dict[str, float]:
    """The limit rows of `ryzenadj -i`'s table, in watts: {"stapm": 85.0, "fast": ..., ...}."""
    limits = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] in _RYZENADJ_ROWS:
            try:
                limits[_RYZENADJ_ROWS[cells[0]]] = float(cells[1])
            except ValueError:
                continue
    return limits


def power_limits(root: Path) -> dict[str, float] | None:
    """The APU power limits in watts from `ryzenadj -i`: live system and root only, else None."""
    if not is_live(root) or os.geteuid() != 0:
        return None  # ryzenadj reads the SMU through /dev/mem: root only
    program = which(root, "ryzenadj")
    if not program:
        return None
    try:
        done = run_capture([program, "-i"], timeout=20)
    except ToolFailed:
        return None
    return parse_ryzenadj_info(done.stdout) or None


@hookimpl
def host_facts(root, ask_tools):
    limits = power_limits(root) if ask_tools else None
    return {"tuned": tuned_profile(root) or "-",
            "power": ", ".join(f"{k} {v:.0f} W" for k, v in limits.items()) if limits
            else "ryzenadj limits not readable (root on the machine itself)"}
