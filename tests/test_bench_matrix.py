"""Issue 3's bench matrix on the real native backend: KV sweeps, depth curves, resume after
SIGKILL, compare with noise labels, metrics from a sysroot, roofline, list/show."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from halo_core.stats import welch_p
from halo_core.machine.gpu import nvidia_gpus
from halo_core.machine.metrics import MetricsSampler, sensors
from halo_core.runs import read_jsonl
from halo_core.store import append_line

from conftest import wait_until
from sysroot import FEDORA_KERNEL, FEDORA_MEM_KB, strix_halo


def _json(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_kv_sweep(halo, smoke_model):
    out = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "32", "--tg", "8",
                     "--reps", "2", "--kv-types", "f16,q8_0,q4_0:q8_0", "--json"))
    got = [(r["type_k"], r["type_v"], r["test"]) for r in out["results"]]
    assert got == [("f16", "f16", "pp32"), ("f16", "f16", "tg8"),
                   ("q8_0", "q8_0", "pp32"), ("q8_0", "q8_0", "tg8"),
                   ("q4_0", "q8_0", "pp32"), ("q4_0", "q8_0", "tg8")]
    assert all(r["avg_ts"] > 0 for r in out["results"])
    state = json.loads(Path(out["path"], "run.json").read_text())
    assert len(state["commands"]) == 3  # one llama-bench per kv pair
    q = state["commands"][2]["argv"]
    assert q[q.index("-ctk") + 1] == "q4_0" and q[q.index("-ctv") + 1] == "q8_0"
    assert "-ctk" not in state["commands"][0]["argv"]


def test_depth_curve_is_one_process(halo, smoke_model):
    out = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "4",
                     "--reps", "2", "--depths", "0,128,256", "--ctx-prompt", "32", "--json"))
    tests = [r["test"] for r in out["results"]]
    assert tests == ["pp16", "tg4", "pp32", "tg4", "pp32 @ d128", "tg4 @ d128",
                     "pp32 @ d256", "tg4 @ d256"]
    assert [r["group"] for r in out["results"]] == ["std"] * 2 + ["ctx"] * 6
    depths = [r["n_depth"] for r in out["results"] if r["group"] == "ctx"]
    assert depths == [0, 0, 128, 128, 256, 256]
    ctx = [r for r in out["results"] if r["group"] == "ctx"]
    assert all(len(r["samples_ts"]) == 3 for r in ctx)  # long-context tests: 3 repetitions
    state = json.loads(Path(out["path"], "run.json").read_text())
    assert len(state["commands"]) == 2
    argv = state["commands"][1]["argv"]
    assert argv[argv.index("-d") + 1] == "0,128,256" and argv[argv.index("-r") + 1] == "3"

    # the two tg4 at depth 0 (2 and 3 repetitions) stay two rows everywhere
    shown = halo("bench", "show", out["path"]).stdout.splitlines()
    cells = [[c.strip() for c in line.split("│")] for line in shown]
    assert [row[3] for row in cells if len(row) > 5 and row[5] == "tg4"] == ["std", "ctx"]  # group, test
    rows = _json(halo("bench", "compare", out["path"], out["path"], "--json"))
    assert [(r["group"], r["test"]) for r in rows] == [(r["group"], r["test"]) for r in out["results"]]
    assert all(r["before_ts"] == r["after_ts"] for r in rows)


def test_bad_matrix_options(halo):
    done = halo("bench", "run", "--kv-types", "f16,q3_k")
    assert done.returncode == 2 and "unknown KV cache type 'q3_k' in --kv-types" in done.stderr
    done = halo("bench", "run", "--depths", "0,lots")
    assert done.returncode == 2 and "--depths takes comma-separated whole numbers" in done.stderr
    done = halo("bench", "compare", "nope-a", "nope-b")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: no bench run 'nope-a' (not a run directory, run name or tag; see `halo bench list`)")


def _cells(run_dir: Path) -> list[str]:
    return [row["result"]["cell"] for row in read_jsonl(run_dir / "results.jsonl") if row["status"] == "ok"]


@pytest.mark.parametrize("how", ["tag", "resume"])
def test_resume_after_sigkill(smoke_model, tmp_path, how):
    home = tmp_path / "home"
    env = dict(os.environ, HALO_HOME=str(home))
    args = [sys.executable, "-m", "halo_core", "bench", "run", "-m", str(smoke_model.path),
            "--pp", "32", "--tg", "16", "--reps", "2", "--kv-types", "f16,q8_0,q4_0",
            "--tag", "resumable"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    def into_second_process():
        found = list(home.glob("runs/bench/resumable-*"))
        return found[0] if found and len(_cells(found[0])) >= 3 else None

    run_dir = wait_until(into_second_process, 300, "no 3 cells finished")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = {row["result"]["cell"]: row["result"]["avg_ts"]
              for row in read_jsonl(run_dir / "results.jsonl") if row["status"] == "ok"}
    assert 3 <= len(before) < 6
    json.loads((run_dir / "results.json").read_text())  # never a torn file
    assert json.loads((run_dir / "run.json").read_text())["status"] == "running"
    # the kernel delivers the parent-death signal right away
    wait_until(lambda: subprocess.run(["pgrep", "-f", str(smoke_model.path)], capture_output=True).returncode == 1, 10,
               "llama-bench outlived a SIGKILLed halo")

    again = args if how == "tag" else args[:-2] + ["--resume", str(run_dir)]
    done = subprocess.run(again, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert list(home.glob("runs/bench/resumable-*")) == [run_dir]  # the same run, continued
    cells = _cells(run_dir)
    assert len(cells) == len(set(cells)) == 6  # nothing lost, nothing twice
    after = {row["result"]["cell"]: row["result"]["avg_ts"] for row in read_jsonl(run_dir / "results.jsonl")
             if row["status"] == "ok"}
    assert all(after[c] == v for c, v in before.items())  # finished cells were not re-measured
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "complete" and len(state["resumed_at"]) == 1
    assert len(json.loads((run_dir / "results.json").read_text())) == 6


def test_torn_jsonl_line_is_skipped_by_readers_and_cut_by_the_next_append(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"status": "ok", "result": {}}\n{"status": "o')
    assert read_jsonl(path) == [{"status": "ok", "result": {}}]
    assert path.read_text().endswith('{"status": "o')  # reading writes nothing (#21)
    append_line(path, '{"status": "ok", "result": {"n": 2}}')
    assert path.read_text() == '{"status": "ok", "result": {}}\n{"status": "ok", "result": {"n": 2}}\n'
    assert read_jsonl(path)[-1] == {"status": "ok", "result": {"n": 2}}  # not glued to the torn line


def test_welch_matches_scipy():
    # reference p-values computed with scipy.stats.ttest_ind(equal_var=False)
    assert welch_p([10, 11, 10.5, 10.2, 10.8], [12, 12.5, 11.8, 12.2, 12.1]) == pytest.approx(0.0001752931874002563, rel=1e-9)
    assert welch_p([10, 11, 10.5], [10.2, 10.9, 10.6]) == pytest.approx(0.8603088723160005, rel=1e-9)
    assert welch_p([100.0, 101.0], [130.0, 128.0, 131.0, 135.0]) == pytest.approx(8.813216329769117e-05, rel=1e-9)
    assert welch_p([1.0], [2.0, 3.0]) is None


def _fake_run(root: Path, name: str, cells: dict[str, list[float]]) -> Path:
    """A run directory as halo writes it, with chosen per-repetition samples."""
    run = root / name
    run.mkdir(parents=True)
    (run / "run.json").write_text(json.dumps({"spec": {"models": ["m"]}, "status": "complete"}))
    lines = []
    for test, samples in cells.items():
        avg = sum(samples) / len(samples)
        lines.append(json.dumps({"status": "ok", "result": {
            "model": "m", "backend": "native", "test": test, "n_prompt": 0, "n_gen": 1, "n_depth": 0,
            "avg_ts": avg, "stddev_ts": 0.0, "samples_ts": samples, "cell": f"m|native|std|{test}"}}))
    (run / "results.jsonl").write_text("\n".join(lines) + "\n")
    return run


def test_compare_labels(halo, tmp_path):
    before = _fake_run(tmp_path, "before", {"pp512": [100, 101, 99, 100.5, 100.2], "tg128": [50, 51, 49.5],
                                            "tg32": [20.0], "pp64": [10, 10.1]})
    after = _fake_run(tmp_path, "after", {"pp512": [110, 111, 109, 110.4, 110.1], "tg128": [50.5, 49.8, 50.9],
                                          "tg32": [25.0], "tg16": [5, 5.1]})
    rows = {d["test"]: d for d in _json(halo("bench", "compare", str(before), str(after), "--json"))}
    assert rows["pp512"]["verdict"] == "faster" and rows["pp512"]["change_pct"] == round(100 * (110.1 - 100.14) / 100.14, 2)
    assert rows["tg128"]["verdict"] == "within noise"
    assert rows["tg32"]["verdict"] == "untested"
    assert rows["pp64"]["verdict"] == "only before" and rows["tg16"]["verdict"] == "only after"
    rows = {d["test"]: d for d in _json(halo("bench", "compare", str(after), str(before), "--json"))}
    assert rows["pp512"]["verdict"] == "slower"
    table = halo("bench", "compare", str(before), str(after))
    assert "+9.9%" in table.stdout and "within noise" in table.stdout


def test_compare_two_real_runs(halo, smoke_model):
    a = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "32", "--tg", "8", "--reps", "3", "--json"))
    b = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "32", "--tg", "8", "--reps", "3", "--json"))
    rows = _json(halo("bench", "compare", a["path"], b["path"], "--json"))
    assert [r["test"] for r in rows] == ["pp32", "tg8"]
    assert all(r["verdict"] in ("faster", "slower", "within noise") and 0 <= r["p_value"] <= 1 for r in rows)


def test_sensors_from_a_sysroot(tmp_path):
    root = strix_halo(tmp_path / "root")
    assert list(sensors(root)) == ["gpu_busy_pct", "vram_used_bytes", "gtt_used_bytes", "gpu_temp_c",
                                   "gpu_power_w", "cpu_busy_pct", "mem_used_bytes", "cpu_power_w",
                                   "cpu_temp_c"]
    bare = strix_halo(tmp_path / "bare", hwmon=False, rapl=False)
    assert "gpu_power_w" not in sensors(bare) and "cpu_power_w" not in sensors(bare)
    assert "gpu_busy_pct" in sensors(bare)

    energy = root / "sys/class/powercap/intel-rapl:0/energy_uj"
    stop = threading.Event()

    def burn():  # a package drawing ~40 W: 40 J per second on the RAPL counter
        t0, e0 = time.monotonic(), 1_000_000
        while not stop.wait(0.01):
            energy.write_text(f"{int(e0 + 40e6 * (time.monotonic() - t0))}\n")

    feeder = threading.Thread(target=burn)
    feeder.start()
    try:
        with MetricsSampler(tmp_path / "m.csv", root=root, interval=0.1) as sampler:
            wait_until(lambda: len(sampler.rows) >= 6, 10, "the sampler did not take 6 samples")
    finally:
        stop.set()
        feeder.join()
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0] == ("time,gpu_busy_pct,vram_used_bytes,gtt_used_bytes,gpu_temp_c,gpu_power_w,"
                       "cpu_busy_pct,mem_used_bytes,cpu_power_w,cpu_temp_c")
    assert len(rows) >= 5
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    assert float(last["gpu_busy_pct"]) == 87 and float(last["gpu_temp_c"]) == 52.0
    assert float(last["gpu_power_w"]) == 65.0 and float(last["cpu_temp_c"]) == 61.25
    assert float(last["gtt_used_bytes"]) == 21 * 1024 * 1024
    watts = [r["cpu_power_w"] for r in sampler.rows[1:] if r["cpu_power_w"] is not None]
    assert watts and 30 < sum(watts) / len(watts) < 50


def test_first_table_on_a_fresh_machine_has_its_roofline(halo, smoke_model, tmp_path):
    """(#24) no `halo hw bandwidth` yet: the first bench run finds the figure once and keeps it."""
    env = {"HALO_HOME": str(tmp_path / "fresh")}
    argv = ("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "4", "--reps", "2", "--json")
    out = _json(halo(*argv, env=env))
    kept = json.loads((tmp_path / "fresh" / "hw.json").read_text())
    assert kept["source"] == "measured" and kept["device"] == "host" and kept["bandwidth_gbs"] > 0
    tg = next(r for r in out["results"] if r["n_gen"])
    assert tg["bandwidth_pct"] == pytest.approx(
        100 * tg["avg_ts"] * tg["model_size"] / (kept["bandwidth_gbs"] * 1e9), abs=0.05)
    _json(halo(*argv, env=env))  # the next run uses the kept figure: it measures nothing
    assert json.loads((tmp_path / "fresh" / "hw.json").read_text()) == kept


def test_bench_with_metrics_power_and_roofline(halo, smoke_model, tmp_path):
    root = strix_halo(tmp_path / "root")
    out = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "32", "--tg", "8",
                     "--reps", "2", "--root", str(root), "--json", env={"HALO_BANDWIDTH_GBS": "10"}))
    pp, tg = out["results"]
    for r in (pp, tg):
        assert r["power_w"] == 65.0
        assert r["tokens_per_joule"] == pytest.approx(r["avg_ts"] / 65.0, abs=1e-3)
    assert pp["bandwidth_pct"] is None
    assert tg["bandwidth_pct"] == pytest.approx(100 * tg["avg_ts"] * tg["model_size"] / 10e9, abs=0.05)
    system = json.loads(Path(out["path"], "system.json").read_text())  # provenance, via the sysroot
    assert system["cpu"] == "AMD RYZEN AI MAX+ 395 w/ Radeon 8060S"
    assert system["kernel"] == FEDORA_KERNEL and "rhgb quiet" in system["kernel_cmdline"]
    assert system["gpus"][0]["vram_total"] == 512 << 20 and system["gpus"][0]["device"] == "0x1586"
    assert system["mem_total_bytes"] == FEDORA_MEM_KB * 1024
    assert system["backends"]["native"]["llama_cpp_build"] == "b11434"
    csv_rows = Path(out["path"], "metrics.csv").read_text().splitlines()
    assert csv_rows[0].startswith("time,gpu_busy_pct,") and len(csv_rows) >= 2
    table = halo("bench", "show", out["path"])
    assert "t/J" in table.stdout and "% BW" in table.stdout and "65.0" in table.stdout


def test_monitor_standalone(halo, tmp_path):
    root = strix_halo(tmp_path / "root")
    out = tmp_path / "monitor.csv"
    done = halo("monitor", "--root", str(root), "--interval", "0.1", "--duration", "0.6", "-o", str(out))
    assert done.returncode == 0, done.stderr
    rows = out.read_text().splitlines()
    assert rows[0].startswith("time,gpu_busy_pct,vram_used_bytes,gtt_used_bytes,gpu_temp_c,gpu_power_w")
    assert len(rows) >= 4
    assert "samples in" in done.stderr


def test_hw_bandwidth(halo):
    measured = _json(halo("hw", "bandwidth", "--device", "host", "--seconds", "0.3", "--json"))
    assert measured["source"] == "measured" and measured["device"] == "host" and measured["gbs"] > 0.5
    assert _json(halo("hw", "bandwidth", "--show", "--json")) == measured
    shown = halo("hw", "bandwidth", "--show").stdout
    assert shown == f"{measured['gbs']:g} GB/s, measured, host (memcpy of 256 MiB in {os.cpu_count()} process(es), 0.3s, read+write)\n"
    configured = _json(halo("hw", "bandwidth", "--set", "215", "--json"))
    assert configured["gbs"] == 215 and configured["source"] == "configured"


@pytest.mark.skipif(bool(nvidia_gpus()), reason="NVML sees an NVIDIA GPU here (tests/test_gpu.py)")
def test_hw_bandwidth_without_a_gpu(halo):
    done = halo("hw", "bandwidth", "--device", "gpu")
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == ("Error: no NVIDIA GPU reports its memory clock and bus width through NVML "
                           "(needs the NVIDIA driver and nvidia-ml-py: pip install 'halo-llm[gpu]')\n")


def test_list_and_show(halo, smoke_model):
    out = _json(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "0",
                     "--reps", "1", "--tag", "listed", "--json"))
    rows = {r["name"]: r for r in _json(halo("bench", "list", "--json"))}
    name = Path(out["path"]).name
    assert rows[name]["status"] == "complete" and rows[name]["results"] == 1
    shown = _json(halo("bench", "show", "listed", "--json"))
    assert shown["path"] == out["path"] and [r["test"] for r in shown["results"]] == ["pp16"]


def test_category_and_max_size_pick_downloaded_catalog_models(hub, home, halo, smoke_model):
    hub.add("unsloth/Qwen3.5-0.8B-GGUF", "Qwen3.5-0.8B-Q8_0.gguf", smoke_model.path.read_bytes())
    env = {"HALO_HOME": str(home), "HF_ENDPOINT": hub.url}
    assert halo("models", "pull", "qwen3.5-0.8b-q8", env=env).returncode == 0
    out = _json(halo("bench", "run", "--category", "smoke", "--max-size", "1", "--pp", "16", "--tg", "0",
                     "--reps", "1", "--json", env=env))
    assert list(out["spec"]["models"]) == ["qwen3.5-0.8b-q8"]
    assert [r["model"] for r in out["results"]] == ["Qwen3.5-0.8B-Q8_0"]
    done = halo("bench", "run", "--category", "smoke", "--max-size", "0.01", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: no downloaded catalog model matches --category smoke --max-size 0.01 (see `halo models list`)")
