"""What halo knows about llama.cpp's tools: their flags (probed, since builds rename them),
how halo's options become argv, and how llama-bench's JSONL becomes BenchResult records."""

from __future__ import annotations

import json
import math
import re
import threading
from typing import Any, Callable

import attrs

from ..errors import ToolFailed, Unavailable
from ..records import BackendDefaults, BenchResult, ToolCommand
from ..runner import last_line, run_capture
from ..store import halo_home, write_atomic

KV_TYPES: dict[str, tuple[int, int]] = {
    "f32": (4, 1), "f16": (2, 1), "bf16": (2, 1),
    "q8_0": (34, 32), "q4_0": (18, 32), "q4_1": (20, 32), "q5_0": (22, 32), "q5_1": (24, 32),
    "iq4_nl": (18, 32),
}
"""KV cache type -> (bytes per block, elements per block), as ggml stores them."""

DEFAULT_CTX = 131072
"""llama-server's context size unless told otherwise (`halo serve -c`, presets, sweeps)."""
DEFAULT_CACHE_TYPE = "q4_0"
"""llama-server's K/V cache type unless told otherwise (the seed's measured best for serving)."""

_FLAG_LINE = re.compile(r"^\s*(--?[A-Za-z][-\w]*(?:\s*,?\s+--?[A-Za-z][-\w]*)*)(.*)$")
_FLAG = re.compile(r"--?[A-Za-z][-\w]*")


@attrs.frozen
class Flags:
    """The options one llama.cpp binary accepts, each with the rest of its help line."""

    table: dict[str, str]

    @classmethod
    def parse(cls, help_text: str) -> "Flags":
        table: dict[str, str] = {}
        for line in help_text.splitlines():
            match = _FLAG_LINE.match(line)
            if not match:
                continue
            names, rest = match.groups()
            if "has been removed" in rest:  # newer builds list removed flags, then reject them
                continue
            for name in _FLAG.findall(names):
                table.setdefault(name, rest.strip())
        return cls(table)

    def has(self, flag: str) -> bool:
        return flag in self.table

    def deprecated(self, flag: str) -> bool:
        return "deprecated" in self.table.get(flag, "").lower()

    def first(self, *candidates: str) -> str | None:
        """The first supported candidate, preferring ones the binary does not call deprecated."""
        present = [c for c in candidates if c in self.table]
        return next((c for c in present if not self.deprecated(c)), present[0] if present else None)

    def help(self, flag: str) -> str:
        return self.table.get(flag, "")


_memory_cache: dict[str, Any] = {}
_lock = threading.Lock()


def _cache_file():
    return halo_home() / "cache" / "llama-flags.json"


def remembered(key: str | None, compute: Callable[[], Any], keep: Callable[[Any], bool] = lambda _v: True) -> Any:
    """`compute()`'s value (JSON), kept by `key` in memory and on disk: a fact of one llama.cpp
    binary that changes only with it (its flags, its version; the key is ToolCommand.cache_key,
    which names the exact binary). A value `keep` refuses is returned but not kept; no key:
    computed every time."""
    if key:
        with _lock:
            if key in _memory_cache:
                return _memory_cache[key]
            try:
                disk = json.loads(_cache_file().read_text())
            except (OSError, ValueError):
                disk = {}
            if key in disk:
                _memory_cache[key] = disk[key]
                return disk[key]
    value = compute()
    if key and keep(value):
        with _lock:
            _memory_cache[key] = value
            try:
                disk = json.loads(_cache_file().read_text())
            except (OSError, ValueError):
                disk = {}
            disk[key] = value
            write_atomic(_cache_file(), json.dumps(disk, indent=1, sort_keys=True))
    return value


def probe_flags(cmd: ToolCommand, tool: str) -> Flags:
    """Run `tool --help` once per binary (keyed by cmd.cache_key, kept on disk) and parse it."""

    def probe() -> dict[str, str]:
        done = run_capture([*cmd.argv, "--help"], env=cmd.env, timeout=120)
        flags = Flags.parse(done.stdout + "\n" + done.stderr)
        if not flags.table:
            raise ToolFailed(f"{tool} --help printed no options (exit {done.returncode}): {last_line(done)}",
                             returncode=done.returncode)
        return flags.table

    return Flags(remembered(cmd.cache_key, probe))


def _on_off(flags: Flags, flag: str, value: bool) -> str:
    """Newer builds take on|off for -fa; older ones 1|0."""
    return ("on" if value else "off") if "on|off" in flags.help(flag) else ("1" if value else "0")


def _require(flags: Flags, tool: str, *candidates: str) -> str:
    found = flags.first(*candidates)
    if found is None:
        raise Unavailable(f"this {tool} supports none of {', '.join(candidates)}; it is too old or too new for halo")
    return found


def _no_mmap(flags: Flags, old_flag: str, *old_value: str) -> list[str]:
    """Load the model without mmap: `--load-mode none` where the build has it (it deprecated,
    then removed, -mmp / --no-mmap), else the old flag."""
    if flags.has("--load-mode"):
        return ["--load-mode", "none"]
    if flags.has(old_flag):
        return [old_flag, *old_value]
    return []


@attrs.frozen
class BenchParams:
    """One llama-bench invocation in halo's terms, before translation to a binary's flags."""

    model_path: str
    pp: int = 512
    tg: int = 128
    reps: int = 5
    threads: int | None = None
    depths: tuple[int, ...] = attrs.field(default=(), converter=tuple)
    type_k: str = "f16"
    type_v: str = "f16"
    batch: int | None = None
    ubatch: int | None = None
    rpc: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # RPC workers, HOST:PORT
    tensor_split: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    flash_attn: bool | None = None  # None: the backend's default
    n_gpu_layers: int | None = None  # -ngl; None: the backend's default (all layers)


def rpc_args(flags: Flags, tool: str, rpc: tuple[str, ...], tensor_split: tuple[float, ...]) -> list[str]:
    """--rpc and -ts for this binary: llama-bench separates -ts devices with '/' (',' sweeps
    values), llama-server with ','; a build without the RPC backend has no --rpc."""
    argv = []
    if rpc:
        flag = flags.first("--rpc", "-rpc")
        if flag is None:
            raise Unavailable(f"this {tool} has no --rpc: its llama.cpp was built without the RPC "
                              "backend (-DGGML_RPC=ON; scripts/ensure-llama-cpp PYTHON --accel cpu,rpc)")
        argv += [flag, ",".join(rpc)]
    if tensor_split:
        flag = _require(flags, tool, "-ts", "--tensor-split")
        sep = "/" if "/" in flags.help(flag) else ","
        argv += [flag, sep.join(f"{p:g}" for p in tensor_split)]
    return argv


def bench_argv(cmd: ToolCommand, flags: Flags, params: BenchParams,
               defaults: BackendDefaults) -> list[str]:
    """The full llama-bench argv for this binary, whatever its llama.cpp version calls things."""
    if "jsonl" not in flags.help("-o"):
        raise Unavailable("this llama-bench cannot print JSONL (-o jsonl); use a llama.cpp build from 2024 or later")
    argv = [*cmd.argv, "-m", params.model_path, "-p", str(params.pp), "-n", str(params.tg),
            "-r", str(params.reps), "-o", "jsonl"]
    if params.depths and any(params.depths):
        argv += [_require(flags, "llama-bench", "-d", "--n-depth"), ",".join(map(str, params.depths))]
    if flags.has("-ngl"):
        argv += ["-ngl", str(defaults.n_gpu_layers if params.n_gpu_layers is None else params.n_gpu_layers)]
    fa = flags.first("-fa", "--flash-attn")
    if fa:
        argv += [fa, _on_off(flags, fa, defaults.flash_attn if params.flash_attn is None else params.flash_attn)]
    if not defaults.mmap:
        argv += _no_mmap(flags, "-mmp", "0")
    if (params.type_k, params.type_v) != ("f16", "f16"):
        argv += [_require(flags, "llama-bench", "-ctk", "--cache-type-k"), params.type_k,
                 _require(flags, "llama-bench", "-ctv", "--cache-type-v"), params.type_v]
    if params.batch:
        argv += ["-b", str(params.batch)]
    if params.ubatch:
        argv += ["-ub", str(params.ubatch)]
    if params.threads:
        argv += ["-t", str(params.threads)]
    return argv + rpc_args(flags, "llama-bench", params.rpc, params.tensor_split)


def bench_test_name(n_prompt: int, n_gen: int, n_depth: int) -> str:
    """llama-bench's own naming: pp512, tg128, pp512+tg128, with ' @ d4096' for depth."""
    if n_prompt and n_gen:
        name = f"pp{n_prompt}+tg{n_gen}"
    elif n_gen:
        name = f"tg{n_gen}"
    else:
        name = f"pp{n_prompt}"
    return f"{name} @ d{n_depth}" if n_depth else name


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _mmap(rec: dict) -> bool | None:
    if "use_mmap" in rec:  # builds before --load-mode
        return bool(rec["use_mmap"])
    mode = rec.get("load_mode")
    if mode in ("none", "dio", "mlock"):
        return False
    if isinstance(mode, str) and mode.startswith("mmap"):
        return True
    return None


def _flash(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "on" if value else "off"
    return {1: "on", 0: "off", -1: "auto"}.get(_int(value), str(value))


def parse_bench_line(line: str, *, model: str, backend: str) -> BenchResult:
    """One JSONL record of llama-bench -> BenchResult; ValueError on anything else."""
    try:
        rec = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {line[:80]!r}") from exc
    if not isinstance(rec, dict):
        raise ValueError(f"not a JSON object: {line[:80]!r}")
    try:
        n_prompt, n_gen = int(rec["n_prompt"]), int(rec["n_gen"])
        avg = float(rec["avg_ts"])
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"record without n_prompt/n_gen/avg_ts: {line[:80]!r}") from exc
    if n_prompt < 0 or n_gen < 0 or not math.isfinite(avg):
        raise ValueError(f"record with n_prompt {n_prompt}, n_gen {n_gen}, avg_ts {avg}: {line[:80]!r}")
    try:
        return _bench_result(rec, model, backend, n_prompt, n_gen, avg)
    except (TypeError, ValueError, OverflowError, AttributeError) as exc:  # a field of another type
        raise ValueError(f"record with a field halo cannot read ({exc}): {line[:80]!r}") from exc


def _bench_result(rec: dict, model: str, backend: str, n_prompt: int, n_gen: int, avg: float) -> BenchResult:
    n_depth = _int(rec.get("n_depth")) or 0
    samples = rec.get("samples_ts") or []
    if not isinstance(samples, list):
        raise TypeError(f"samples_ts is {type(samples).__name__}, not a list")
    return BenchResult(
        model=model,
        backend=backend,
        test=bench_test_name(n_prompt, n_gen, n_depth),
        n_prompt=n_prompt,
        n_gen=n_gen,
        n_depth=n_depth,
        avg_ts=avg,
        stddev_ts=float(rec.get("stddev_ts") or 0.0),
        samples_ts=[float(s) for s in samples],
        type_k=str(rec.get("type_k") or "f16"),
        type_v=str(rec.get("type_v") or "f16"),
        n_batch=_int(rec.get("n_batch")),
        n_ubatch=_int(rec.get("n_ubatch")),
        n_threads=_int(rec.get("n_threads")),
        n_gpu_layers=_int(rec.get("n_gpu_layers")),
        flash_attn=_flash(rec.get("flash_attn")),
        mmap=_mmap(rec),
        model_file=str(rec.get("model_filename") or ""),
        model_type=str(rec.get("model_type") or ""),
        model_size=_int(rec.get("model_size")),
        model_n_params=_int(rec.get("model_n_params")),
        ggml_backends=str(rec.get("backends") or ""),
        build_commit=str(rec.get("build_commit") or ""),
        build_number=_int(rec.get("build_number")),
        test_time=str(rec.get("test_time") or ""),
    )


@attrs.frozen
class ServerParams:
    """One llama-server invocation in halo's terms (the seed's measured best flags by default)."""

    model_path: str
    host: str = "127.0.0.1"
    port: int = 8080
    ctx: int = DEFAULT_CTX
    parallel: int = 1
    cache_type_k: str = DEFAULT_CACHE_TYPE
    cache_type_v: str = DEFAULT_CACHE_TYPE
    ngram: bool = False  # n-gram speculation: ngram-simple, draft max 64 / min 4
    draft_max: int = 64
    draft_min: int = 4
    no_think: bool = False  # reasoning budget 0
    api_key_file: str | None = None  # the key itself never goes in argv (`ps` shows argv)
    threads: int | None = None
    rpc: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # RPC workers, HOST:PORT
    tensor_split: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    batch: int | None = None  # -b; None: llama.cpp's default
    ubatch: int | None = None  # -ub; None: the backend's default, else llama.cpp's
    flash_attn: bool | None = None  # None: the backend's default


def server_argv(cmd: ToolCommand, flags: Flags, params: ServerParams,
                defaults: BackendDefaults) -> list[str]:
    """The full llama-server argv for this binary. llama.cpp renamed --draft-max to
    --spec-draft-n-max and replaced --no-mmap with --load-mode; both generations work."""
    argv = [*cmd.argv, "-m", params.model_path, "--host", params.host, "--port", str(params.port),
            "-c", str(params.ctx), _require(flags, "llama-server", "-np", "--parallel"),
            str(params.parallel)]
    if flags.has("-ngl"):
        argv += ["-ngl", str(defaults.n_gpu_layers)]
    fa, flash = flags.first("-fa", "--flash-attn"), defaults.flash_attn if params.flash_attn is None else params.flash_attn
    if fa and "on|off" in flags.help(fa):
        argv += [fa, "on" if flash else "off"]
    elif fa and flash:  # older builds: a bare switch
        argv += [fa]
    if not defaults.mmap:
        argv += _no_mmap(flags, "--no-mmap")
    argv += [_require(flags, "llama-server", "-ctk", "--cache-type-k"), params.cache_type_k,
             _require(flags, "llama-server", "-ctv", "--cache-type-v"), params.cache_type_v]
    if params.ngram:
        argv += ["--spec-type", "ngram-simple",
                 _require(flags, "llama-server", "--spec-draft-n-max", "--draft-max"), str(params.draft_max),
                 _require(flags, "llama-server", "--spec-draft-n-min", "--draft-min"), str(params.draft_min)]
    if params.no_think:
        argv += [_require(flags, "llama-server", "--reasoning-budget"), "0"]
    if params.api_key_file:
        argv += [_require(flags, "llama-server", "--api-key-file"), params.api_key_file]
    if params.threads:
        argv += ["-t", str(params.threads)]
    if params.batch:
        argv += ["-b", str(params.batch)]
    if params.ubatch or defaults.ubatch:
        argv += ["-ub", str(params.ubatch or defaults.ubatch)]
    argv += rpc_args(flags, "llama-server", params.rpc, params.tensor_split)
    if flags.has("--metrics"):  # its Prometheus /metrics: what `halo bench serve` scrapes
        argv += ["--metrics"]
    return argv + list(params.extra)
