"""The example third-party plugin, pip-installed as its own package, runs a real bench."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory):
    """pip install examples/halo-taskset (without dependencies: halo is already here)."""
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--target", str(target),
                    str(ROOT / "examples" / "halo-taskset")], check=True)
    assert list(target.glob("halo_taskset-*.dist-info"))
    return target


def test_halo_plugins_lists_it(halo, plugin_site):
    done = halo("plugins", "--json", env={"PYTHONPATH": str(plugin_site)})
    assert done.returncode == 0, done.stderr
    infos = {i["name"]: i for i in json.loads(done.stdout)["plugins"]}
    assert infos["taskset"]["distribution"] == "halo-taskset"
    assert infos["taskset"]["source"] == "entry-point"
    assert infos["taskset"]["registers"] == {"backends": ["taskset"]}
    assert infos["taskset"]["error"] is None


def test_bench_runs_through_it(halo, plugin_site, smoke_model, llama_bin_dir):
    # --llama-cpp-dir reaches the native backend the plugin wraps (taskset forwards its options)
    done = halo("bench", "run", "--backend", "taskset", "-m", str(smoke_model.path),
                "--pp", "32", "--tg", "8", "--reps", "1", "--json",
                "--llama-cpp-dir", str(llama_bin_dir),
                env={"PYTHONPATH": str(plugin_site), "HALO_TASKSET_CPUS": "0"})
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["backend"] for r in out["results"]] == ["taskset", "taskset"]
    assert all(r["avg_ts"] > 0 for r in out["results"])
    state = json.loads(open(f"{out['path']}/run.json").read())
    argv = state["commands"][0]["argv"]
    assert argv[1:3] == ["-c", "0"] and argv[0].endswith("taskset")
    assert argv[3] == str(llama_bin_dir / "llama-bench")
    system = json.loads(open(f"{out['path']}/system.json").read())
    assert system["backends"]["taskset"]["taskset_cpus"] == "0"


def test_library_script(smoke_model):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "bench_smoke.py"),
                           "--model", str(smoke_model.path)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("SmolLM2-135M-Instruct.Q4_1\tnative\tpp64\t")
    assert lines[1].split("\t")[2] == "tg16"
    assert lines[-1].startswith("run directory: ")


def test_the_documented_backend_example_benches_in_under_40_lines(halo, tmp_path, smoke_model, llama_bin_dir):
    """The held-out check: the Backend docstring's example plugin, written only against the
    documented plugin API, installed as a third party's distribution (dist-info with a `halo`
    entry point), registers a backend and runs a real bench with no change to halo."""
    import inspect
    import re
    import textwrap

    from halo_core.interfaces import Backend

    example = re.search(r"::\n\n(.*?)(?:\n\n(?=\S)|\Z)", inspect.getdoc(Backend), re.S).group(1)
    source = textwrap.dedent(example).replace("/opt/llama", str(llama_bin_dir))
    assert len(source.splitlines()) <= 40
    (tmp_path / "opt_llama_plugin.py").write_text(source)
    dist = tmp_path / "halo_opt_llama-0.1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: halo-opt-llama\nVersion: 0.1.0\n")
    (dist / "entry_points.txt").write_text("[halo]\nopt = opt_llama_plugin\n")
    env = {"PYTHONPATH": str(tmp_path)}
    done = halo("bench", "run", "--backend", "opt", "-m", str(smoke_model.path), "--pp", "32",
                "--tg", "8", "--reps", "1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["backend"] for r in out["results"]] == ["opt", "opt"]
    assert all(r["avg_ts"] > 0 for r in out["results"])
    infos = {i["name"]: i for i in json.loads(halo("plugins", "--json", env=env).stdout)["plugins"]}
    assert infos["opt"]["distribution"] == "halo-opt-llama" and infos["opt"]["error"] is None
