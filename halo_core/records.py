"""The attrs records that cross module and plugin boundaries."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

import attrs


def _tuple(value) -> tuple:
    return tuple(value)


def _frozen_map(value) -> Mapping[str, str]:
    return dict(value or {})


@attrs.frozen
class Availability:
    """Whether a part can run here; when not, `reason` says why and `hint` how to fix it."""

    available: bool
    reason: str = ""
    hint: str = ""

    def __str__(self) -> str:
        if self.available:
            return "available"
        return f"{self.reason}; {self.hint}" if self.hint else self.reason


@attrs.frozen
class ToolCommand:
    """How to start one llama.cpp tool on a backend: argv prefix, extra env, probe-cache key.

    `cache_key` identifies the exact binary (e.g. path + mtime) so its flags are probed once;
    None means "probe every time".
    """

    argv: tuple[str, ...] = attrs.field(converter=_tuple)
    env: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    cache_key: str | None = None


@attrs.frozen
class BackendDefaults:
    """Per-backend llama.cpp defaults (e.g. ubatch 512 on Vulkan, 2048 on ROCm)."""

    n_gpu_layers: int = 99
    flash_attn: bool = True
    mmap: bool = False
    ubatch: int | None = None


@attrs.frozen
class LocalModel:
    """A model file on this machine, as a ModelSource produced it."""

    name: str
    ref: str
    path: Path = attrs.field(converter=Path)
    size: int
    sha256: str = ""  # empty when not computed (a local file is not hashed on every use)
    source: str = ""


@attrs.frozen
class CatalogEntry:
    """One named model a ModelSource offers (a line of configs/models.conf for `hf`)."""

    name: str
    ref: str
    source: str
    categories: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    size_gb: float | None = None  # as the catalog states it, before any download
    description: str = ""


@attrs.frozen
class ModelListing:
    """A catalog entry as `halo models list` shows it: downloaded or not, and which source wins
    its name when several claim it."""

    name: str
    ref: str
    source: str
    categories: tuple[str, ...] = attrs.field(converter=_tuple)
    size_gb: float | None
    description: str
    downloaded: bool
    path: Path | None = None
    size: int | None = None  # bytes on disk when downloaded
    shadowed_by: str | None = None  # the source that answers for `name` instead of this one


@attrs.frozen
class GpuProcess:
    """A process holding GPU memory, as the driver reports it (NVML)."""

    pid: int
    used: int | None  # bytes; None where the driver does not say
    name: str = ""  # /proc/PID/comm


@attrs.frozen
class GpuFacts:
    """One GPU: a DRM card read from sysfs (amdgpu), or an NVIDIA GPU read through NVML.

    Sizes in bytes; every reading is None where the vendor does not report it (amdgpu has no
    clocks or bus width here, NVIDIA no GTT; a DRM card of another driver has only its ids).
    """

    card: str  # "card1" (DRM), or "nvidia0" (NVML index) for an NVIDIA GPU without a DRM card
    vendor: str  # PCI vendor id: "0x1002" AMD, "0x10de" NVIDIA
    device: str  # PCI device id: "0x1586" for Strix Halo's Radeon 8060S
    driver: str = ""
    name: str = ""  # "NVIDIA H200"; amdgpu's product_name where the card has one
    pci: str = ""  # PCI address, "0000:c1:00.0"
    vram_total: int | None = None
    vram_used: int | None = None
    gtt_total: int | None = None  # amdgpu: system RAM the GPU can map
    gtt_used: int | None = None
    busy_pct: float | None = None
    temp_c: float | None = None
    power_w: float | None = None  # amdgpu's hwmon power: the whole package on an APU
    power_limit_w: float | None = None
    sm_clock_mhz: int | None = None
    mem_clock_mhz: int | None = None
    mem_clock_max_mhz: int | None = None
    mem_bus_width: int | None = None  # bits
    compute_capability: str | None = None  # "9.0"
    driver_version: str | None = None  # "580.159.04"
    cuda_version: str | None = None  # the newest CUDA the driver supports, "13.0"
    processes: tuple[GpuProcess, ...] | None = attrs.field(
        default=None, converter=attrs.converters.optional(_tuple))

    @property
    def addressable(self) -> int | None:
        """Memory the GPU can address: VRAM + GTT, None when the card reports neither."""
        if self.vram_total is None and self.gtt_total is None:
            return None
        return (self.vram_total or 0) + (self.gtt_total or 0)


@attrs.frozen
class FitReport:
    """Whether a model's weights plus its KV cache (and recurrent state) fit in GPU memory."""

    model: str
    path: Path = attrs.field(converter=Path)
    arch: str
    ctx: int
    parallel: int
    type_k: str
    type_v: str
    n_layer: int
    n_head: int
    n_head_kv: tuple[int, ...] = attrs.field(converter=_tuple)  # per layer
    head_dim_k: int
    head_dim_v: int
    kv_layers: int  # layers that keep a KV cache
    swa_layers: int  # of those, sliding-window layers (cache capped near the window)
    n_swa: int
    recurrent_layers: int
    weights_bytes: int
    kv_bytes: int
    recurrent_bytes: int
    total_bytes: int
    memory: int  # bytes the GPUs can address, else MemTotal (then `gpus` is empty)
    gpus: tuple[GpuFacts, ...] = attrs.field(converter=_tuple)  # the GPUs `memory` counts
    fits: bool
    headroom_bytes: int
    notes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen
class BenchResult:
    """One llama-bench test (one line of its JSONL), normalised across llama.cpp builds.

    `cell` identifies what was asked for (model, backend, kv, batch, test) so runs can be
    resumed and compared; power and roofline figures are filled in where halo knows them.
    """

    model: str
    backend: str
    test: str
    n_prompt: int
    n_gen: int
    n_depth: int
    avg_ts: float
    stddev_ts: float
    samples_ts: tuple[float, ...] = attrs.field(converter=_tuple)
    type_k: str = "f16"
    type_v: str = "f16"
    n_batch: int | None = None
    n_ubatch: int | None = None
    n_threads: int | None = None
    n_gpu_layers: int | None = None
    flash_attn: str | None = None
    mmap: bool | None = None
    model_file: str = ""
    model_type: str = ""
    model_size: int | None = None
    model_n_params: int | None = None
    ggml_backends: str = ""
    build_commit: str = ""
    build_number: int | None = None
    test_time: str = ""
    cell: str = ""
    power_w: float | None = None  # average over the test, from the metrics sampler
    tokens_per_joule: float | None = None
    bandwidth_pct: float | None = None  # tg only: % of the memory-bandwidth limit

    @property
    def kv(self) -> str:
        return self.type_k if self.type_k == self.type_v else f"{self.type_k}/{self.type_v}"


@attrs.frozen
class FailedCell:
    """A cell whose llama-bench crashed, timed out or printed garbage."""

    cell: str
    model: str
    backend: str
    test: str
    kv: str
    error: str
    log_tail: str = ""


def _kv_pairs(value) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in value:
        if isinstance(item, str):
            k, _, v = item.partition(":")
            pairs.append((k, v or k))
        else:
            pairs.append(tuple(item))
    return tuple(pairs)


@attrs.frozen
class BenchSpec:
    """What `halo bench run` measures: models x backends x kv types x batch sizes, with the
    standard pp/tg test and, when `depths` is set, a long-context test at each depth.

    One llama-bench process runs per (model, backend, kv pair, test kind); llama-bench sweeps
    the depths of the long-context test itself.
    """

    models: tuple[str, ...] = attrs.field(converter=_tuple)
    backends: tuple[str, ...] = attrs.field(default=("native",), converter=_tuple)
    pp: int = 512
    tg: int = 128
    reps: int = 5
    tag: str = "run"
    threads: int | None = None
    kv_types: tuple[tuple[str, str], ...] = attrs.field(default=(("f16", "f16"),), converter=_kv_pairs)
    batch: int | None = None
    ubatch: int | None = None
    depths: tuple[int, ...] = attrs.field(default=(), converter=_tuple)
    ctx_prompt: int | None = None  # long-context prompt; None: 2048, or depth/16 above 32K
    ctx_reps: int = 3
    cooldown: float = 0.0
    standard: bool = True  # the pp/tg test at depth 0

    @models.validator
    def _check_models(self, _attr, value):
        if not value:
            raise ValueError("at least one model is needed")


@attrs.define
class BenchRun:
    """A run directory and what it holds so far."""

    path: Path
    spec: BenchSpec
    status: str = "running"  # running | complete | partial | failed | interrupted
    error: str = ""
    results: list[BenchResult] = attrs.field(factory=list)
    failures: list[FailedCell] = attrs.field(factory=list)


@attrs.frozen
class Change:
    """One reversible system change a Tuner plans; the core applies it through the journal.

    kind and what the fields mean:

    - "file": `target` is an absolute host path ("/etc/default/grub"); `before` / `after` are
      the whole contents (None: the file is absent / is deleted); `mode` is the permission
      of a file the change creates (an existing file keeps its own).
    - "link": a symlink at `target` pointing to `after` (None: removed); `before` likewise.
    - "sysfs": `target` is a kernel file ("/sys/kernel/mm/transparent_hugepage/enabled");
      `before` / `after` are values ("madvise" / "always").
    - "sysctl": `target` is a key ("vm.swappiness") under /proc/sys; values as for sysfs.
    - "command": `argv` runs on apply and `undo` on rollback (either may be empty); `writes`
      names the files the command rewrites, which the journal backs up and rollback restores.
      Commands never run against a sysroot (`--root DIR`): they are journaled and printed.
    """

    tuner: str
    kind: str  # "file" | "link" | "sysfs" | "sysctl" | "command"
    target: str
    description: str
    before: str | None = None
    after: str | None = None
    undo: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    needs_reboot: bool = False
    argv: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    writes: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    mode: int | None = None


@attrs.frozen
class Check:
    """One verify item: PASS, WARN or FAIL, with what was seen and the command that fixes it."""

    name: str
    status: str  # "PASS" | "WARN" | "FAIL"
    detail: str
    fix: str = ""
    tuner: str = ""  # filled in by the core: the tuner that made the check


@attrs.frozen
class HostFacts:
    """What is in effect on a machine, read through a sysroot (default "/").

    `live` is True when the sysroot is the running system, the only case in which halo also
    asks tools (ryzenadj -i, rpm, podman) rather than reading files.
    """

    root: Path = attrs.field(converter=Path)
    live: bool
    cpu_model: str = ""
    cpu_vendor: str = ""
    mem_total: int | None = None
    mem_available: int | None = None
    installed_ram: int | None = None  # MemTotal + the BIOS VRAM carve-out, rounded up to 4 GiB
    kernel: str = ""
    cmdline: str = ""
    os_id: str = ""
    os_like: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    os_name: str = ""
    gpus: tuple[GpuFacts, ...] = attrs.field(default=(), converter=_tuple)
    ttm_pages_limit: int | None = None  # /sys/module/ttm/parameters/pages_limit
    tuned_profile: str | None = None
    thp_enabled: str | None = None
    thp_defrag: str | None = None
    sysctls: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    power_limits: Mapping[str, float] | None = None  # watts, from `ryzenadj -i` (live, root)
    firmware: str | None = None  # linux-firmware package version
    vulkan_icds: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    rocm: str | None = None
    toolboxes: tuple[str, ...] | None = None
    boot_id: str = ""

    @property
    def amd_gpu(self) -> GpuFacts | None:
        return next((g for g in self.gpus if g.vendor == "0x1002"), None)

    @property
    def is_amd_apu(self) -> bool:
        """An AMD CPU with an amdgpu device: the machines halo's tuners are written for."""
        return self.cpu_vendor == "AuthenticAMD" and self.amd_gpu is not None

    @property
    def cmdline_params(self) -> dict[str, str]:
        """The kernel command line as {name: value} ("" for bare flags); the last one wins."""
        params: dict[str, str] = {}
        for token in self.cmdline.split():
            key, _, value = token.partition("=")
            params[key] = value
        return params


@attrs.frozen
class TuneStep:
    """One tuner's part of a plan: its changes and the advice it gives for what it cannot do."""

    tuner: str
    changes: tuple[Change, ...] = attrs.field(converter=_tuple)
    guidance: str = ""

    @property
    def needs_reboot(self) -> bool:
        return any(c.needs_reboot for c in self.changes)


@attrs.frozen
class TunePlan:
    """What `halo tune` would do on a sysroot: one step per selected tuner, in order."""

    root: Path = attrs.field(converter=Path)
    live: bool
    steps: tuple[TuneStep, ...] = attrs.field(converter=_tuple)

    @property
    def changes(self) -> tuple[Change, ...]:
        return tuple(c for step in self.steps for c in step.changes)


@attrs.frozen
class Verdict:
    """Before/after bench comparison of one tuning step (deltas are relative: -0.1 = 10% slower)."""

    step: str
    worse: bool
    deltas: Mapping[str, float]
    detail: str


@attrs.frozen
class JournalInfo:
    """One transaction in $HALO_HOME/journal/: what it changed and where it stands."""

    id: str
    path: Path = attrs.field(converter=Path)
    root: Path = attrs.field(converter=Path)
    status: str  # applying | applied | rolling-back | rolled-back
    created_at: str
    changes: int
    applied: int
    undone: int
    pending_measure: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    error: str = ""
    verdicts: tuple[Verdict, ...] = attrs.field(default=(), converter=_tuple)


@attrs.frozen
class Endpoint:
    """An OpenAI-compatible server an EvalSuite talks to."""

    base_url: str
    model: str
    kind: str = "openai"  # llama-server | ollama | openai
    api_key: str | None = None


@attrs.frozen
class EvalSample:
    """One scored item of an eval suite; a sample that failed to run has `error` set."""

    id: str
    score: float
    passed: bool
    error: str = ""
    detail: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)


@attrs.frozen
class EvalResult:
    """What one suite returns: headline scores in [0, 1] and every sample."""

    suite: str
    scores: Mapping[str, float]
    samples: tuple[EvalSample, ...] = attrs.field(converter=_tuple)
    framework_version: str = ""


@attrs.frozen
class PluginInfo:
    """What `halo plugins` shows for one loaded (or failed) plugin."""

    name: str
    version: str | None
    source: str  # "builtin" | "entry-point" | "registered"
    distribution: str | None
    hooks: tuple[str, ...] = attrs.field(converter=_tuple)
    registers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    error: str | None = None


@attrs.frozen
class MeasureSpec:
    """The fixed bench `halo tune --measure` runs before and after each step.

    A step is "worse beyond noise" when, for some llama-bench test, the mean drops by more
    than `min_effect` (relative) and by more than twice the larger standard deviation, and no
    sample after the step is as fast as the slowest sample before it ("better beyond noise"
    likewise, the other way).

    With `eval` (a suite or preset), the suites also run against a llama-server of `model`
    before and after each step, and a step is kept only when it is better beyond noise and
    no suite's paired test (halo_core.stats) finds its answers worse.
    """

    model: str = "smoke"
    backend: str = "native"
    pp: int = 512
    tg: int = 128
    reps: int = 5
    threads: int | None = None
    min_effect: float = 0.05
    eval: str | None = None
    eval_limit: int = 20
    max_tokens: int | None = None
    ctx: int = 8192  # the eval server's context


@attrs.frozen
class AuditReport:
    """`halo audit`: the host facts and every tuner's verify checks."""

    facts: HostFacts
    checks: tuple[Check, ...] = attrs.field(converter=_tuple)

    @property
    def score(self) -> tuple[int, int]:
        """(checks that PASS, all checks)."""
        return sum(c.status == "PASS" for c in self.checks), len(self.checks)
