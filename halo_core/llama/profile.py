"""Measured settings per (machine, backend and build, model, workload): what `halo optimize`
writes and `halo serve`, `halo bench serve` and `halo sweep` start llama-server with.

A profile is one JSON file, $HALO_HOME/profiles/<model sha256 prefix>-<backend>-<workload>.json,
holding the settings (the llama-server flags they stand for), what they were measured against
(the defaults, with the numbers and the verdict of the comparison), the optimize run they came
from, and the identity they hold for: the machine (CPU, core count, memory, GPUs and driver),
the backend and its llama.cpp build. `match_profile` finds the one for a model and backend and
says why a profile it found does not apply (another machine, build or driver): such a profile
is not used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import attrs

from ..errors import HaloError
from ..store import from_dict, halo_home, safe_name, to_dict, write_json

DIR = "profiles"
WORKLOADS = ("chat", "agentic", "long")


@attrs.frozen
class Settings:
    """The llama.cpp settings a profile sets; None: left to halo's and the backend's defaults."""

    batch: int | None = None
    ubatch: int | None = None
    flash_attn: bool | None = None
    threads: int | None = None
    cache_type: str | None = None  # K and V (-ctk/-ctv); None: f16, llama.cpp's own

    def flags(self) -> list[str]:
        """The llama-server flags these settings are, for people."""
        out = []
        if self.batch:
            out += ["-b", str(self.batch)]
        if self.ubatch:
            out += ["-ub", str(self.ubatch)]
        if self.flash_attn is not None:
            out += ["-fa", "on" if self.flash_attn else "off"]
        if self.threads:
            out += ["-t", str(self.threads)]
        if self.cache_type:
            out += ["-ctk", self.cache_type, "-ctv", self.cache_type]
        return out

    def describe(self) -> str:
        return " ".join(self.flags()) or "llama.cpp's defaults"


@attrs.frozen
class Slots:
    """The -np a capacity search chose (`halo bench serve MODEL --slots …` on the profile's
    settings): the slot count whose capacity met the SLOs at the most load."""

    parallel: int
    ctx: int  # the -c it was measured with (parallel × the context one request needed)
    why: str  # the choice, as bench serve said it
    run: str  # the serve-bench run
    measured: str


def _slots(value):
    return from_dict(Slots, value) if isinstance(value, dict) else value


@attrs.frozen
class Profile:
    """One measured profile (see the module's docstring)."""

    model: str  # the model's name, for people
    model_sha256: str
    backend: str
    build: dict  # what the backend's llama.cpp build is (identity(): its llama.cpp build, accel)
    machine: dict  # machine_identity()
    workload: str
    objective: str
    settings: Settings = attrs.field(converter=lambda v: from_dict(Settings, v) if isinstance(v, dict) else v)
    defaults: Settings = attrs.field(converter=lambda v: from_dict(Settings, v) if isinstance(v, dict) else v)
    measured: dict  # {"objective": {"best": t/s, "defaults": t/s, "change_pct": %, "verdict": ...}, ...}
    run: str  # the optimize run directory
    created: str
    slots: Slots | None = attrs.field(default=None, converter=_slots)  # -np, by `halo bench serve --slots`

    @property
    def key(self) -> str:
        return profile_key(self.model_sha256, self.backend, self.workload)

    def summary(self) -> str:
        """What its confirmation measured, for people: the settings' change against the
        defaults, or, where the defaults stood, what the best other setting measured."""
        if not describe_changes(self.measured):
            return ""
        own = None if self.settings.cache_type == "f16" else self.settings.cache_type  # (f16: llama.cpp's own)
        if attrs.evolve(self.settings, cache_type=own) == self.defaults:
            return "the defaults stood; the best other setting: " + describe_changes(self.measured, verdicts=True)
        return describe_changes(self.measured) + " against the defaults"


def describe_changes(tests: dict, verdicts: bool = False) -> str:
    """A confirmation's measured changes against the defaults, for people ("tg128 +4.2%", with
    `verdicts` "tg128 +4.2% (faster)"); tests with no change measured are left out."""
    return ", ".join(f"{n} {v['change_pct']:+.1f}%" + (f" ({v['verdict']})" if verdicts and v.get("verdict") else "")
                     for n, v in tests.items() if v.get("change_pct") is not None)


def profile_key(sha256: str, backend: str, workload: str) -> str:
    return safe_name(f"{sha256[:16]}-{backend}-{workload}")


def profile_dir() -> Path:
    return halo_home() / DIR


def machine_identity(facts) -> dict:
    """What makes a measurement this machine's: CPU, cores, memory (GiB), GPUs and driver."""
    return {"cpu": facts.cpu_model or "", "cores": os.cpu_count(),
            "mem_gib": round((facts.mem_total or 0) / 2**30),
            "gpus": sorted(g.name for g in facts.gpus),
            "driver": sorted({g.driver for g in facts.gpus if getattr(g, "driver", None)})}


def build_identity(provenance: dict) -> dict:
    """What makes a measurement this build's: the llama.cpp build and what it was built for."""
    return {"llama_cpp_build": provenance.get("llama_cpp_build", ""), "accel": provenance.get("accel", ""),
            "image": provenance.get("image_digest", provenance.get("image", ""))}


def save_profile(profile: Profile) -> Path:
    path = profile_path(profile.model_sha256, profile.backend, profile.workload)
    write_json(path, profile)
    return path


def load_profile(path: Path) -> Profile:
    try:
        return from_dict(Profile, json.loads(Path(path).read_text()))
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise HaloError(f"{path} is not a halo profile: {exc}") from None


def list_profiles() -> list[tuple[Path, Profile | None]]:
    """Every profile file, read (None where it cannot be)."""
    out = []
    for path in sorted(profile_dir().glob("*.json")):
        try:
            out.append((path, load_profile(path)))
        except HaloError:
            out.append((path, None))
    return out


def mismatch(profile: Profile, machine: dict, build: dict) -> str:
    """Why `profile` does not hold here ("" when it does)."""
    for what, mine, theirs in (("machine", machine, profile.machine), ("llama.cpp build", build, profile.build)):
        changed = [k for k in sorted(set(mine) | set(theirs)) if mine.get(k) != theirs.get(k)]
        if changed:
            k = changed[0]
            return f"measured on another {what} ({k}: {theirs.get(k)!r}, here {mine.get(k)!r})"
    return ""


def profile_path(sha256: str, backend: str, workload: str) -> Path:
    return profile_dir() / f"{profile_key(sha256, backend, workload)}.json"


def match_profile(sha256: str, backend: str, workload: str, machine: dict,
                  build: dict) -> tuple[Profile | None, str]:
    """(the profile for this model, backend and workload when it holds here, why not when it
    does not): (None, "") when there is none."""
    path = profile_path(sha256, backend, workload)
    if not path.exists():
        return None, ""
    profile = load_profile(path)
    why = mismatch(profile, machine, build)
    return (None, f"profile {path.name} not used: {why}") if why else (profile, "")


def fingerprint(data: dict) -> str:
    """A short digest of an identity dict, for people comparing profiles."""
    return hashlib.sha256(json.dumps(to_dict(data), sort_keys=True).encode()).hexdigest()[:12]


def model_digest(model) -> str:
    """The model file's sha256: its source's, else computed once and kept by path, size and
    mtime ($HALO_HOME/cache/model-digests.json), so a large model is hashed once."""
    if getattr(model, "sha256", ""):
        return model.sha256
    from ..store import sha256_file

    path = Path(model.path)
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    cache_file = halo_home() / "cache" / "model-digests.json"
    try:
        cache = json.loads(cache_file.read_text())
    except (OSError, ValueError):
        cache = {}
    if key not in cache:
        cache[key] = sha256_file(path)
        write_json(cache_file, cache)
    return cache[key]
