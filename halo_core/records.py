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
class GpuMemory:
    """Memory the GPU can address: VRAM + GTT from amdgpu sysfs, else the RAM in /proc/meminfo."""

    total: int
    source: str  # "amdgpu" | "meminfo"
    vram: int = 0
    gtt: int = 0
    card: str | None = None


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
    memory: GpuMemory
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
    """One reversible system change a Tuner plans: a file edit, a sysfs/sysctl write, a command."""

    tuner: str
    kind: str  # "file" | "sysfs" | "sysctl" | "command"
    target: str
    description: str
    before: str | None = None
    after: str | None = None
    undo: tuple[str, ...] = attrs.field(default=(), converter=_tuple)
    needs_reboot: bool = False


@attrs.frozen
class Check:
    """One verify item: PASS, WARN or FAIL, with what was seen and the command that fixes it."""

    name: str
    status: str  # "PASS" | "WARN" | "FAIL"
    detail: str
    fix: str = ""


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
