"""The `kernel` tuner (IOMMU and GTT on the kernel command line) and the `vram` tuner (BIOS
carve-out guidance, GTT verification; it writes nothing).

GTT is what the GPU may take from system RAM. The seed sized it as installed RAM minus 5 GiB
(64 GB -> 59 GiB = ttm.pages_limit 15466496), set with ttm.pages_limit alone: amdgpu.gttsize
is deprecated. amd_iommu=off measured 5-12% faster than iommu=pt; amd_iommu=pt is not a valid
value and the kernel ignores it silently.
"""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import (
    Change, Check, GIB, HostFacts, PAGE_SIZE, TuneError, firmware_version,
    kernel_version, read_facts, read_text,
)

from . import grub
from .common import ApuTuner, fix, gib, read_exact, setting

RESERVE = 5 * GIB  # what the seed leaves to the OS (64 GB -> 59 GiB of GTT)
MIN_RESERVE = 4 * GIB  # the least a --set kernel.gtt_gib may leave
MIN_KERNEL = (6, 18, 4)
BAD_FIRMWARE = "20251125"
MANAGED = {"iommu", "amd_iommu", "amdgpu.gttsize", "ttm.pages_limit"}


def recommended_pages(facts: HostFacts) -> int | None:
    if not facts.installed_ram:
        return None
    return (facts.installed_ram - RESERVE) // PAGE_SIZE


def _pages_gib(pages: int | str | None) -> str:
    try:
        return gib(int(pages) * PAGE_SIZE)
    except (TypeError, ValueError):
        return "?"


def _family(facts: HostFacts) -> set[str]:
    return {facts.os_id, *facts.os_like}


class KernelTuner(ApuTuner):
    name = "kernel"
    description = "amd_iommu=off and ttm.pages_limit (GTT) on the kernel command line, via GRUB"

    def __init__(self, gtt_gib: float | None = None):
        self.gtt_gib = gtt_gib

    def configure(self, settings):
        value = setting(self.name, settings, "gtt_gib")
        if value is None:
            return self
        try:
            return KernelTuner(float(value))
        except ValueError:
            raise TuneError(f"kernel.gtt_gib={value} is not a number of GiB") from None

    def target_pages(self, facts: HostFacts) -> int:
        if not facts.installed_ram:
            raise TuneError("cannot tell how much RAM this host has: /proc/meminfo has no MemTotal")
        if self.gtt_gib is None:
            return recommended_pages(facts)
        most = facts.installed_ram - MIN_RESERVE
        if self.gtt_gib < 1:
            raise TuneError(f"kernel.gtt_gib={self.gtt_gib:g} is too small: give the GPU at least 1 GiB")
        if self.gtt_gib * GIB > most:
            raise TuneError(f"kernel.gtt_gib={self.gtt_gib:g} does not fit the RAM: "
                            f"{facts.installed_ram // GIB} GiB leaves at most {most // GIB} GiB "
                            f"to the GPU ({MIN_RESERVE // GIB} GiB stay with the OS)")
        return int(self.gtt_gib * GIB) // PAGE_SIZE

    def plan(self, root: Path) -> list[Change]:
        text = read_exact(root, grub.GRUB_FILE)
        if text is None:
            return []  # not GRUB: guidance() says what to do
        facts = read_facts(root, ask_tools=False)
        pages = self.target_pages(facts)
        new = grub.edit(text, lambda key: key in MANAGED, ["amd_iommu=off", f"ttm.pages_limit={pages}"])
        if new == text:
            return []
        argv, writes = grub.mkconfig(root, facts, new)
        return [
            Change(self.name, "file", grub.GRUB_FILE,
                   f"kernel command line: amd_iommu=off, ttm.pages_limit={pages} "
                   f"(GTT {_pages_gib(pages)}); drops iommu=, amd_iommu=pt, amdgpu.gttsize",
                   before=text, after=new, needs_reboot=True),
            Change(self.name, "command", argv[0], "regenerate the GRUB configuration",
                   argv=argv, writes=writes, needs_reboot=True, regenerate=True),
        ]

    def guidance(self, root: Path) -> str:
        if read_text(root, grub.GRUB_FILE) is None:
            return ("No /etc/default/grub: halo sets kernel parameters through GRUB only. With "
                    "systemd-boot, add amd_iommu=off and ttm.pages_limit=N to /etc/kernel/cmdline "
                    "and reinstall the kernel entries (kernel-install).")
        facts = read_facts(root, ask_tools=False)
        gpu = facts.amd_gpu
        if gpu and gpu.vram_total and gpu.vram_total > GIB:
            return (f"The BIOS still reserves {gib(gpu.vram_total)} as VRAM: lower it in the same "
                    f"reboot (see the vram tuner), since ttm.pages_limit counts on that RAM.")
        return ""

    def verify(self, root: Path) -> list[Check]:
        facts = read_facts(root, ask_tools=False)
        configured = grub.params(read_text(root, grub.GRUB_FILE) or "")
        return [self._kernel(facts), self._firmware(root, facts), self._iommu(root, facts, configured),
                self._gtt_limit(root, facts, configured)]

    def _kernel(self, facts: HostFacts) -> Check:
        version = kernel_version(facts.kernel)
        want = ".".join(map(str, MIN_KERNEL))
        if version is None:
            return Check("kernel", "WARN", f"kernel version unreadable ({facts.kernel or 'no osrelease'})")
        if version >= MIN_KERNEL:
            return Check("kernel", "PASS", f"kernel {facts.kernel} (>= {want})")
        family = _family(facts)
        if family & {"fedora", "rhel"}:
            how = "sudo dnf upgrade --refresh kernel, then reboot"
        elif family & {"debian", "ubuntu"}:
            how = f"install a kernel >= {want} (a newer HWE or mainline kernel), then reboot"
        else:
            how = f"install a kernel >= {want}, then reboot"
        return Check("kernel", "FAIL", f"kernel {facts.kernel} is older than {want}, which gfx1151 "
                                       f"needs (ROCm 7.2.1, GPU memory fixes)", how)

    def _firmware(self, root: Path, facts: HostFacts) -> Check:
        version = firmware_version(root)
        if version is None:
            return Check("firmware", "WARN", "linux-firmware version unreadable (no dpkg, pacman "
                                             "or rpm record)")
        if BAD_FIRMWARE in version:
            if _family(facts) & {"fedora", "rhel"}:
                how = "sudo dnf downgrade linux-firmware && sudo dnf versionlock add linux-firmware"
            elif _family(facts) & {"debian", "ubuntu"}:
                how = "install another linux-firmware version (apt install linux-firmware=VERSION) and hold it"
            else:
                how = "install another linux-firmware version and keep it from updating"
            return Check("firmware", "FAIL", f"linux-firmware {version} is the known-bad {BAD_FIRMWARE} "
                                             f"release (breaks ROCm on gfx1151)", how)
        return Check("firmware", "PASS", f"linux-firmware {version} (not {BAD_FIRMWARE})")

    def _iommu(self, root: Path, facts: HostFacts, configured: dict[str, str]) -> Check:
        params = facts.cmdline_params
        amd, generic = params.get("amd_iommu"), params.get("iommu")
        pending = configured.get("amd_iommu") == "off"
        if amd == "off":
            return Check("iommu", "PASS", "amd_iommu=off in effect")
        if amd == "pt":
            return Check("iommu", "FAIL", "amd_iommu=pt on the kernel command line is not a valid "
                                          "option and is silently ignored: the IOMMU is still on"
                                          + (" (GRUB has amd_iommu=off: reboot)" if pending else ""),
                         "reboot" if pending else fix(root, self.name))
        seen = f"iommu={generic}" if generic else "IOMMU on (kernel default)"
        detail = f"{seen}; amd_iommu=off measured 5-12% faster than iommu=pt"
        if pending:
            return Check("iommu", "WARN", f"{detail}; amd_iommu=off is in GRUB: takes effect after a reboot",
                         "reboot")
        return Check("iommu", "WARN", detail, fix(root, self.name))

    def _gtt_limit(self, root: Path, facts: HostFacts, configured: dict[str, str]) -> Check:
        params = facts.cmdline_params
        want = recommended_pages(facts)
        value = params.get("ttm.pages_limit")
        notes = []
        if "amdgpu.gttsize" in params:
            notes.append("amdgpu.gttsize is deprecated (ttm.pages_limit alone sets GTT)")
        if value is None or not value.isdigit():
            pending = configured.get("ttm.pages_limit")
            detail = ("ttm.pages_limit not set: the GPU gets the kernel default GTT (half of RAM)"
                      + (f"; GRUB has ttm.pages_limit={pending}: reboot" if pending else ""))
            return Check("gtt-limit", "FAIL", "; ".join([detail, *notes]),
                         "reboot" if pending else fix(root, self.name))
        pages = int(value)
        if facts.installed_ram and pages * PAGE_SIZE > facts.installed_ram - MIN_RESERVE:
            return Check("gtt-limit", "FAIL", f"ttm.pages_limit={pages} ({_pages_gib(pages)}) leaves "
                                              f"the OS less than {MIN_RESERVE // GIB} GiB of "
                                              f"{gib(facts.installed_ram)}", fix(root, self.name))
        if facts.ttm_pages_limit is not None and facts.ttm_pages_limit != pages:
            notes.append(f"but the ttm module uses {facts.ttm_pages_limit}")
        if configured.get("ttm.pages_limit") not in (None, value):
            notes.append(f"GRUB has ttm.pages_limit={configured['ttm.pages_limit']}: reboot")
        if want and pages < want * 0.9:
            notes.append(f"below the recommended {want} ({_pages_gib(want)})")
        detail = f"ttm.pages_limit={pages} ({_pages_gib(pages)}) in effect"
        if notes:
            pending = any("reboot" in n for n in notes)
            return Check("gtt-limit", "WARN", "; ".join([detail, *notes]),
                         "reboot" if pending else fix(root, self.name))
        return Check("gtt-limit", "PASS", detail)


class VramTuner(ApuTuner):
    name = "vram"
    description = "BIOS VRAM carve-out guidance and GTT verification (writes nothing)"

    def plan(self, root: Path) -> list[Change]:
        return []

    def guidance(self, root: Path) -> str:
        gpu = read_facts(root, ask_tools=False).amd_gpu
        if gpu is None or gpu.vram_total is None or gpu.vram_total <= GIB:
            return ""
        return (f"The BIOS reserves {gib(gpu.vram_total)} of RAM as VRAM; halo cannot change BIOS "
                f"settings. Reboot into the BIOS setup (HP ZBook: F10; Framework/GMKtec: F2 or Del), "
                f"find \"UMA Frame Buffer Size\" (or iGPU memory / VRAM size), set it to 512 MB, save. "
                f"The RAM comes back to the OS, and the GPU takes it through GTT (ttm.pages_limit) "
                f"when it needs it. On an HP ZBook Ultra G1a small models ran 3-8% slower through GTT, "
                f"and 37 GB+ models fit at 32K+ context. Undo: set the old size again.")

    def verify(self, root: Path) -> list[Check]:
        facts = read_facts(root, ask_tools=False)
        gpu = facts.amd_gpu
        if gpu is None:
            missing = "no amdgpu device under /sys/class/drm"
            return [Check("bios-vram", "FAIL", missing), Check("gtt-size", "FAIL", missing)]
        return [self._carveout(root, gpu.vram_total), self._gtt(root, facts, gpu.gtt_total)]

    def _carveout(self, root: Path, vram: int | None) -> Check:
        how = "BIOS: UMA Frame Buffer Size -> 512 MB (halo tune --only vram prints the steps)"
        if vram is None:
            return Check("bios-vram", "WARN", "VRAM size unreadable (mem_info_vram_total)")
        if vram <= GIB:
            return Check("bios-vram", "PASS", f"BIOS VRAM carve-out {gib(vram)}")
        status = "WARN" if vram <= 4 * GIB else "FAIL"
        return Check("bios-vram", status, f"BIOS VRAM carve-out {gib(vram)} is held back from the OS "
                                          f"and GTT (512 MB is enough)", how)

    def _gtt(self, root: Path, facts: HostFacts, gtt: int | None) -> Check:
        if gtt is None:
            return Check("gtt-size", "WARN", "GTT size unreadable (mem_info_gtt_total)")
        limit = facts.ttm_pages_limit * PAGE_SIZE if facts.ttm_pages_limit else None
        seen = f"GTT {gib(gtt)}" + (f", ttm.pages_limit {gib(limit)}" if limit else "")
        want = recommended_pages(facts)
        pending = grub.params(read_text(root, grub.GRUB_FILE) or "").get("ttm.pages_limit")
        how = "reboot" if pending and pending != facts.cmdline_params.get("ttm.pages_limit") \
            else fix(root, "kernel") + ", then reboot"
        if limit and abs(gtt - limit) > 0.01 * limit:
            why = ("amdgpu.gttsize (deprecated) sets it instead" if "amdgpu.gttsize" in facts.cmdline_params
                   else "they should match")
            return Check("gtt-size", "FAIL", f"{seen}: {why}", how)
        if facts.mem_total and gtt > facts.mem_total:
            return Check("gtt-size", "FAIL", f"{seen}: more than the {gib(facts.mem_total)} the OS "
                                             f"has (lower the BIOS VRAM carve-out)", how)
        if want and gtt >= want * PAGE_SIZE * 0.9:
            return Check("gtt-size", "PASS", f"{seen}: the GPU can use {gib(gtt)} of "
                                             f"{gib(facts.installed_ram)} RAM")
        return Check("gtt-size", "FAIL", f"{seen}: below the {_pages_gib(want)} recommended for "
                                         f"{gib(facts.installed_ram)} RAM", how)
