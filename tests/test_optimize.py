"""`halo optimize` on the smoke model with the real llama-bench: a search that finishes and
writes the profile `halo serve` then starts llama-server with, one killed and resumed, and the
bad input of the issue (#22): a budget of 0, a workload deeper than the context, a model that
does not load, a backend that disappears mid-search."""

from __future__ import annotations

import json
import re
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import wait_until
from halo_core.llama.process import free_port
from halo_core.llama.process import read_pid_files
from halo_core.llama.profile import list_profiles, load_profile, profile_dir
from halo_core.bench.run import load_bench_run
from halo_core.optimize.run import OptimizeSpec, load_optimize_run, run_optimize
from halo_core.runs import list_runs

pytestmark = pytest.mark.slow

SHAPE = dict(pp=32, tg=8, reps=2)


@pytest.fixture(scope="module", autouse=True)
def no_profiles_left():
    """The profiles these tests write would change every later `halo serve smoke`."""
    yield
    shutil.rmtree(profile_dir(), ignore_errors=True)


@pytest.fixture(scope="module")
def optimized(smoke_model):
    trials = []
    run = run_optimize(OptimizeSpec(model="smoke", budget=3, tag="opt", **SHAPE), on_trial=trials.append)
    return run, trials


def serve_smoke(halo, *args) -> tuple[list[str], str]:
    """`halo serve smoke ARGS --detach`, stopped again: (its llama-server argv, what it said)."""
    port = str(free_port())
    done = halo("serve", "smoke", "--port", port, "--detach", *args)
    halo("serve", "stop", "--port", port)
    assert done.returncode == 0, done.stderr
    command = next(line for line in done.stdout.splitlines() if line.startswith("command: "))
    return command.split()[1:], done.stderr


def test_a_search_confirms_its_winner_and_writes_the_profile(optimized):
    run, trials = optimized
    assert run.status == "complete", run.error
    assert [t.number for t in trials] == [0, 1, 2] and trials[0].settings.describe() == "llama.cpp's defaults"
    assert all(t.state == "complete" and t.value > 0 and set(t.tests) == {"pp32", "tg8"} for t in trials)
    for t in trials:  # every trial is an ordinary bench run of its settings
        [path] = t.runs
        state = json.loads(Path(path, "run.json").read_text())
        assert state["kind"] == "bench" and state["status"] == "complete"
        argv = state["commands"][0]["argv"]
        for flag, value in zip(t.settings.flags()[::2], t.settings.flags()[1::2]):
            assert argv[argv.index(flag) + 1] == value
    assert len({t.settings for t in trials}) == 3  # no setting measured twice
    result = run.result
    assert set(result["tests"]) == {"tg8"}  # the objective's tests, confirmed with 5 reps a side
    for verdict in result["tests"].values():
        assert verdict["verdict"] in ("faster", "slower", "within noise") and verdict["p_value"] is not None
    chosen = result["recommended"]
    if result["trial"]:  # recommended only when faster beyond noise and slower nowhere
        picked = next(c for c in result["candidates"] if c["trial"] == result["trial"])
        assert picked["faster"] and chosen == picked["settings"]
    else:
        assert result["why"].startswith(("no setting was faster", "no other setting"))
        assert all(v is None for v in chosen.values())
    profile = load_profile(Path(run.profile))
    assert profile.workload == "chat" and profile.backend == "native" and len(profile.model_sha256) == 64
    assert profile.run == str(run.path) and profile.measured == result["tests"]
    assert [p for p, _ in list_profiles()] == [Path(run.profile)]
    again = load_optimize_run(run.path)
    assert again.trials == trials and again.result == run.result


def test_halo_serve_uses_the_profile_and_the_command_line_wins(halo, optimized):
    run, _trials = optimized
    profile = load_profile(Path(run.profile))
    flags = profile.settings.flags()

    argv, said = serve_smoke(halo)
    assert f"settings from profile {profile.key}: {profile.settings.describe()} (measured " in said
    # what the confirmation measured, read right: a kept setting's gain, or what the defaults beat
    stood = "the defaults stood; the best other setting: tg8 " if not run.result["trial"] else None
    assert (stood in said) if stood else re.search(r": tg8 [+-][0-9.]+% against the defaults\)", said), said
    for flag, value in zip(flags[::2], flags[1::2]):
        assert argv[argv.index(flag) + 1] == value
    argv, said = serve_smoke(halo, "--no-profile", "--", "-t", "2")
    assert "settings from profile" not in said and argv[-2:] == ["-t", "2"]
    if profile.settings.threads:  # given after --: that one, not the profile's
        argv, said = serve_smoke(halo, "--", "-t", "2")
        assert argv.count("-t") == 1 and "the command line's win" in said
    # measured on another machine: not used, and said why
    data = json.loads(Path(run.profile).read_text())
    Path(run.profile).write_text(json.dumps({**data, "machine": {**data["machine"], "cpu": "another CPU"}}))
    try:
        argv, said = serve_smoke(halo)
        assert f"profile {profile.key}.json not used: measured on another machine (cpu: 'another CPU', here " in said
        assert "settings from profile" not in said
    finally:
        Path(run.profile).write_text(json.dumps(data))


def test_a_profile_says_whether_its_settings_or_the_defaults_won(optimized):
    import attrs

    from halo_core.llama.profile import Settings

    profile = load_profile(Path(optimized[0].profile))
    measured = {"tg8": {"defaults": 10.0, "setting": 12.0, "change_pct": 20.0, "verdict": "faster"}}
    kept = attrs.evolve(profile, settings=Settings(batch=256, cache_type="f16"), measured=measured)
    assert kept.summary() == "tg8 +20.0% against the defaults"
    stood = attrs.evolve(kept, settings=Settings(cache_type="f16"))
    assert stood.summary() == "the defaults stood; the best other setting: tg8 +20.0% (faster)"
    assert attrs.evolve(kept, measured={}).summary() == ""


def test_bench_serve_slots_store_np_in_the_profile_and_serve_uses_it(halo, optimized):
    """(#22 item 6) `halo bench serve MODEL --slots` on the profile's settings stores the -np it
    chose in that profile; `halo serve MODEL` then starts with it, and -np given wins."""
    run, _trials = optimized
    before = Path(run.profile).read_text()
    try:
        done = halo("bench", "serve", "smoke", "--slots", "1,2", "--slo", "ttft_p95=120s", "--capacity",
                    "concurrency", "--concurrency", "2", "--pp", "64", "--tg", "8", "--reps", "1", "--tag", "np")
        assert done.returncode == 0, done.stderr
        best = int(re.search(r"^best -np: (\d+) — ", done.stdout, re.M).group(1))
        profile = load_profile(Path(run.profile))
        assert f"-np {best} stored in profile {profile.key}: halo serve smoke uses it" in done.stderr
        served = Path(done.stdout.splitlines()[-1].removeprefix("saved: "))
        assert profile.slots.parallel == best and profile.slots.run == str(served)
        assert profile.slots.ctx == (256 * best) and profile.slots.why.startswith(f"-np {best}: ")
        after = json.loads(Path(run.profile).read_text())
        unchanged = lambda data: {k: v for k, v in data.items() if k != "slots"}  # noqa: E731
        assert unchanged(after) == unchanged(json.loads(before))  # only -np added
        listed = halo("optimize", "list")
        assert f"-np {best} (bench serve --slots)" in listed.stdout, listed.stdout

        argv, said = serve_smoke(halo)
        assert argv[argv.index("-np") + 1] == str(best) and f"; -np {best} from bench serve --slots (-np {best}: " in said
        argv, said = serve_smoke(halo, "-np", "3")
        assert argv[argv.index("-np") + 1] == "3" and "the command line's win" in said
        # --no-profile: the search runs on halo's settings and stores nothing
        done = halo("bench", "serve", "smoke", "--no-profile", "--slots", "1", "--slo", "ttft_p95=120s",
                    "--capacity", "concurrency", "--concurrency", "1", "--pp", "64", "--tg", "8", "--reps", "1")
        assert done.returncode == 0 and "stored in profile" not in done.stderr, done.stderr
        assert load_profile(Path(run.profile)).slots == profile.slots
    finally:
        Path(run.profile).write_text(before)


def test_the_report_renders_in_chromium(halo, optimized, tmp_path):
    from test_report import chromium

    run, trials = optimized
    profile = load_profile(Path(run.profile))
    command = run.server_command.split()
    assert Path(command[0]).name == "llama-server" and command[command.index("-m") + 1].endswith(".gguf")
    flags = profile.settings.flags()
    for flag, value in zip(flags[::2], flags[1::2]):  # what `halo serve smoke` runs, the profile in it
        assert command[command.index(flag) + 1] == value
    out = tmp_path / "report"
    done = halo("optimize", "report", str(run.path), "-o", str(out))
    assert done.returncode == 0, done.stderr
    page = out / "index.html"
    assert done.stdout.strip() == str(page)
    assert sorted(p.name for p in out.glob("*.png")) == ["pareto.png", "trajectory.png"]
    html = page.read_text()
    assert "<script" not in html and not re.search(r"""(src|href)=["']?(https?:|//|file:)""", html)
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr
    figures = dom.stdout.split('<figure class="chart"')[1:]
    assert len(figures) == 2 and all("<svg" in f for f in figures)
    trial_rows = dom.stdout.split("<table id=\"trials\">")[1].split("</table>")[0]
    assert trial_rows.count("<tr>") == 1 + len(trials)
    journey = dom.stdout.split("<table id=\"journey\">")[1].split("</table>")[0]
    assert journey.count("<tr>") == 1 + len(run.result["tests"]) and "tg8" in journey
    assert run.server_command.replace("&", "&amp;") in dom.stdout
    shown = halo("optimize", "show", str(run.path))
    assert f"command: {run.server_command}" in shown.stdout


def test_a_killed_search_resumes(smoke_model, tmp_path):
    """SIGKILL while trial 1 runs; --resume finishes it (its bench run continued, not started
    again) and the rest, trial numbers unbroken."""
    argv = [sys.executable, "-m", "halo_core", "optimize", "smoke", "--budget", "3", "--tag", "opt-killed",
            "--pp", "32", "--tg", "8", "--reps", "4", "--json"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        def in_trial_1():
            found = [p for p in list_runs("optimize") if p.name.startswith("opt-killed-")]
            if not found:
                return False
            state = json.loads((found[-1] / "run.json").read_text())
            started = [p for p in list_runs("bench") if p.name.startswith(f"{found[-1].name}-t1-")
                       and (p / "raw.jsonl").exists()]  # (trial 1's llama-bench has reported)
            return (state.get("current") or {}).get("number") == 1 and bool(started)
        wait_until(in_trial_1, 300, "the search did not reach trial 1")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=60)
    [path] = [p for p in list_runs("optimize") if p.name.startswith("opt-killed-")]
    assert json.loads((path / "run.json").read_text())["status"] == "running"  # killed: no one wrote an end
    [cut_bench] = [str(p) for p in list_runs("bench") if p.name.startswith(f"{path.name}-t1-")]
    resumed = run_optimize(resume=path)
    assert resumed.status == "complete", resumed.error
    assert [t.number for t in resumed.trials] == [0, 1, 2]
    assert resumed.trials[1].runs == (cut_bench,)  # trial 1's bench run was continued
    assert json.loads(Path(cut_bench, "run.json").read_text())["resumed_at"]
    assert Path(resumed.profile).exists()
    assert read_pid_files() == []  # the killed process's pid file went with the resumed bench


def test_several_backends_are_searched_then_compared_interleaved(halo, toolbox, smoke_model):
    """--backend native --backend vulkan-radv (the toolbox shim runs this machine's llama.cpp in
    its 'container'): one run and one profile per backend, then each one's recommended setting
    measured again in alternating rounds and ranked; `halo optimize compare` reads those
    measurements back instead of measuring again."""
    done = halo("optimize", "smoke", "--backend", "native", "--backend", "vulkan-radv", "--pp", "32", "--tg", "8",
                "--budget", "2", "--reps", "2", "--tag", "two", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["failed"] == []
    runs = {r["spec"]["backend"]: r for r in out["runs"]}
    assert list(runs) == ["native", "vulkan-radv"]
    for backend, r in runs.items():
        assert r["status"] == "complete" and Path(r["path"]).name.startswith(f"two-{backend}-")
        assert load_profile(Path(r["profile"])).backend == backend
    comparison = out["comparison"]
    top, other = comparison["backends"]
    assert {top["backend"], other["backend"]} == set(runs) and top["against_fastest"] == {}
    assert top["value"] >= other["value"]
    [(test, against)] = other["against_fastest"].items()
    assert test == "tg8"
    assert against["change_pct"] == pytest.approx(100 * (other["tests"]["tg8"] / top["tests"]["tg8"] - 1), abs=0.02)
    assert (comparison["fastest"] == top["backend"]) == (against["verdict"] == "slower")
    assert comparison["fastest"] in (top["backend"], None)
    # two rounds a backend, the second in the other order, each a bench run of 5 repetitions
    first = Path(out["runs"][0]["path"]).name
    rounds = sorted((json.loads((p / "run.json").read_text())["started_at"], p)
                    for p in list_runs("bench") if p.name.startswith(f"{first}-vs-"))
    assert [p.name.removeprefix(f"{first}-vs-").rsplit("-", 1)[0] for _, p in rounds] == [
        "native-r0", "vulkan-radv-r0", "vulkan-radv-r1", "native-r1"]
    for _, path in rounds:
        assert [len(r.samples_ts) for r in load_bench_run(path).results] == [5, 5]  # pp32, tg8
    calls = [c for c in map(json.loads, toolbox.read_text().splitlines()) if "llama-bench" in " ".join(c["argv"])]
    assert calls and {c["container"] for c in calls} == {"llama-vulkan-radv"}
    again = halo("optimize", "compare", runs["native"]["path"], runs["vulkan-radv"]["path"], "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == comparison  # read back, not measured again
    shown = halo("optimize", "compare", runs["native"]["path"], runs["vulkan-radv"]["path"])
    assert comparison["why"] in " ".join(shown.stdout.split())
    done = halo("optimize", "compare", runs["native"]["path"], runs["native"]["path"])
    assert (done.returncode, done.stderr.strip().splitlines()[-1]) == (
        1, "Error: two runs of one backend (native): compare one run per backend")
    done = halo("optimize", "smoke", "--backend", "native", "--backend", "nosuch", "--budget", "2")
    assert done.returncode != 0 and "nosuch" in done.stderr.strip().splitlines()[-1]
    assert not [p for p in list_runs("optimize") if p.name.startswith("optimize-native-")]  # none started


def test_the_gate_measures_the_lossy_candidate_that_could_be_chosen():
    """(seen in a fresh-clone run) the best lossy trial slower beyond noise on re-measurement, the
    second lossy one faster: the gate is the second's, and the first, ungated, is not eligible
    (it raised KeyError 'gate')."""
    from halo_core.optimize.run import eligible, gate_target

    first = {"trial": 1, "lossy": True, "faster": False}
    second = {"trial": 3, "lossy": True, "faster": True}
    lossless = {"trial": 2, "lossy": False, "faster": True}
    candidates = [first, second, lossless]
    assert gate_target(candidates) is second
    assert not eligible(second) and not eligible(first) and eligible(lossless)
    second["gate"] = {"passed": True}
    assert [c["trial"] for c in candidates if eligible(c)] == [3, 2]
    second["gate"] = {"passed": False}
    assert [c["trial"] for c in candidates if eligible(c)] == [2]
    assert gate_target([first, lossless]) is first  # none faster: the best, to say what it would buy
    assert gate_target([lossless]) is None


def test_a_lossy_kv_type_is_gated_by_the_paired_eval(halo, smoke_model):
    """--allow-lossy searches K/V cache types; the best quantized one is run against the same
    settings with an f16 cache through a sweep (ifeval on the same samples, the paired test),
    and is recommended only when it is faster and its answers are not worse."""
    done = halo("optimize", "smoke", "--allow-lossy", "--eval", "ifeval", "--limit", "6", "--max-tokens", "16",
                "--budget", "4", "--seed", "1", "--tag", "opt-lossy", "--pp", "32", "--tg", "8", "--reps", "2",
                "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "complete", run["error"]
    kinds = [t["settings"]["cache_type"] for t in run["trials"]]
    assert kinds[0] is None and set(kinds[1:]) & {"q8_0", "q4_0"}, kinds  # the search reached a quantized cache
    result = run["result"]
    lossy = [c for c in result["candidates"] if c["lossy"]]
    assert lossy and all(c["settings"]["flash_attn"] is not False for c in lossy)  # (llama.cpp needs -fa with it)
    gate = result["gate"]
    assert gate == lossy[0]["gate"] and set(gate["suites"]) == {"ifeval"}
    verdict = gate["suites"]["ifeval"]
    assert verdict["n"] == 6 and verdict["verdict"] in ("worse", "better", "no difference")
    assert verdict["low"] <= verdict["delta"] <= verdict["high"] and verdict["p_value"] is not None
    assert gate["passed"] == (verdict["verdict"] != "worse")
    # the gate is an ordinary sweep: f16 then the lossy type, same flags otherwise
    sweep = json.loads(Path(gate["sweep"], "run.json").read_text())
    assert sweep["status"] == "complete"
    argvs = [s["server_argv"] for s in sweep["settings"]]
    kv = lossy[0]["settings"]["cache_type"]
    assert [a[a.index("-ctk") + 1] for a in argvs] == ["f16", kv]
    assert [a[a.index("-ctv") + 1] for a in argvs] == ["f16", kv]
    chosen = result["recommended"]
    if chosen["cache_type"] not in (None, "f16"):  # kept: faster beyond noise and not worse
        assert lossy[0]["faster"] and gate["passed"] and "its answers: no regression against f16" in result["why"]
    elif lossy[0]["faster"]:  # faster, but its answers held it back
        assert not gate["passed"] and "would have bought" in result["why"]
    profile = load_profile(Path(run["profile"]))  # served with the cache type it was measured with
    assert profile.settings.cache_type == (chosen["cache_type"] or "f16")
    shown = halo("optimize", "show", run["path"])
    assert shown.returncode == 0 and "answers: the lossy setting against f16" in shown.stdout
    assert "ifeval" in shown.stdout


def test_bad_input_is_one_line(halo, tmp_path, smoke_model):
    done = halo("optimize", "smoke", "--budget", "0")
    assert done.returncode == 2 and "Invalid value for '--budget'" in done.stderr
    done = halo("optimize", "smoke", "--allow-lossy")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "Error: --allow-lossy needs --eval SUITE: a setting that changes answers is kept only when the "
        "suite's paired test finds no regression")
    done = halo("optimize", "smoke", "--allow-lossy", "--eval", "nosuch")
    assert done.returncode == 1 and done.stderr.strip().splitlines()[-1].startswith(
        "Error: unknown suite or preset 'nosuch'")
    done = halo("optimize", "smoke", "--depths", "100000")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "Error: the workload needs 102176 tokens of context (depth 100000 + prompt + 128) and ")
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(Path(smoke_model.path).read_bytes()[: 4 << 20])  # a header, and no weights
    done = halo("optimize", str(broken), "--budget", "2", "--pp", "32", "--tg", "8", "--reps", "1")
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: the defaults did not run: llama-bench ")
    [path] = [p for p in list_runs("optimize") if json.loads((p / "run.json").read_text())["spec"]["model"]
              == str(broken)]
    state = json.loads((path / "run.json").read_text())
    assert state["status"] == "failed" and (path / "trials.jsonl").read_text().count("\n") == 1


def test_a_backend_that_disappears_mid_search_fails_trials_not_the_run(smoke_model, llama_bin_dir, tmp_path):
    """The llama.cpp directory gone after the defaults' trial: each later trial is recorded as
    failed with the reason, and after three in a row the run ends failed, its trials kept."""
    copy = tmp_path / "llama"
    shutil.copytree(llama_bin_dir.parent, copy, symlinks=True)

    def vanish(trial):
        if trial.number == 0:
            shutil.rmtree(copy)

    with pytest.raises(Exception) as caught:
        run_optimize(OptimizeSpec(model="smoke", budget=6, tag="opt-vanish",
                                  backend_options={"llama_cpp_dir": str(copy / "bin")}, **SHAPE),
                     on_trial=vanish)
    assert str(caught.value).startswith("3 trials in a row failed, the last: ")
    [path] = [p for p in list_runs("optimize") if p.name.startswith("opt-vanish-")]
    run = load_optimize_run(path)
    assert run.status == "failed" and [t.state for t in run.trials] == ["complete", "failed", "failed", "failed"]
    assert all(t.error for t in run.trials[1:])
