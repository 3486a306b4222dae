"""Does a model fit? Weights + KV cache (+ recurrent state) against GPU-addressable memory.

The attention layout comes from the GGUF header (halo_core.gguf) and follows what llama.cpp
allocates:

- KV cache per layer = cells x (row(type_k, kv_heads x head_dim_k) + row(type_v, kv_heads x
  head_dim_v)); `{arch}.attention.head_count_kv` may be one number or one per layer, and a
  layer with 0 KV heads keeps no cache. Head dims come from `key_length` / `value_length`, else
  embedding_length / head_count.
- Full-attention layers hold `ctx` cells (llama.cpp's -c: all --parallel slots share them).
- Sliding-window layers hold about parallel x (window + ubatch) cells, capped at ctx. Which
  layers slide comes from `attention.sliding_window_pattern` (per-layer flags or a period),
  else from llama.cpp's per-architecture period (gemma2, gemma3, gemma3n, cohere2, gpt-oss,
  exaone4); other architectures with a window are counted at full context (an overestimate).
- Hybrid models: linear-attention / SSM layers keep no KV cache but a fixed recurrent state
  per slot (f32): qwen3next/qwen3.5 have full attention every `full_attention_interval`-th
  layer (default 4); mamba-style hybrids mark attention layers by non-zero KV heads.
- MLA (DeepSeek-2/3, GLM-4.7-Flash; GGUFs with `attention.key_length_mla`): one latent K row
  per layer and no V cache, as llama.cpp keeps it.
- NextN/MTP layers (`nextn_predict_layers`) keep no cache. Compute buffers are not counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from ..errors import ModelError
from ..models.header import GgufHeader, SkippedArray, read_header
from ..machine.gpu import addressable_memory, read_gpus
from ..machine.hostfacts import meminfo
from ..models.resolve import find_source
from ..plugins import PluginHost
from ..records import FitReport
from .flags import KV_TYPES
from .process import is_loopback
from .rpc import describe, probe_workers

SWA_PERIOD = {"gemma2": 2, "gemma3": 6, "gemma3n": 5, "cohere2": 4, "gpt-oss": 2, "exaone4": 4}
"""llama.cpp's sliding-window period per architecture when the GGUF gives no pattern:
layer il slides when il % period < period - 1."""

HYBRID_INTERVAL = {"qwen3next": 4, "qwen35": 4, "qwen35moe": 4}
"""Architectures whose layers are linear attention except every Nth (default N)."""

DEFAULT_UBATCH = 512


def parse_kv_type(text: str) -> tuple[str, str]:
    """"q8_0" -> (q8_0, q8_0); "q4_0:q8_0" -> K q4_0, V q8_0."""
    k, _, v = text.partition(":")
    k, v = k.strip().lower(), (v or k).strip().lower()
    for t in (k, v):
        if t not in KV_TYPES:
            raise ModelError(f"unknown KV cache type '{t}' (known: {', '.join(KV_TYPES)})")
    return k, v


def row_bytes(kv_type: str, elements: int) -> int:
    """Bytes ggml uses for `elements` values of `kv_type`."""
    block_bytes, block_elems = KV_TYPES[kv_type]
    return -(-elements * block_bytes // block_elems)


@attrs.frozen
class AttentionLayout:
    """Per-layer facts that size the KV cache and recurrent state of one model."""

    arch: str
    n_layer: int
    n_embd: int
    n_head: int
    n_head_kv: tuple[int, ...]
    head_dim_k: int
    head_dim_v: int
    head_dim_k_swa: int
    head_dim_v_swa: int
    has_kv: tuple[bool, ...]
    is_swa: tuple[bool, ...]
    n_swa: int
    is_recurrent: tuple[bool, ...]
    recurrent_floats: int  # per recurrent layer, per slot
    context_length: int
    mla: bool
    notes: tuple[str, ...]


def _per_layer(header: GgufHeader, key: str, n_layer: int, default: Any) -> list:
    value = header.arch_key(key, default)
    if isinstance(value, SkippedArray):
        raise ModelError(f"{header.path}: {header.arch}.{key} has {value.count} entries for {n_layer} layers")
    if isinstance(value, list):
        return (list(value) + [value[-1] if value else 0] * n_layer)[:n_layer]
    return [value] * n_layer


def attention_layout(header: GgufHeader) -> AttentionLayout:
    """Read the attention layout (see the module docstring) from a GGUF header."""
    arch, notes = header.arch, []
    n_layer = header.arch_key("block_count")
    if not arch or not isinstance(n_layer, int):
        raise ModelError(f"{header.path}: the GGUF header has no architecture or block_count")
    n_embd = int(header.arch_key("embedding_length", 0) or 0)
    heads = [int(h) for h in _per_layer(header, "attention.head_count", n_layer, 0)]
    n_head = next((h for h in heads if h), 0)
    n_head_kv = [int(h) for h in _per_layer(header, "attention.head_count_kv", n_layer, None)
                 ] if header.arch_key("attention.head_count_kv") is not None else list(heads)
    default_dim = n_embd // n_head if n_head else 0
    head_k = int(header.arch_key("attention.key_length", default_dim))
    head_v = int(header.arch_key("attention.value_length", default_dim))
    head_k_swa = int(header.arch_key("attention.key_length_swa", head_k))
    head_v_swa = int(header.arch_key("attention.value_length_swa", head_v))

    mla = header.arch_key("attention.key_length_mla") is not None
    if mla:
        head_v = head_v_swa = 0
        notes.append("MLA: one latent K row per layer and no V cache, as llama.cpp keeps it")
    elif header.arch_key("attention.kv_lora_rank") is not None:
        notes.append("MLA model without key_length_mla: counted as full per-head K and V")

    n_main = n_layer - int(header.arch_key("nextn_predict_layers", 0) or 0)

    # recurrent (linear attention / SSM) layers
    ssm = {k: int(header.arch_key(f"ssm.{k}", 0) or 0)
           for k in ("conv_kernel", "inner_size", "state_size", "group_count")}
    shortconv = int(header.arch_key("shortconv.l_cache", 0) or 0)
    wkv = int(header.arch_key("wkv.head_size", 0) or 0)
    interval = header.arch_key("full_attention_interval", HYBRID_INTERVAL.get(arch))
    if interval:
        recurrent = [il < n_main and (il + 1) % int(interval) != 0 for il in range(n_layer)]
    elif ssm["inner_size"] or shortconv or wkv:
        ffs = _per_layer(header, "feed_forward_length", n_layer, 0)
        recurrent = [n_head_kv[il] == 0 and not (arch.startswith("nemotron_h") and ffs[il])
                     for il in range(n_layer)]
    else:
        recurrent = [False] * n_layer
    if wkv:
        floats = int(header.arch_key("token_shift_count", 2)) * n_embd + n_embd * wkv
    elif shortconv:
        floats = n_embd * (shortconv - 1)
    else:
        floats = (max(ssm["conv_kernel"] - 1, 0)
                  * (ssm["inner_size"] + 2 * ssm["group_count"] * ssm["state_size"])
                  + ssm["state_size"] * ssm["inner_size"])

    has_kv = [il < n_main and not recurrent[il] and n_head_kv[il] > 0 for il in range(n_layer)]

    # sliding-window layers
    n_swa = int(header.arch_key("attention.sliding_window", 0) or 0)
    pattern = header.arch_key("attention.sliding_window_pattern")
    if n_swa and isinstance(pattern, list):
        swa = [bool(x) for x in (pattern + [False] * n_layer)[:n_layer]]
    elif n_swa and (isinstance(pattern, int) or arch in SWA_PERIOD):
        period = int(pattern) if isinstance(pattern, int) else SWA_PERIOD[arch]
        swa = [period == 0 or il % period < period - 1 for il in range(n_layer)]
    else:
        swa = [False] * n_layer
        if n_swa:
            notes.append(f"{arch} has a {n_swa}-token sliding window but no known layer pattern: "
                         "every layer counted at full context (an overestimate)")
    return AttentionLayout(
        arch=arch, n_layer=n_layer, n_embd=n_embd, n_head=n_head, n_head_kv=tuple(n_head_kv),
        head_dim_k=head_k, head_dim_v=head_v, head_dim_k_swa=head_k_swa, head_dim_v_swa=head_v_swa,
        has_kv=tuple(has_kv), is_swa=tuple(s and h for s, h in zip(swa, has_kv)), n_swa=n_swa,
        is_recurrent=tuple(recurrent), recurrent_floats=floats if any(recurrent) else 0,
        context_length=int(header.arch_key("context_length", 0) or 0), mla=mla, notes=tuple(notes))


def kv_cache_bytes(layout: AttentionLayout, ctx: int, type_k: str = "f16", type_v: str = "f16",
                   parallel: int = 1, ubatch: int = DEFAULT_UBATCH) -> int:
    """Bytes of KV cache for `ctx` cells shared by `parallel` slots."""
    swa_cells = min(ctx, parallel * (layout.n_swa + ubatch))
    total = 0
    for il in range(layout.n_layer):
        if not layout.has_kv[il]:
            continue
        swa = layout.is_swa[il]
        hk = layout.head_dim_k_swa if swa else layout.head_dim_k
        hv = layout.head_dim_v_swa if swa else layout.head_dim_v
        kv = layout.n_head_kv[il]
        row = row_bytes(type_k, kv * hk) + (row_bytes(type_v, kv * hv) if hv else 0)
        total += (swa_cells if swa else ctx) * row
    return total


def recurrent_bytes(layout: AttentionLayout, parallel: int = 1) -> int:
    """Bytes of recurrent state (f32, one copy per slot) of the linear-attention/SSM layers."""
    return sum(layout.is_recurrent) * layout.recurrent_floats * 4 * parallel


def fit_model(ref: str, *, ctx: int | None = None, kv_type: str = "f16", parallel: int = 1,
              root: Path = Path("/"), host: PluginHost | None = None,
              rpc: tuple[str, ...] = ()) -> FitReport:
    """Whether the downloaded model `ref` fits this machine's GPU-addressable memory with a
    `ctx`-cell KV cache (default: the model's trained context) of `kv_type` ("T" or "K:V"),
    and how many such machines it needs. With `rpc` workers (HOST:PORT), whether it fits the
    cluster: this machine plus the memory each worker reports (a worker on this machine's
    loopback stands for this machine).

    The memory is halo_core.gpu.addressable_memory's, else MemTotal from /proc/meminfo."""
    if parallel < 1:
        raise ModelError("--parallel must be at least 1")
    type_k, type_v = parse_kv_type(kv_type)
    source, full = find_source(ref, host)
    model = source.local(full)
    if model is None:
        raise ModelError(f"model '{ref}' is not downloaded: run `halo models pull {ref}` first")
    layout = attention_layout(read_header(model.path))
    notes = list(layout.notes)
    if ctx is None:
        ctx = layout.context_length or 4096
    if ctx < 1:
        raise ModelError("--ctx must be at least 1")
    if layout.context_length and ctx > layout.context_length:
        notes.append(f"ctx {ctx} is beyond the model's trained context of {layout.context_length}")
    kv = kv_cache_bytes(layout, ctx, type_k, type_v, parallel)
    state = recurrent_bytes(layout, parallel)
    memory, gpus = addressable_memory(read_gpus(root))
    if not gpus:  # no GPU memory figures: the RAM the OS sees
        memory = meminfo(root).get("MemTotal", 0)
    total = model.size + kv + state
    workers, cluster = _cluster(rpc, memory)
    capacity = memory if cluster is None else cluster
    return FitReport(
        model=model.name, path=model.path, arch=layout.arch, ctx=ctx, parallel=parallel,
        type_k=type_k, type_v=type_v, n_layer=layout.n_layer, n_head=layout.n_head,
        n_head_kv=layout.n_head_kv, head_dim_k=layout.head_dim_k, head_dim_v=layout.head_dim_v,
        kv_layers=sum(layout.has_kv), swa_layers=sum(layout.is_swa), n_swa=layout.n_swa,
        recurrent_layers=sum(layout.is_recurrent), weights_bytes=model.size, kv_bytes=kv,
        recurrent_bytes=state, total_bytes=total, memory=memory, gpus=gpus, fits=total <= capacity,
        headroom_bytes=capacity - total, notes=notes,
        boxes=max(1, -(-total // memory)) if memory else 1,
        workers=workers, cluster_bytes=cluster)


def _cluster(endpoints: tuple[str, ...], local: int) -> tuple[tuple, int | None]:
    """(the workers, the cluster's memory): what each worker reports, plus this machine's
    unless a worker runs on it (loopback)."""
    if not endpoints:
        return (), None
    workers = tuple(probe_workers(endpoints))
    for worker in workers:
        if worker.state != "up" or not worker.devices:
            raise ModelError(describe(worker) if worker.state != "up"
                             else f"RPC worker {worker.endpoint} reports no devices: {worker.error}")
    here = any(is_loopback(w.endpoint.rpartition(":")[0]) for w in workers)
    return workers, sum(w.total_memory for w in workers) + (0 if here else local)
