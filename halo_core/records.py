"""The attrs records that cross module and plugin boundaries, and the states they can be in.

States are str-valued enums: a record accepts the plain string ("PASS", "sysctl") and keeps
the member, JSON holds the same string, and a value outside the enum fails when the record is
made, with the values it could have been.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from .config import defaults
from .errors import UnknownState
from .store import secret


class Note(str):
    """A status message that is a finding (which profile a server starts with, where a result
    was stored), not progress: a CLI that shows progress in a spinner keeps a Note on screen.
    Callbacks that take plain str take it as one."""


class StrEnum(str, Enum):
    """A state written as a string; str() and f-strings give the bare value (as enum.StrEnum,
    which Python 3.10 lacks)."""

    def __str__(self) -> str:
        return self.value

    __format__ = str.__format__


def states(cls: type[StrEnum], what: str) -> Callable[[object], StrEnum]:
    """An attrs converter to `cls` whose error names the bad value and the known ones."""
    def convert(value):
        try:
            return cls(value)
        except ValueError:
            known = ", ".join(m.value for m in cls)
            raise UnknownState(f"unknown {what} {value!r} (known: {known})") from None
    return convert


class RunStatus(StrEnum):
    """Where a bench or eval run stands (run.json `status`)."""

    RUNNING = "running"
    COMPLETE = "complete"
    PARTIAL = "partial"  # some cells / samples / suites could not run; --resume retries them
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class SuiteStatus(StrEnum):
    """Where one suite of an eval run stands (scores.json)."""

    COMPLETE = "complete"
    PARTIAL = "partial"  # scored over the samples that ran; the failed ones are counted beside
    FAILED = "failed"
    SKIPPED = "skipped"  # its framework is not installed


class ChangeKind(StrEnum):
    """What a Change writes (see Change)."""

    FILE = "file"
    LINK = "link"
    SYSFS = "sysfs"
    SYSCTL = "sysctl"
    COMMAND = "command"


class CheckStatus(StrEnum):
    PASS = "PASS"
    WARN = "WARN"
    FAIL = "FAIL"


class JournalStatus(StrEnum):
    APPLYING = "applying"
    APPLIED = "applied"
    ROLLING_BACK = "rolling-back"
    ROLLED_BACK = "rolled-back"


class ProcessKind(StrEnum):
    SERVER = "server"
    BENCH = "bench"
    RPC = "rpc"  # an RPC worker (`halo rpc serve`): its url is HOST:PORT


class BenchGroup(StrEnum):
    """The test group a bench result comes from."""

    STD = "std"  # the standard pp/tg test at depth 0 (--reps repetitions)
    CTX = "ctx"  # the long-context test at each of --depths (--ctx-reps repetitions)


def as_tuple(value) -> tuple:
    return tuple(value) if value is not None else ()


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

    argv: tuple[str, ...] = attrs.field(converter=as_tuple)
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
    synthetic: bool = False  # random weights from `halo models synth` (its GGUF says halo.synthetic)


@attrs.frozen
class CatalogEntry:
    """One named model a ModelSource offers (a line of plugins/halo_hf/models.conf for `hf`)."""

    name: str
    ref: str
    source: str
    categories: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    size_gb: float | None = None  # as the catalog states it, before any download
    description: str = ""


@attrs.frozen
class ModelListing:
    """A catalog entry as `halo models list` shows it: downloaded or not, and which source wins
    its name when several claim it."""

    name: str
    ref: str
    source: str
    categories: tuple[str, ...] = attrs.field(converter=as_tuple)
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
        default=None, converter=attrs.converters.optional(as_tuple))

    @property
    def addressable(self) -> int | None:
        """Memory the GPU can address: VRAM + GTT, None when the card reports neither."""
        if self.vram_total is None and self.gtt_total is None:
            return None
        return (self.vram_total or 0) + (self.gtt_total or 0)


@attrs.frozen
class RpcDevice:
    """One device an RPC worker exposes, with the memory the RPC protocol reports (bytes).

    `name` is what llama.cpp's controller calls it (RPC0, RPC1, ... in the order of --rpc):
    the order --tensor-split proportions follow."""

    name: str
    index: int  # on its worker
    free: int
    total: int


def as_rpc_devices(value) -> tuple[RpcDevice, ...]:
    return tuple(d if isinstance(d, RpcDevice) else RpcDevice(**d) for d in value)


@attrs.frozen
class RpcWorker:
    """A llama.cpp RPC worker (rpc-server) as halo found it through the RPC protocol.

    state: "up" (answered HELLO), "down" (no connection), "busy" (connected, but no HELLO
    answer: a worker serves one client at a time), "incompatible" (another protocol version).
    """

    endpoint: str  # HOST:PORT
    state: str
    error: str = ""
    version: str = ""  # the RPC protocol version its HELLO reports, e.g. "7.0.0"
    devices: tuple[RpcDevice, ...] = attrs.field(default=(), converter=as_rpc_devices)
    rtt_ms: float | None = None  # median round trip of a query command
    bandwidth: float | None = None  # bytes/s controller -> worker (SET_TENSOR into a scratch buffer)
    bandwidth_note: str = ""  # why there is no bandwidth figure

    @property
    def total_memory(self) -> int:
        return sum(d.total for d in self.devices)


def as_rpc_workers(value) -> tuple[RpcWorker, ...]:
    return tuple(w if isinstance(w, RpcWorker) else RpcWorker(**w) for w in value)


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
    n_head_kv: tuple[int, ...] = attrs.field(converter=as_tuple)  # per layer
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
    gpus: tuple[GpuFacts, ...] = attrs.field(converter=as_tuple)  # the GPUs `memory` counts
    fits: bool
    headroom_bytes: int
    notes: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    boxes: int = 1  # machines with this one's GPU memory the model needs (over RPC when > 1)
    workers: tuple[RpcWorker, ...] = attrs.field(default=(), converter=as_rpc_workers)  # --rpc
    cluster_bytes: int | None = None  # memory of this machine + the workers (None: no --rpc)


@attrs.frozen
class BenchResult:
    """One llama-bench test (one line of its JSONL), normalised across llama.cpp builds.

    `cell` identifies what was asked for (model, backend, group, kv, batch, test) so runs can
    be resumed and compared; `group` is the test group the result comes from (the standard
    test and the depth curve both measure tg at depth 0); power and roofline figures are
    filled in where halo knows them.
    """

    model: str
    backend: str
    test: str
    n_prompt: int
    n_gen: int
    n_depth: int
    avg_ts: float
    stddev_ts: float
    samples_ts: tuple[float, ...] = attrs.field(converter=as_tuple)
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
    cell: str = ""  # model|backend|group|kv|batch|ubatch|test
    group: BenchGroup | None = attrs.field(default=None, converter=attrs.converters.optional(
        states(BenchGroup, "bench test group")))  # None in runs written before groups were kept
    power_w: float | None = None  # average over the test, from the metrics sampler
    tokens_per_joule: float | None = None
    bandwidth_pct: float | None = None  # tg only: % of the memory-bandwidth limit
    synthetic: bool = False  # the model has random weights (`halo models synth`)

    @property
    def kv(self) -> str:
        return self.type_k if self.type_k == self.type_v else f"{self.type_k}/{self.type_v}"

    @property
    def model_label(self) -> str:
        """The model as tables and reports name it, marked when its weights are random."""
        return f"{self.model} (synthetic)" if self.synthetic else self.model


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
    the depths of the long-context test itself. Models and backends default to the configured
    ones (`halo_core.config.defaults()`).
    """

    models: tuple[str, ...] = attrs.field(factory=lambda: (defaults().model,), converter=as_tuple)
    backends: tuple[str, ...] = attrs.field(factory=lambda: (defaults().backend,), converter=as_tuple)
    pp: int = 512
    tg: int = 128
    reps: int = 5
    tag: str = "run"
    threads: int | None = None
    kv_types: tuple[tuple[str, str], ...] = attrs.field(default=(("f16", "f16"),), converter=_kv_pairs)
    batch: int | None = None
    ubatch: int | None = None
    depths: tuple[int, ...] = attrs.field(default=(), converter=as_tuple)
    ctx_prompt: int | None = None  # long-context prompt; None: 2048, or depth/16 above 32K
    ctx_reps: int = 3
    cooldown: float = 0.0
    standard: bool = True  # the pp/tg test at depth 0
    rpc: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)  # RPC workers, HOST:PORT
    tensor_split: tuple[float, ...] = attrs.field(default=(), converter=as_tuple)  # llama.cpp -ts
    flash_attn: bool | None = None  # -fa on/off; None: the backend's default
    n_gpu_layers: int | None = None  # -ngl; None: the backend's default (all layers)

    @models.validator
    def _check_models(self, _attr, value):
        if not value:
            raise ValueError("at least one model is needed")


@attrs.define
class Run:
    """A run directory: what it was asked to do and where it stands (runs.py reads and writes
    its run.json)."""

    path: Path
    spec: Any  # BenchSpec, EvalSpec
    status: RunStatus = attrs.field(default=RunStatus.RUNNING, converter=states(RunStatus, "run status"))
    error: str = ""


@attrs.define
class BenchRun(Run):
    """A bench run directory (its spec a BenchSpec) and what it holds so far."""

    results: list[BenchResult] = attrs.field(factory=list)
    failures: list[FailedCell] = attrs.field(factory=list)


@attrs.frozen
class Change:
    """One reversible system change a Tuner plans; the core applies it through the journal.

    `kind` (a ChangeKind; the plain strings work too) and what the fields mean:

    - "file": `target` is an absolute host path ("/etc/default/grub"); `before` / `after` are
      the whole contents (None: the file is absent / is deleted); `mode` is the permission
      of a file the change creates (an existing file keeps its own).
    - "link": a symlink at `target` pointing to `after` (None: removed); `before` likewise.
    - "sysfs": `target` is a kernel file ("/sys/kernel/mm/transparent_hugepage/enabled");
      `before` / `after` are values ("madvise" / "always").
    - "sysctl": `target` is a key ("vm.swappiness") under /proc/sys; values as for sysfs.
    - "command": `argv` runs on apply and `undo` on rollback (either may be empty); `writes`
      names the files the command rewrites, which the journal backs up and rollback restores.
      With `regenerate` those files are generated from others (grub2-mkconfig's grub.cfg and
      BLS entries): on the live system rollback runs `argv` again once the sources are back,
      instead of restoring old bytes (which would name kernels that are gone).
      Commands never run against a sysroot (`--root DIR`): they are journaled and printed.
    """

    tuner: str
    kind: ChangeKind = attrs.field(converter=states(ChangeKind, "change kind"))
    target: str
    description: str
    before: str | None = None
    after: str | None = None
    undo: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    needs_reboot: bool = False
    argv: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    writes: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    mode: int | None = None
    regenerate: bool = False


@attrs.frozen
class Check:
    """One verify item: PASS, WARN or FAIL, with what was seen and the command that fixes it."""

    name: str
    status: CheckStatus = attrs.field(converter=states(CheckStatus, "check status"))
    detail: str
    fix: str = ""
    tuner: str = ""  # filled in by the core: the tuner that made the check


@attrs.frozen
class HostFacts:
    """What is in effect on a machine, read through a sysroot (default "/").

    `live` is True when the sysroot is the running system, the only case in which halo (and a
    plugin's `host_facts`) also asks tools (rpm, ryzenadj, toolbox) rather than reading files.
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
    os_like: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    os_name: str = ""
    gpus: tuple[GpuFacts, ...] = attrs.field(default=(), converter=as_tuple)
    ttm_pages_limit: int | None = None  # /sys/module/ttm/parameters/pages_limit
    thp_enabled: str | None = None
    thp_defrag: str | None = None
    sysctls: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_map)
    firmware: str | None = None  # linux-firmware package version
    vulkan_icds: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    boot_id: str = ""
    extra: Mapping[str, Mapping[str, str]] = attrs.field(factory=dict, converter=_frozen_map)
    """What plugins know about the machine ({plugin: {label: line}}, their `host_facts`
    hooks), when read with a host."""

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
    changes: tuple[Change, ...] = attrs.field(converter=as_tuple)
    guidance: str = ""

    @property
    def needs_reboot(self) -> bool:
        return any(c.needs_reboot for c in self.changes)


@attrs.frozen
class Skipped:
    """A tuner left out because it does not apply to the host (its `applies`): why, and how
    one would make it apply."""

    tuner: str
    reason: str
    hint: str = ""


@attrs.frozen
class TunePlan:
    """What `halo tune` would do on a sysroot: one step per selected tuner, in order, and the
    tuners left out because they do not apply to this host."""

    root: Path = attrs.field(converter=Path)
    live: bool
    steps: tuple[TuneStep, ...] = attrs.field(converter=as_tuple)
    skipped: tuple[Skipped, ...] = attrs.field(default=(), converter=as_tuple)

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
    rule: str = ""  # the speed rule that judged each test (halo_core.stats.speed_rule); "" in old journals
    speed: Mapping[str, str] = attrs.field(factory=dict)  # the rule's verdict per test: faster | slower | ...


@attrs.frozen
class JournalInfo:
    """One transaction in $HALO_HOME/journal/: what it changed and where it stands."""

    id: str
    path: Path = attrs.field(converter=Path)
    root: Path = attrs.field(converter=Path)
    status: JournalStatus = attrs.field(converter=states(JournalStatus, "journal status"))
    created_at: str
    changes: int
    applied: int
    undone: int
    pending_measure: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    error: str = ""
    verdicts: tuple[Verdict, ...] = attrs.field(default=(), converter=as_tuple)


@attrs.frozen
class Endpoint:
    """An OpenAI-compatible server an EvalSuite talks to."""

    base_url: str
    model: str
    kind: str = "openai"  # llama-server | ollama | openai
    api_key: str | None = secret()  # the bearer key requests carry; never written to a record


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
    samples: tuple[EvalSample, ...] = attrs.field(converter=as_tuple)
    framework_version: str = ""


@attrs.frozen
class SuiteScore:
    """One suite's outcome in an eval run (scores.json): headline scores in [0, 1] over the
    `samples` that ran, and beside them the `failed` ones that could not run (not scored)."""

    status: SuiteStatus = attrs.field(converter=states(SuiteStatus, "suite status"))
    scores: Mapping[str, float] = attrs.field(factory=dict, converter=_frozen_map)
    samples: int | None = None  # None: the suite did not get as far as scoring
    passed: int | None = None
    failed: int = 0
    error: str = ""
    framework_version: str = ""
    seconds: float | None = None
    generation_seconds: float | None = None
    limit: int | None = None  # the run's --limit when this suite was scored (a resume may move it)

    @property
    def headline(self) -> float | None:
        """The suite's first score (its headline number)."""
        return float(next(iter(self.scores.values()))) if self.scores else None


@attrs.frozen(kw_only=True)
class ProcessInfo:
    """A process halo started and may have to stop (`halo flush`), as its pid file in
    $HALO_HOME/run/ records it: a bench's halo process, or a server (ServerInfo)."""

    pid: int
    start_ticks: int  # /proc/PID/stat field 22: tells this process from a later one with its pid
    argv: tuple[str, ...] = attrs.field(converter=as_tuple)
    backend: str
    log: str
    started: str
    pid_file: str
    kind: ProcessKind = attrs.field(default=ProcessKind.BENCH,
                                    converter=states(ProcessKind, "process kind"))

    def __str__(self) -> str:
        return f"{self.kind} pid {self.pid}"


@attrs.frozen(kw_only=True)
class ServerInfo(ProcessInfo):
    """A llama-server halo started (`halo serve`), as its pid file records it."""

    host: str
    port: int
    url: str
    model: str
    detached: bool = False
    kind: ProcessKind = attrs.field(default=ProcessKind.SERVER,
                                    converter=states(ProcessKind, "process kind"))
    rpc: tuple[RpcWorker, ...] = attrs.field(default=(), converter=as_rpc_workers)  # a server's workers
    profile: str = ""  # the `halo optimize` profile whose settings it started with ("": none)

    def __str__(self) -> str:
        return f"{self.kind} pid {self.pid} (port {self.port})"


@attrs.frozen
class PluginInfo:
    """What `halo plugins` shows for one loaded (or failed) plugin."""

    name: str
    version: str | None
    source: str  # "builtin" | "entry-point" | "registered"
    distribution: str | None
    hooks: tuple[str, ...] = attrs.field(converter=as_tuple)
    registers: Mapping[str, tuple[str, ...]] = attrs.field(factory=dict)
    error: str | None = None


@attrs.frozen
class MeasureSpec:
    """The fixed bench `halo tune --measure` runs before and after each step (on the
    configured default model and backend unless named).

    A step is "worse beyond noise" when, for some llama-bench test, the one speed rule
    (halo_core.stats.judge_speed: Welch's t-test p < 0.05 and a change above 1%) calls it
    slower and the mean drops by more than `min_effect` (relative); "better beyond noise"
    likewise, the other way.

    With `eval` (a suite or preset), the suites also run against a llama-server of `model`
    before and after each step, and a step is kept only when it is better beyond noise and
    no suite's paired test (halo_core.stats) finds its answers worse.
    """

    model: str = attrs.field(factory=lambda: defaults().model)
    backend: str = attrs.field(factory=lambda: defaults().backend)
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
    """`halo audit`: the host facts, the checks of every tuner that applies to the host, the
    tuners that do not (with why), and the raw readings tuners judged ({tuner: JSON-able})."""

    facts: HostFacts
    checks: tuple[Check, ...] = attrs.field(converter=as_tuple)
    skipped: tuple[Skipped, ...] = attrs.field(default=(), converter=as_tuple)
    readings: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def score(self) -> tuple[int, int]:
        """(checks that PASS, all checks): only the checks of tuners that apply."""
        return sum(c.status == CheckStatus.PASS for c in self.checks), len(self.checks)
