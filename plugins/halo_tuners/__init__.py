"""halo's built-in tuners: `tuned`, `kernel`, `vram`, `power` for AMD APUs, and `nvidia`, which
reads an NVIDIA GPU's settings and changes nothing (see docs/tuning.md).

Each reads the machine through a sysroot and returns Change records; halo's core applies them
through its journal, so every one of them can be rolled back.
"""

from __future__ import annotations

from halo_core.plugin_api import hookimpl

from .facts import host_facts
from .kernel import KernelTuner, VramTuner
from .nvidia import NvidiaTuner
from .power import PowerTuner
from .tuned import TunedTuner

__all__ = ["KernelTuner", "NvidiaTuner", "PowerTuner", "TunedTuner", "VramTuner", "host_facts"]


@hookimpl
def register_tuners(register):
    # the order tuning is applied in: the seed's phase 1 (tuned, kernel, BIOS), then phase 2;
    # nvidia reads only
    for tuner in (TunedTuner(), KernelTuner(), VramTuner(), PowerTuner(), NvidiaTuner()):
        register(tuner)
