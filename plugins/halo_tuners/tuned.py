"""The `tuned` tuner: the accelerator-performance profile (seed: +5-8% pp, +2-3% tg).

The profile lives in /etc/tuned/active_profile (and profile_mode), which is what `tuned-adm
profile` writes; halo plans those files, so a sysroot shows the result, and runs tuned-adm on
the live system so the daemon switches now. The previous profile is kept twice: the file's
backup in the journal, and the `tuned-adm profile PREVIOUS` that rollback runs.
"""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import Change, Check, host_path, read_text, which

from .common import ApuTuner, file_change, fix, read_exact
from .facts import TUNED_PROFILE

PROFILE = "accelerator-performance"
PROFILE_MODE = "/etc/tuned/profile_mode"


def _installed(root: Path) -> bool:
    return bool(which(root, "tuned-adm")) or host_path(root, "/etc/tuned").is_dir()


class TunedTuner(ApuTuner):
    name = "tuned"
    description = "tuned profile accelerator-performance (previous profile kept for rollback)"

    def plan(self, root: Path) -> list[Change]:
        if not _installed(root):
            return []
        previous = (read_exact(root, TUNED_PROFILE) or "").strip()
        if previous == PROFILE:
            return []
        was = f" (was {previous})" if previous else ""
        changes = file_change(self.name, root, TUNED_PROFILE, PROFILE + "\n",
                              f"tuned profile {PROFILE}{was}: no deep CPU idle states, "
                              f"performance governor")
        changes += file_change(self.name, root, PROFILE_MODE, "manual\n",
                               "the profile was chosen by hand (tuned-adm sets this too)")
        undo = ("tuned-adm", "profile", previous) if previous else ("tuned-adm", "off")
        changes.append(Change(self.name, "command", "tuned-adm", "switch the running tuned daemon",
                              argv=("tuned-adm", "profile", PROFILE), undo=undo))
        return changes

    def guidance(self, root: Path) -> str:
        if _installed(root):
            return ""
        return ("tuned is not installed: sudo dnf install tuned (Ubuntu: sudo apt install tuned), "
                "sudo systemctl enable --now tuned, then run this again.")

    def verify(self, root: Path) -> list[Check]:
        if not _installed(root):
            return [Check("tuned", "WARN", "tuned is not installed",
                          "install tuned (dnf/apt install tuned), then " + fix(root, self.name))]
        current = (read_text(root, TUNED_PROFILE) or "").strip()
        if current == PROFILE:
            return [Check("tuned", "PASS", f"tuned profile {PROFILE}")]
        return [Check("tuned", "WARN", f"tuned profile {current or 'none'}; {PROFILE} measured "
                                       f"+5-8% pp, +2-3% tg", fix(root, self.name))]
