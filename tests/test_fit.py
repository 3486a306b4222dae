"""GGUF header reading and the fit calculation: on the real smoke model, on GGUFs written with
chosen attention layouts, and against an amdgpu sysroot."""

from __future__ import annotations

import json
import shutil

import pytest

import halo_core
from halo_core.errors import ModelError
from halo_core.llama.fit import (
    attention_layout, kv_cache_bytes, parse_kv_type, recurrent_bytes, row_bytes,
)
from halo_core.models.header import SkippedArray, read_header
from halo_core.machine.gpu import addressable_memory, read_gpus
from hub import write_gguf

MiB, GiB = 1 << 20, 1 << 30
SMOKE_KV_8K = 8192 * 30 * 3 * (64 + 64) * 2  # ctx x layers x kv heads x (k + v dims) x f16


def _sysroot(path, vram: int, gtt: int, mem_total_kb: int = 64 * 1024 * 1024):
    """An amdgpu machine's sysfs/procfs as files: card1 is the GPU, card0 a display-only
    device without memory info, card1-eDP-1 a connector."""
    (path / "proc").mkdir(parents=True)
    (path / "proc/meminfo").write_text(f"MemTotal:       {mem_total_kb} kB\nMemFree:  1000 kB\n")
    for name in ("card0/device", "card1-eDP-1", "card1/device"):
        (path / "sys/class/drm" / name).mkdir(parents=True)
    (path / "sys/class/drm/card1/device/mem_info_vram_total").write_text(f"{vram}\n")
    (path / "sys/class/drm/card1/device/mem_info_gtt_total").write_text(f"{gtt}\n")
    return path


def test_smoke_header_and_layout(smoke_model):
    header = read_header(smoke_model.path)
    assert header.version == 3 and header.arch == "llama" and header.tensor_count == 272
    assert header.metadata["tokenizer.ggml.tokens"] == SkippedArray(8, 49152)
    layout = attention_layout(header)
    assert (layout.n_layer, layout.n_head, layout.n_head_kv[0], layout.n_embd) == (30, 9, 3, 576)
    assert set(layout.n_head_kv) == {3} and all(layout.has_kv)
    assert (layout.head_dim_k, layout.head_dim_v) == (64, 64)  # 576 / 9: no key_length key
    assert not any(layout.is_swa) and not any(layout.is_recurrent) and not layout.mla
    assert layout.context_length == 8192


def test_kv_bytes_formula_on_smoke(smoke_model):
    layout = attention_layout(read_header(smoke_model.path))
    assert kv_cache_bytes(layout, 8192) == SMOKE_KV_8K == 188_743_680
    assert kv_cache_bytes(layout, 8192, "q8_0", "q8_0") == 8192 * 30 * 2 * (192 * 34 // 32)
    assert kv_cache_bytes(layout, 8192, "q4_0", "q8_0") == 8192 * 30 * (192 * 18 // 32 + 192 * 34 // 32)
    assert kv_cache_bytes(layout, 100, parallel=4) == 100 * 30 * 3 * 128 * 2  # slots share -c
    assert parse_kv_type("q4_0:q8_0") == ("q4_0", "q8_0") and parse_kv_type("Q8_0") == ("q8_0", "q8_0")
    assert [row_bytes(t, 32) for t in ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl")] \
        == [128, 64, 64, 34, 18, 20, 22, 24, 18]
    with pytest.raises(ModelError, match=r"^unknown KV cache type 'q3_k' \(known: f32, f16, bf16, q8_0, "):
        parse_kv_type("q3_k")


def test_fit_against_an_amdgpu_sysroot(smoke_model, tmp_path):
    root = _sysroot(tmp_path / "root", vram=512 * MiB, gtt=62 * GiB)
    memory, [card] = addressable_memory(read_gpus(root))
    assert memory == 512 * MiB + 62 * GiB
    assert (card.card, card.vram_total, card.gtt_total) == ("card1", 512 * MiB, 62 * GiB)
    report = halo_core.fit_model("smoke", ctx=8192, root=root)
    assert (report.n_layer, report.n_head, set(report.n_head_kv)) == (30, 9, {3})
    assert (report.head_dim_k, report.head_dim_v, report.kv_layers) == (64, 64, 30)
    assert report.kv_bytes == SMOKE_KV_8K and report.recurrent_bytes == 0
    assert report.weights_bytes == smoke_model.size
    assert report.total_bytes == smoke_model.size + SMOKE_KV_8K
    assert report.fits and report.headroom_bytes == memory - report.total_bytes
    assert report.memory == memory and report.gpus == (card,) and report.notes == ()


def test_does_not_fit_exits_3(smoke_model, tmp_path, halo):
    root = _sysroot(tmp_path / "root", vram=64 * MiB, gtt=128 * MiB)
    done = halo("models", "fit", "smoke", "--ctx", "8192", "--sysroot", str(root))
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1] == ("layout    30 layers, 9 heads, 3 KV heads, head dim 64/64 (K/V); "
                        "30 of 30 layers keep KV")
    assert lines[3] == "KV cache  188.7 MB  (ctx 8192, f16, parallel 1)"
    short = smoke_model.size + SMOKE_KV_8K - 192 * MiB
    assert lines[-2] == f"fits      NO, {short / 1e6:.1f} MB short"
    assert lines[-1] == ("boxes     2 like this one (201.3 MB each), joined with `halo rpc serve` on "
                         "the others and --rpc")
    assert "card1: VRAM 67.1 MB + GTT 134.2 MB" in lines[4]


def test_fit_json_and_meminfo_fallback(smoke_model, tmp_path, halo):
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    (root / "proc/meminfo").write_text("MemTotal:       2048000 kB\n")
    done = halo("models", "fit", "smoke", "--ctx", "8192", "--kv-type", "q8_0", "--json",
                "--sysroot", str(root))
    assert done.returncode == 0, done.stderr
    fit = json.loads(done.stdout)
    assert fit["memory"] == 2048000 * 1024 and fit["gpus"] == []  # no GPU: the RAM in /proc/meminfo
    assert fit["kv_bytes"] == 8192 * 30 * 2 * 204 and fit["type_k"] == fit["type_v"] == "q8_0"
    assert fit["fits"] is True and fit["ctx"] == 8192 and fit["n_head_kv"] == [3] * 30
    done = halo("models", "fit", "smoke", "--kv-type", "q3_k", "--sysroot", str(root))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("Error: unknown KV cache type 'q3_k' (known: f32, ")


def _layout(tmp_path, arch: str, **keys):
    meta = {"general.architecture": arch}
    meta.update({f"{arch}.{k}": v for k, v in keys.items()})
    return attention_layout(read_header(write_gguf(tmp_path / f"{arch}.gguf", meta)))


def test_per_layer_kv_heads_and_mamba_hybrid(tmp_path):
    # nemotron_h: each layer is mamba (no KV heads, no FFN), MLP (FFN only) or attention
    layout = _layout(tmp_path, "nemotron_h", block_count=6, embedding_length=1024,
                     **{"attention.head_count": 8, "attention.head_count_kv": [0, 0, 2, 0, 0, 2],
                        "feed_forward_length": [0, 512, 0, 512, 0, 0],
                        "attention.key_length": 128, "attention.value_length": 128,
                        "ssm.conv_kernel": 4, "ssm.inner_size": 2048, "ssm.state_size": 64,
                        "ssm.group_count": 8})
    assert layout.has_kv == (False, False, True, False, False, True)
    assert layout.is_recurrent == (True, False, False, False, True, False)
    assert kv_cache_bytes(layout, 1000) == 1000 * 2 * (2 * 128 * 2) * 2
    floats = 3 * (2048 + 2 * 8 * 64) + 64 * 2048
    assert recurrent_bytes(layout, parallel=2) == 2 * floats * 4 * 2


def test_qwen35_hybrid_every_fourth_layer_attends(tmp_path):
    layout = _layout(tmp_path, "qwen35moe", block_count=8, embedding_length=2048,
                     **{"attention.head_count": 16, "attention.head_count_kv": 2,
                        "attention.key_length": 256, "attention.value_length": 256,
                        "ssm.conv_kernel": 4, "ssm.inner_size": 4096, "ssm.state_size": 128,
                        "ssm.group_count": 16})
    assert [il for il in range(8) if layout.has_kv[il]] == [3, 7]  # no interval key: default 4
    assert kv_cache_bytes(layout, 65536, "q8_0", "q8_0") == 65536 * 2 * 2 * (512 * 34 // 32)
    assert recurrent_bytes(layout) == 6 * (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4
    layout = _layout(tmp_path, "qwen3next", block_count=8, nextn_predict_layers=1,
                     full_attention_interval=2,
                     **{"attention.head_count": 16, "attention.head_count_kv": 2,
                        "attention.key_length": 256, "attention.value_length": 256})
    assert [il for il in range(8) if layout.has_kv[il]] == [1, 3, 5]  # layer 7 is the MTP block


def test_sliding_window_layers(tmp_path):
    # gemma3: llama.cpp's period 6 (5 sliding layers, then one full)
    layout = _layout(tmp_path, "gemma3", block_count=12, embedding_length=2560,
                     **{"attention.head_count": 8, "attention.head_count_kv": 4,
                        "attention.key_length": 256, "attention.value_length": 256,
                        "attention.sliding_window": 1024})
    assert [il for il in range(12) if not layout.is_swa[il]] == [5, 11]
    row = 2 * (4 * 256 * 2)
    assert kv_cache_bytes(layout, 32768) == 2 * 32768 * row + 10 * (1024 + 512) * row
    assert kv_cache_bytes(layout, 32768, parallel=2) == 2 * 32768 * row + 10 * 2 * (1024 + 512) * row
    assert kv_cache_bytes(layout, 1000) == 12 * 1000 * row  # the window is capped at ctx
    # a per-layer pattern with other head dims on the sliding layers (gemma4-style)
    layout = _layout(tmp_path, "gemma4", block_count=4, embedding_length=2560,
                     **{"attention.head_count": 8, "attention.head_count_kv": 2,
                        "attention.key_length": 512, "attention.value_length": 512,
                        "attention.key_length_swa": 256, "attention.value_length_swa": 256,
                        "attention.sliding_window": 512,
                        "attention.sliding_window_pattern": [True, True, True, False]})
    assert layout.is_swa == (True, True, True, False)
    assert kv_cache_bytes(layout, 8192) == 8192 * 2 * 2 * 512 * 2 + 3 * 1024 * 2 * 2 * 256 * 2
    # a window with no known pattern: every layer at full context, and said so
    layout = _layout(tmp_path, "mistral3", block_count=2, embedding_length=1024,
                     **{"attention.head_count": 8, "attention.sliding_window": 4096})
    assert not any(layout.is_swa)
    assert layout.notes == ("mistral3 has a 4096-token sliding window but no known layer pattern: "
                            "every layer counted at full context (an overestimate)",)


def test_mla_keeps_one_latent_row_and_no_v(tmp_path):
    layout = _layout(tmp_path, "deepseek2", block_count=3, embedding_length=2048,
                     **{"attention.head_count": 20, "attention.head_count_kv": 1,
                        "attention.key_length": 576, "attention.value_length": 512,
                        "attention.key_length_mla": 192, "attention.value_length_mla": 128,
                        "attention.kv_lora_rank": 512})
    assert layout.mla and layout.head_dim_v == 0
    assert kv_cache_bytes(layout, 4096) == 3 * 4096 * 576 * 2


def test_headers_that_are_not_gguf(tmp_path, smoke_model):
    (tmp_path / "x.gguf").write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelError) as err:
        read_header(tmp_path / "x.gguf")
    assert str(err.value) == f"{tmp_path}/x.gguf is not a GGUF file (no GGUF magic bytes)"
    shutil.copyfile(smoke_model.path, tmp_path / "cut.gguf")
    with open(tmp_path / "cut.gguf", "r+b") as fh:
        fh.truncate(100_000)  # inside the vocabulary
    with pytest.raises(ModelError, match=r"/cut\.gguf: metadata key 'tokenizer\.ggml\.\w+': GGUF header is "
                                         r"truncated at byte \d+$"):  # (#21) it names the field
        read_header(tmp_path / "cut.gguf")
    write_gguf(tmp_path / "noarch.gguf", {"general.name": "x"})
    with pytest.raises(ModelError, match="the GGUF header has no architecture or block_count$"):
        attention_layout(read_header(tmp_path / "noarch.gguf"))


def test_hostile_headers_are_one_line_errors_naming_the_field(tmp_path):
    """(#21) Nesting, counts and sizes are capped: a header built to exhaust the reader is a
    ModelError that says which field is wrong, never a RecursionError or a hang."""
    import struct

    def gguf(kvs: bytes, n: int) -> bytes:
        return b"GGUF" + struct.pack("<IQQ", 3, 0, n) + kvs

    def string(x: bytes) -> bytes:
        return struct.pack("<Q", len(x)) + x

    deep = struct.pack("<I", 9) + b"".join(struct.pack("<IQ", 9, 1) for _ in range(5000))
    cases = {
        "deep": (gguf(string(b"a.deep") + deep, 1), "metadata key 'a.deep': arrays nested deeper than 4 levels"),
        "keys": (gguf(b"", 1 << 40), "the GGUF header claims 1099511627776 metadata keys (at most 65536"),
        "keylen": (gguf(struct.pack("<Q", 1 << 50), 1), "metadata key 1's name claims 1125899906842624 bytes"),
        "strlen": (gguf(string(b"k") + struct.pack("<IQ", 8, 1 << 60), 1), "metadata key 'k': GGUF header is truncated"),
        "type": (gguf(string(b"k") + struct.pack("<I", 77), 1), "metadata key 'k': unknown GGUF value type 77"),
        # a vocabulary (skipped, not read) whose strings run past the end, or that ends early
        "vocab": (gguf(string(b"v") + struct.pack("<IIQ", 9, 8, 10**6) + string(b"a") + struct.pack("<Q", 1 << 60), 1),
                  "metadata key 'v': GGUF header is truncated"),
        "short": (gguf(string(b"v") + struct.pack("<IIQ", 9, 8, 5000) + string(b"a") * 4999, 1),
                  "metadata key 'v': GGUF header is truncated"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / f"{name}.gguf"
        path.write_bytes(data)
        with pytest.raises(ModelError) as err:
            read_header(path)
        assert str(err.value).startswith(f"{path}: {message}"), name
