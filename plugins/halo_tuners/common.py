"""What the built-in tuners share: configuration files, exact reads, fix commands."""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import (
    Availability, Change, GIB, HostFacts, TuneError, Tuner, host_path, is_live,
)

# the tuning files ship inside this package (halo_tuners/data/), as a third party's would
DATA_DIRS = (Path(__file__).resolve().parent / "data",)


class ApuTuner(Tuner):
    """What the built-in tuners share: they are made for AMD APUs (Strix Halo and kin)."""

    def applies(self, facts: HostFacts) -> Availability:
        if facts.is_amd_apu:
            return Availability(True)
        gpu = "an AMD GPU" if facts.amd_gpu else "no amdgpu device"
        return Availability(False, f"this host is not an AMD APU (CPU: {facts.cpu_model or 'unknown'}; "
                                   f"{gpu}): halo tune is made for AMD APUs such as Strix Halo")


def data_text(name: str) -> str:
    """One of halo's tuning files from halo_tuners/data/."""
    for folder in DATA_DIRS:
        if (folder / name).is_file():
            return (folder / name).read_text()
    raise TuneError(f"halo's tuning file {name} is missing (looked in "
                    f"{', '.join(str(d) for d in DATA_DIRS)}): reinstall halo")


def read_exact(root: Path, path: str) -> str | None:
    """A host file's exact text (None when absent); a file that is not UTF-8 is an error."""
    try:
        return host_path(root, path).read_bytes().decode()
    except FileNotFoundError:
        return None
    except UnicodeDecodeError:
        raise TuneError(f"{path} is not UTF-8 text; halo will not edit it") from None
    except OSError as exc:
        raise TuneError(f"cannot read {path}: {exc.strerror or exc}") from None


def fix(root: Path, tuner: str) -> str:
    """The command that applies one tuner on this sysroot."""
    if is_live(root):
        return f"sudo halo tune --only {tuner} --apply"
    return f"halo tune --root {root} --only {tuner} --apply"


def gib(n: int | None) -> str:
    return "?" if n is None else f"{n / GIB:.1f} GiB"


def file_change(tuner: str, root: Path, path: str, after: str | None, description: str,
                *, mode: int = 0o644, needs_reboot: bool = False) -> list[Change]:
    """[a file Change] when `path` does not hold `after` yet, else []."""
    before = read_exact(root, path)
    if before == after:
        return []
    return [Change(tuner, "file", path, description, before=before, after=after, mode=mode,
                   needs_reboot=needs_reboot)]


def setting(tuner: str, settings, key: str) -> str | None:
    """The one setting a tuner takes (None when not given); any other key is an error."""
    unknown = sorted(set(settings) - {key})
    if unknown:
        raise TuneError(f"tuner '{tuner}' has no setting '{unknown[0]}' (it has: {key})")
    return settings.get(key)
