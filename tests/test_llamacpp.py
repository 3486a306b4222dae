"""Flag probing and translation against the real llama.cpp build and older builds' help texts,
and parsing of llama-bench JSONL records from both generations."""

from __future__ import annotations

import json

import pytest

from halo_core import BackendDefaults, ToolCommand
from halo_core.llama.flags import (
    BenchParams, Flags, ServerParams, bench_argv, parse_bench_line, probe_flags, server_argv,
    bench_test_name,
)
from halo_core.store import halo_home

from conftest import DATA

OLD_BENCH = Flags.parse((DATA / "llama-bench-help-b5000.txt").read_text())
OLD_SERVER = Flags.parse((DATA / "llama-server-help-b5000.txt").read_text())
CMD = ToolCommand(["llama-bench"])


def _value(argv, flag):
    return argv[argv.index(flag) + 1]


@pytest.fixture(scope="module")
def new_bench(llama_bin_dir):
    path = llama_bin_dir / "llama-bench"
    return probe_flags(ToolCommand([str(path)], cache_key=f"test:{path}"), "llama-bench")


@pytest.fixture(scope="module")
def new_server(llama_bin_dir):
    path = llama_bin_dir / "llama-server"
    return probe_flags(ToolCommand([str(path)], cache_key=f"test:{path}"), "llama-server")


def test_real_llama_bench_uses_load_mode_not_mmp(new_bench):
    argv = bench_argv(CMD, new_bench, BenchParams("/m.gguf", 64, 16, 2), BackendDefaults())
    assert argv[:3] == ["llama-bench", "-m", "/m.gguf"]
    assert _value(argv, "--load-mode") == "none"
    assert "-mmp" not in argv
    assert _value(argv, "-fa") == "on"
    assert _value(argv, "-o") == "jsonl"
    assert (_value(argv, "-p"), _value(argv, "-n"), _value(argv, "-r")) == ("64", "16", "2")


def test_old_llama_bench_uses_mmp_and_numeric_fa():
    argv = bench_argv(CMD, OLD_BENCH, BenchParams("/m.gguf", ubatch=512, depths=(0, 4096),
                                                  type_k="q8_0", type_v="q4_0"), BackendDefaults())
    assert _value(argv, "-mmp") == "0"
    assert "--load-mode" not in argv
    assert _value(argv, "-fa") == "1"
    assert _value(argv, "-ub") == "512"
    assert _value(argv, "-ngl") == "99"
    assert _value(argv, "-d") == "0,4096"
    assert (_value(argv, "-ctk"), _value(argv, "-ctv")) == ("q8_0", "q4_0")


def test_deprecated_and_removed_flags_lose():
    flags = Flags.parse(
        "  -mmp, --mmap <0|1>        (DEPRECATED IN FAVOUR OF --load-mode)\n"
        "  -lm, --load-mode <auto|none|mmap> (default: auto)\n"
        "--draft-max N               the argument has been removed\n"
        "--spec-draft-n-max N        number of tokens to draft\n")
    assert flags.first("-mmp", "-lm") == "-lm"
    assert not flags.has("--draft-max")
    assert flags.first("--draft-max", "--spec-draft-n-max") == "--spec-draft-n-max"


def test_real_llama_server_speculation_flags(new_server):
    params = ServerParams("/m.gguf", port=8123, ngram=True, no_think=True, parallel=2)
    argv = server_argv(ToolCommand(["llama-server"]), new_server, params, BackendDefaults())
    assert _value(argv, "--spec-draft-n-max") == "64"
    assert _value(argv, "--spec-draft-n-min") == "4"
    assert _value(argv, "--spec-type") == "ngram-simple"
    assert "--draft-max" not in argv
    assert _value(argv, "--load-mode") == "none"
    assert _value(argv, "-fa") == "on"
    assert _value(argv, "--host") == "127.0.0.1"
    assert _value(argv, "-ctk") == "q4_0" and _value(argv, "-ctv") == "q4_0"
    assert _value(argv, "--reasoning-budget") == "0"


def test_old_llama_server_speculation_flags():
    params = ServerParams("/m.gguf", ngram=True)
    argv = server_argv(ToolCommand(["llama-server"]), OLD_SERVER, params, BackendDefaults())
    assert _value(argv, "--draft-max") == "64"
    assert _value(argv, "--draft-min") == "4"
    assert "--no-mmap" in argv and "--load-mode" not in argv
    assert argv[argv.index("-fa") + 1] != "on"  # a bare switch on old builds


def test_probe_is_cached_on_disk_by_key(llama_bin_dir):
    path = llama_bin_dir / "llama-bench"
    key = f"cache-test:{path}"
    first = probe_flags(ToolCommand([str(path)], cache_key=key), "llama-bench")
    cache = json.loads((halo_home() / "cache" / "llama-flags.json").read_text())
    assert cache[key] == first.table
    # the cached answer is used even though this argv could not run
    again = probe_flags(ToolCommand(["/nonexistent/llama-bench"], cache_key=key), "llama-bench")
    assert again.table == first.table


def test_probe_of_a_binary_without_help_fails_clearly(tmp_path):
    from conftest import write_tool
    from halo_core.errors import ToolFailed

    tool = write_tool(tmp_path / "llama-bench", "echo 'segfault in init' >&2; exit 3\n")
    with pytest.raises(ToolFailed, match=r"llama-bench --help printed no options \(exit 3\): segfault in init"):
        probe_flags(ToolCommand([str(tool)]), "llama-bench")


def test_old_record_with_use_mmap_and_bool_flash_attn():
    line = (DATA / "llama-bench-record-b5000.jsonl").read_text().strip()
    r = parse_bench_line(line, model="qwen3moe", backend="vulkan-radv")
    assert r.test == "pp512 @ d4096"
    assert r.mmap is False
    assert r.flash_attn == "on"
    assert r.kv == "q8_0"
    assert r.samples_ts == (839.34, 832.9)
    assert r.avg_ts == pytest.approx(836.12)
    assert r.build_number == 5002


def test_new_record_with_load_mode_and_missing_fields():
    rec = {"n_prompt": 0, "n_gen": 32, "avg_ts": 12.5, "load_mode": "none", "flash_attn": -1,
           "type_k": "q4_0", "type_v": "q8_0", "repack": True}
    r = parse_bench_line(json.dumps(rec), model="m", backend="b")
    assert (r.test, r.mmap, r.flash_attn, r.kv) == ("tg32", False, "auto", "q4_0/q8_0")
    assert r.samples_ts == () and r.stddev_ts == 0.0 and r.n_depth == 0
    # an optional count out of range reads as unknown, not as a crash
    assert parse_bench_line(json.dumps({**rec, "model_size": 1e999}), model="m", backend="b").model_size is None


@pytest.mark.parametrize("line", ["garbage", "[1, 2]", '{"n_prompt": 1}', '{"n_prompt": "x", "n_gen": 0, "avg_ts": 1}',
                                  # (#21) fields of the wrong type or value fail the cell, no traceback
                                  '{"n_prompt": 1, "n_gen": 0, "avg_ts": 1, "samples_ts": 5}',
                                  '{"n_prompt": 1, "n_gen": 0, "avg_ts": 1, "samples_ts": ["x"]}',
                                  '{"n_prompt": 1, "n_gen": 0, "avg_ts": 1, "stddev_ts": [1]}',
                                  '{"n_prompt": 1e999, "n_gen": 0, "avg_ts": 1}',
                                  '{"n_prompt": 1, "n_gen": 0, "avg_ts": "nan"}',
                                  '{"n_prompt": -4, "n_gen": 0, "avg_ts": 1}'])
def test_garbage_records_are_rejected(line):
    with pytest.raises(ValueError):
        parse_bench_line(line, model="m", backend="b")


def test_bench_test_names():
    assert bench_test_name(512, 0, 0) == "pp512"
    assert bench_test_name(0, 128, 0) == "tg128"
    assert bench_test_name(2048, 32, 32768) == "pp2048+tg32 @ d32768"
