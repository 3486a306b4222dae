"""The llama.cpp build that scripts/ensure-llama-cpp installs: only what halo runs, with the
flags it was asked for, recorded where provenance reads them."""

from __future__ import annotations

import json
import subprocess
import sys

import halo_core
from conftest import ROOT

SCRIPT = ROOT / "scripts" / "ensure-llama-cpp"


def test_the_build_has_the_tools_and_no_tests_or_examples(llama_bin_dir):
    names = {p.name for p in llama_bin_dir.iterdir() if p.is_file() and not p.name.startswith(("lib", "."))
             and not p.suffix}  # (the wheel's bin/.gitkeep is no program)
    # with the RPC backend (the Makefile's default cpu,rpc): the worker `halo rpc serve` starts
    assert {"llama-bench", "llama-server", "llama-quantize", "ggml-rpc-server"} <= names
    # CMAKE_ARGS reached pip: no test binaries, no examples (a fresh default build has ~90
    # binaries, most of them test-*; llama-simple and llama-embedding are examples)
    assert not {n for n in names if n.startswith("test-")}
    assert not {"llama-simple", "llama-embedding", "llama-gguf", "llama-batched"} & names
    # and of llama.cpp's tools only those halo runs (scripts/llama-targets.cmake): no llama-cli,
    # mtmd, perplexity, imatrix, ... nor the `llama` app
    assert names <= {"llama-bench", "llama-server", "ggml-rpc-server", "rpc-server", "llama-quantize",
                     "llama-gguf-split"}, sorted(names)


def test_the_build_record_names_the_accelerator_and_flags(llama_bin_dir):
    record = json.loads((llama_bin_dir.parent / "halo_build.json").read_text())
    accel = record["accel"].split(",")  # `make test ACCEL=...`: cpu,rpc by default, cuda,rpc on a GPU box
    assert "rpc" in accel  # the RPC tests need the worker
    assert len(accel) == 2 and accel[0] in ("cpu", "cuda", "vulkan", "rocm"), record["accel"]
    backend_flag = {"cpu": None, "cuda": "-DGGML_CUDA=ON", "vulkan": "-DGGML_VULKAN=ON",
                    "rocm": "-DGGML_HIP=ON"}[accel[0]]
    args = record["cmake_args"].split()
    for flag in ("-DLLAMA_BUILD_TESTS=OFF", "-DLLAMA_BUILD_EXAMPLES=OFF", "-DLLAMA_CURL=OFF",
                 "-DLLAMA_OPENSSL=OFF", "-DLLAMA_USE_PREBUILT_UI=OFF", "-DGGML_RPC=ON",
                 *([backend_flag] if backend_flag else [])):
        assert flag in args
    if backend_flag is None:  # a CPU build carries no GPU backend
        assert not {"-DGGML_CUDA=ON", "-DGGML_VULKAN=ON", "-DGGML_HIP=ON"} & set(args)
    # and every run's provenance carries it
    facts = halo_core.get_host().backend("native").provenance()
    assert facts["accel"] == record["accel"]
    assert facts["cmake_args"] == record["cmake_args"]


def test_an_installed_build_with_the_same_key_is_kept(llama_bin_dir):
    accel = json.loads((llama_bin_dir.parent / "halo_build.json").read_text())["accel"]
    done = subprocess.run([str(SCRIPT), sys.executable, "--accel", accel], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("already installed")


def test_an_unknown_accelerator_is_one_line_and_exit_2():
    done = subprocess.run([str(SCRIPT), sys.executable, "--accel", "cuda,tpu"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "ensure-llama-cpp: unknown accelerator 'tpu' (cpu, cuda, vulkan, rocm, rpc)")
