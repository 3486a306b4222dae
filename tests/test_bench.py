"""`halo bench run` end to end: the real llama-bench on the real SmolLM2 smoke model."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import halo_core
from halo_core import BenchSpec
from halo_core.store import to_json

from conftest import ctrl_c_works, wait_until, write_tool

SMALL = ["--pp", "64", "--tg", "16", "--reps", "2"]


def _run_dir_from(message: str) -> Path:
    match = re.search(r"kept in (\S+)$", message.strip())
    assert match, message
    return Path(match.group(1))


def _last_line(text: str) -> str:
    return text.strip().splitlines()[-1]


def test_cli_prints_a_real_table_and_saves_the_run(halo, smoke_model):
    done = halo("bench", "run", "--model", "smoke", "--backend", "native", *SMALL, "--tag", "cli")
    assert done.returncode == 0, done.stderr
    run_dir = Path(re.search(r"^saved: (.+)$", done.stdout, re.M).group(1))
    assert run_dir.name.startswith("cli-")

    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "complete" and state["error"] == ""
    argv = state["commands"][0]["argv"]
    assert argv[argv.index("-m") + 1] == str(smoke_model.path)
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["test"] for r in results] == ["pp64", "tg16"]
    raw = (run_dir / "raw.jsonl").read_text().splitlines()
    assert len(raw) == 2 and json.loads(raw[1])["n_gen"] == 16
    system = json.loads((run_dir / "system.json").read_text())
    assert system["backends"]["native"]["llama_cpp_build"] == "b11434"
    assert system["cpu_count"] >= 1

    for r in results:
        assert r["avg_ts"] > 0 and len(r["samples_ts"]) == 2
        assert r["model"] == "SmolLM2-135M-Instruct.Q4_1" and r["backend"] == "native"
        assert r["mmap"] is False and r["flash_attn"] == "on"
        row = next(line for line in done.stdout.splitlines() if f" {r['test']} " in line)
        assert f"{r['avg_ts']:.2f} ± {r['stddev_ts']:.2f}" in row
        assert "SmolLM2-135M-Instruct.Q4_1" in row and "native" in row and "f16" in row


def test_library_call_returns_the_records(smoke_model):
    run = halo_core.run_bench(BenchSpec(models=[str(smoke_model.path)], pp=32, tg=8, reps=1, tag="lib"))
    assert run.status == "complete"
    assert [r.test for r in run.results] == ["pp32", "tg8"]
    assert all(r.avg_ts > 0 and r.n_gpu_layers == 99 for r in run.results)
    on_disk = json.loads((run.path / "results.json").read_text())
    assert on_disk == json.loads(to_json(run.results))


def test_json_output(halo, smoke_model):
    done = halo("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "0",
                "--reps", "1", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "complete"
    assert [r["test"] for r in out["results"]] == ["pp16"]
    assert Path(out["path"], "results.json").is_file()


def test_unknown_backend(halo):
    done = halo("bench", "run", "--backend", "nope")
    assert done.returncode == 1
    assert _last_line(done.stderr).startswith("Error: unknown backend 'nope' (known: ")
    assert "native" in done.stderr and "Traceback" not in done.stderr


def test_unknown_model(halo):
    done = halo("bench", "run", "--model", "no-such-model")
    assert done.returncode == 1
    assert _last_line(done.stderr) == ("Error: unknown model 'no-such-model': not a file, an alias "
                                       "(22 known: halo models list) or SOURCE:REF "
                                       "(sources: file, hf, pypi, synth)")


def test_llama_cpp_missing(halo, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for flags in (["--llama-cpp-dir", str(empty)], ["--backend-opt", f"llama_cpp_dir={empty}"]):
        done = halo("bench", "run", *flags)
        assert done.returncode == 1
        assert _last_line(done.stderr).startswith(
            f"Error: backend 'native' is unavailable: llama-bench not found in llama_cpp_dir={empty} (looked in ")
        assert "Traceback" not in done.stderr
    done = halo("bench", "run", env={"HALO_LLAMA_CPP_DIR": str(empty)})
    assert f"llama-bench not found in HALO_LLAMA_CPP_DIR={empty} (looked in " in done.stderr


def test_backend_options_are_checked_and_leave_the_environment_alone(halo, tmp_path):
    done = halo("bench", "run", "--backend-opt", "llama_cpp_dir")
    assert (done.returncode, _last_line(done.stderr)) == (
        2, "Error: --backend-opt takes KEY=VALUE, not 'llama_cpp_dir'")
    done = halo("serve", "smoke", "--backend-opt", "threads=4")
    assert (done.returncode, done.stderr) == (
        1, "Error: no selected backend takes the option 'threads' (native: llama_cpp_dir)\n")

    from click.testing import CliRunner
    from halo_core.cli import cli

    result = CliRunner().invoke(cli, ["serve", "smoke", "--llama-cpp-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert result.output.endswith(f"llama-bench not found in llama_cpp_dir={tmp_path} (looked in "
                                  f"{tmp_path}, {tmp_path}/bin, {tmp_path}/build/bin)\n")
    assert "HALO_LLAMA_CPP_DIR" not in os.environ


def _wrapped(tmp_path: Path, llama_bin_dir: Path, body: str) -> Path:
    """A llama.cpp dir whose llama-bench runs the real one, then misbehaves as `body` says."""
    folder = tmp_path / "wrapped"
    folder.mkdir()
    (folder / "llama-server").symlink_to(llama_bin_dir / "llama-server")
    write_tool(folder / "llama-bench",
               f'real={llama_bin_dir / "llama-bench"}\n'
               'case " $* " in *" --help "*) exec "$real" "$@";; esac\n' + body)
    return folder


CRASH = ('echo "ggml: fatal error in the tg kernel" >&2\n'
         '"$real" "$@" | head -n 1\nkill -SEGV $$\n')
GARBAGE = ('"$real" "$@" | { IFS= read -r l; printf "%s\\n" "$l"; '
           'echo "<html>502 Bad Gateway</html>"; cat >/dev/null; }\n')


@pytest.mark.parametrize("body, error", [
    (CRASH, "1 of 2 cells failed: llama-bench was killed by SIGSEGV (SmolLM2-135M-Instruct.Q4_1 on native): "
            "ggml: fatal error in the tg kernel; 1 result(s) kept in "),
    (GARBAGE, "1 of 2 cells failed: llama-bench printed output halo cannot parse "
              "(SmolLM2-135M-Instruct.Q4_1 on native): not JSON: '<html>502 Bad Gateway</html>'; "
              "1 result(s) kept in "),
], ids=["crash", "garbage"])
def test_failure_half_way_keeps_what_finished(halo, smoke_model, tmp_path, llama_bin_dir, body, error):
    folder = _wrapped(tmp_path, llama_bin_dir, body)
    done = halo("bench", "run", "-m", str(smoke_model.path), *SMALL, "--tag", f"broken-{len(body)}",
                "--llama-cpp-dir", str(folder))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    last = _last_line(done.stderr)
    assert last.startswith("Error: " + error), last
    run_dir = _run_dir_from(last)
    state = json.loads((run_dir / "run.json").read_text())
    assert state["status"] == "partial"
    assert state["error"] == last.removeprefix("Error: ").rsplit("; ", 1)[0]
    results = json.loads((run_dir / "results.json").read_text())
    assert [r["test"] for r in results] == ["pp64"] and results[0]["avg_ts"] > 0
    assert len((run_dir / "raw.jsonl").read_text().splitlines()) == 1


def test_real_llama_bench_failing_on_a_truncated_model(halo, smoke_model, tmp_path):
    broken = tmp_path / "truncated.gguf"
    with open(smoke_model.path, "rb") as src:
        broken.write_bytes(src.read(1 << 20))
    done = halo("bench", "run", "-m", str(broken), *SMALL)
    assert done.returncode == 1
    last = _last_line(done.stderr)
    assert re.match(r"Error: 2 of 2 cells failed: llama-bench exited with code \d+ \(truncated on native\): "
                    r".+; 0 result\(s\) kept in \S+$", last), last
    run_dir = _run_dir_from(last)
    assert json.loads((run_dir / "results.json").read_text()) == []
    assert json.loads((run_dir / "run.json").read_text())["status"] == "failed"
    failed = [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]
    assert [f["failure"]["test"] for f in failed] == ["pp64", "tg16"]
    assert all(f["status"] == "failed" and f["failure"]["log_tail"] for f in failed)
    assert (run_dir / "bench.log").stat().st_size > 0


def test_a_file_that_is_not_gguf(halo, tmp_path):
    bogus = tmp_path / "notes.gguf"
    bogus.write_text("hello")
    done = halo("bench", "run", "-m", str(bogus))
    assert done.returncode == 1
    assert _last_line(done.stderr) == f"Error: {bogus} is not a GGUF file (no GGUF magic bytes)"


def test_ctrl_c_leaves_an_interrupted_run_and_no_orphan(smoke_model, tmp_path):
    home = tmp_path / "home"
    env = dict(os.environ, HALO_HOME=str(home))
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "bench", "run", "-m",
                             str(smoke_model.path), "--pp", "64", "--tg", "256", "--reps", "3",
                             "--tag", "sigint"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=ctrl_c_works)
    def first_record():
        found = list(home.glob("runs/bench/sigint-*/results.json"))
        return found[0] if found and json.loads(found[0].read_text()) else None

    results = wait_until(first_record, 120, "the first record did not arrive")
    state = json.loads((results.parent / "run.json").read_text())
    assert state["status"] == "running"
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0
    state = json.loads((results.parent / "run.json").read_text())
    assert state["status"] == "interrupted"
    assert [r["test"] for r in json.loads(results.read_text())] == ["pp64"]
    assert "Traceback" not in err
    ps = subprocess.run(["pgrep", "-f", str(smoke_model.path)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "llama-bench outlived halo"
