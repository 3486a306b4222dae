"""`halo tune --measure`: the real llama-bench on the smoke model before and after each step,
the deltas in the journal, a step that is worse beyond noise rolled back, and the steps that
need a reboot measured after it (`--resume`)."""

from __future__ import annotations

import types

import json
import random
import sys
from pathlib import Path

import attrs
import pytest

from halo_core import (
    Availability, Change, Check, EvalResult, EvalSample, EvalSuite, Tuner, hookimpl,
)
from halo_core.tune import tuning as tune
from halo_core.chat import ChatRequest
from halo_core.plugins import PluginHost
from halo_core.errors import TuneError
from halo_core.tune.journal import Journal
from halo_core.records import BenchResult, BenchRun, BenchSpec, MeasureSpec
from halo_core.stats import compare_speed, paired_test, speed_rule
from halo_core.bench.compare import compare_runs
from halo_core.evals.compare import Comparison

import sysroot
from conftest import with_tuner
from sysroot import snapshot

SMALL = MeasureSpec(pp=32, tg=8, reps=2, threads=1)


def result(test, *samples):
    mean = sum(samples) / len(samples)
    return {"test": test, "avg_ts": mean, "stddev_ts": 0.0, "samples_ts": list(samples)}


def test_compare_rule():
    before = [result("pp32", 100, 104, 98), result("tg8", 30, 31, 29)]
    same = tune.compare("x", before, [result("pp32", 99, 103, 101), result("tg8", 30, 30.5, 29.5)])
    assert not same.worse and same.detail.startswith("within noise or better: pp32 +0.3%")
    slower = tune.compare("x", before, [result("pp32", 80, 82, 81), result("tg8", 30, 31, 29)])
    assert slower.worse and slower.detail == "worse beyond noise: pp32 100.67 -> 81.00 t/s (-19.5%)"
    assert slower.deltas["tg8"] == pytest.approx(0.0)
    # one fast sample after the change keeps it: Welch p = 0.14, within noise
    assert not tune.compare("x", before, [result("pp32", 80, 82, 99), result("tg8", 30, 31, 29)]).worse
    # a drop beyond noise (p = 0.014) but smaller than min_effect is not undone
    small = tune.compare("x", [result("pp32", 100, 100.5)], [result("pp32", 97, 97.5)])
    assert not small.worse and small.speed == {"pp32": "slower"}
    assert small.detail == "under --min-effect 5%: pp32 100.25 -> 97.25 t/s (-3.0%) slower beyond noise"
    # a drop within the spread is noise (p = 0.40)
    assert not tune.compare("x", [result("pp32", 60, 100)], [result("pp32", 50, 55)]).worse
    # faster is never worse; a test only the after-run has is not judged
    assert not tune.compare("x", before, [result("pp32", 200, 210), result("tg8", 30, 31, 29),
                                          result("tg16", 1, 1)]).worse
    # a broken measurement is not "no change": a baseline test the after-run lacks (its cell
    # failed), or a figure that is not finite, makes the step worse, and it is rolled back
    missing = tune.compare("x", before, [result("pp32", 200, 210), result("tg16", 1, 1)])
    assert missing.worse and missing.detail == "measurement failed: tg8 not measured after the step"
    nan = {"test": "tg8", "avg_ts": float("nan"), "stddev_ts": 0.0, "samples_ts": []}
    assert tune.compare("x", before, [result("pp32", 100, 104, 98), nan]).detail == \
        "measurement failed: tg8 30.0 -> nan t/s is not a measurement"
    assert tune.compare("x", before, []).worse  # the after-run measured nothing
    assert tune.gate("x", before, [result("pp32", 200, 210, 205)], []).detail == \
        "measurement failed: tg8 not measured after the step"  # though pp32 is faster


def bench_run(samples: dict[str, list[float]]) -> BenchRun:
    return BenchRun(path=Path("run"), spec=BenchSpec(models=["m"]), status="complete", results=[
        BenchResult("m", "native", test, 0, 1, 0, sum(s) / len(s), 0.0, s, cell=f"m|native|std|{test}")
        for test, s in samples.items()])


def test_bench_compare_and_tune_judge_each_test_alike():
    tg8 = [30.0, 31.0, 29.0, 30.5, 29.5]
    shuffled = random.Random(0).sample(tg8, len(tg8))
    before = bench_run({"pp32": [100, 104, 98, 101, 99.5], "tg8": tg8, "pp64": [50, 50.2, 49.8, 50.1, 49.9],
                        "tg16": [20, 22, 18, 21, 19]})
    after = bench_run({"pp32": [80, 82, 81, 80.5, 81.5], "tg8": shuffled, "pp64": [48.5, 48.7, 48.3, 48.6, 48.4],
                       "tg16": [30, 31, 29, 30.5, 29.5]})
    cells = {d.test: d.verdict for d in compare_runs(before, after)}
    assert cells == {"pp32": "slower", "tg8": "within noise", "pp64": "slower", "tg16": "faster"}
    assert compare_speed(tg8, shuffled).change_pct == 0
    for judged in (tune.compare("x", tune.bench_results(before), tune.bench_results(after)),
                   tune.gate("x", tune.bench_results(before), tune.bench_results(after), same_answers())):
        assert judged.speed == cells and judged.rule == speed_rule() == "welch p < 0.05 and change > 1%"
        # pp32 is 19% slower: the step is undone; pp64's 3% is slower too, but under --min-effect
        assert judged.worse and "pp64" not in judged.detail
    # --min-effect 0: the step is undone exactly when bench compare calls some test slower
    before_rest, after_rest = ([r for r in tune.bench_results(run) if r["test"] != "pp32"]
                               for run in (before, after))
    assert tune.compare("x", before_rest, after_rest).worse is False
    assert tune.compare("x", before_rest, after_rest, min_effect=0).worse is True
    # with --eval, a speed-up under --min-effect does not keep a step
    faster = tune.gate("x", [r for r in tune.bench_results(after) if r["test"] == "pp64"],
                       [r for r in tune.bench_results(before) if r["test"] == "pp64"], same_answers())
    assert faster.worse and faster.speed == {"pp64": "faster"} and faster.detail == (
        "not faster by more than --min-effect 5%: pp64 48.50 -> 50.00 t/s (+3.1%) faster beyond noise")


def test_measured_apply_then_resume_after_the_reboot(fedora_root, smoke_model, llama_bin_dir):
    plan = tune.plan_tuning(fedora_root)
    info = tune.apply_tuning(plan, measure=SMALL)
    journal = Journal(info.path)
    measures = journal.events("measure")
    assert [(m["step"], m["phase"]) for m in measures] == [
        (None, "baseline"), ("tuned", "after"), ("power", "after"), (None, "final")]
    for m in measures:
        assert [r["test"] for r in m["results"]] == ["pp32", "tg8"]
        assert all(len(r["samples_ts"]) == 2 for r in m["results"])
        assert json.loads(open(f"{m['run']}/run.json").read())["status"] == "complete"
    verdicts = {v.step: v for v in info.verdicts}
    assert set(verdicts) == {"tuned", "power"}
    undone = journal.undone()
    for step, verdict in verdicts.items():  # noise decides which way; the journal must agree
        assert set(verdict.deltas) == {"pp32", "tg8"}
        assert all(i in undone for i in journal.step_changes(step)) == verdict.worse
    assert info.pending_measure == ("kernel",)

    with pytest.raises(TuneError) as err:
        tune.resume_tuning(fedora_root)
    assert str(err.value) == (f"the kernel changes of journal {info.id} take effect after a reboot: reboot, "
                              f"then run halo tune --measure --resume")
    sysroot.reboot(fedora_root)
    resumed = tune.resume_tuning(fedora_root)
    kernel = [v for v in resumed.verdicts if v.step == "kernel"]
    assert len(kernel) == 1 and resumed.pending_measure == ()
    assert [m["phase"] for m in Journal(info.path).events("measure")][-1] == "after-reboot"
    assert all(i in Journal(info.path).undone() for i in journal.step_changes("kernel")) == kernel[0].worse
    with pytest.raises(TuneError) as err:
        tune.resume_tuning(fedora_root)
    assert str(err.value) == f"nothing to resume: no journal of {fedora_root} waits for a measurement after a reboot"


def test_cli_measure(halo, fedora_root, smoke_model, llama_bin_dir):
    done = halo("tune", "--root", str(fedora_root), "--only", "tuned", "--measure",
                "--pp", "32", "--tg", "8", "--reps", "2", "--threads", "1")
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("measured tuned: "))
    # noise decides which: the three verdicts compare() gives
    assert line.startswith(("measured tuned: kept: within noise or better: pp32 ",
                            "measured tuned: kept: under --min-effect 5%: ",
                            "measured tuned: rolled back: worse beyond noise: "))


class Slowdown(Tuner):
    """A change that makes llama-bench 100x slower: the wrapper below reads its flag file."""

    name = "slowdown"

    def verify(self, root):
        return [Check("slowdown", "PASS", "")]

    def plan(self, root):
        flag = root / "etc/halo-test/slow"
        return [] if flag.exists() else [Change(self.name, "file", "/etc/halo-test/slow", "slow down", after="1\n")]


def wrapped_llama(folder, llama_bin_dir, speed: dict, no_answers=None):
    """The real llama-bench, its t/s multiplied by `speed[flag]` for each flag file that exists
    (a 100x change stays a change whatever the load of a shared test machine does between two
    runs), and the real llama-server, which answers only "No." while `no_answers` exists."""
    folder.mkdir()
    bench = folder / "llama-bench"
    bench.write_text(f"""#!{sys.executable}
import json, os, subprocess, sys
factor = 1.0
for flag, times in {[(str(f), t) for f, t in speed.items()]!r}:
    if os.path.exists(flag):
        factor *= times
done = subprocess.run([{str(llama_bin_dir / 'llama-bench')!r}, *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
for line in done.stdout.splitlines(True):
    if factor != 1.0 and line.startswith("{{"):
        record = json.loads(line)
        record["avg_ts"] *= factor
        record["stddev_ts"] *= factor
        record["samples_ts"] = [s * factor for s in record.get("samples_ts", [])]
        line = json.dumps(record) + "\\n"
    sys.stdout.write(line)
sys.exit(done.returncode)
""")
    server = folder / "llama-server"
    server.write_text(f"""#!{sys.executable}
import os, sys
real = {str(llama_bin_dir / 'llama-server')!r}
extra = ["--grammar", 'root ::= "No."'] if os.path.exists({str(no_answers)!r}) else []
os.execv(real, [real, *sys.argv[1:], *extra])
""")
    for script in (bench, server):
        script.chmod(0o755)
    return folder


def test_a_step_that_makes_things_worse_is_rolled_back(fedora_root, smoke_model, llama_bin_dir, tmp_path,
                                                       monkeypatch):
    wrapper = wrapped_llama(tmp_path / "llama", llama_bin_dir, {fedora_root / "etc/halo-test/slow": 0.01})
    monkeypatch.setenv("HALO_LLAMA_CPP_DIR", str(wrapper))

    host = with_tuner(Slowdown())
    before = snapshot(fedora_root)
    # (4 repetitions: with 2, a 100x slower pp32 was once "within noise" in CI-like runs, beside a
    # busy second core: Welch's test on 2 samples a side has one degree of freedom)
    info = tune.apply_tuning(tune.plan_tuning(fedora_root, ["slowdown"], host=host),
                             measure=attrs.evolve(SMALL, reps=4), host=host)
    (verdict,) = info.verdicts
    assert verdict.worse and verdict.step == "slowdown"
    assert verdict.detail.startswith("worse beyond noise: pp32 ")
    assert verdict.deltas["pp32"] < -0.5 and verdict.deltas["tg8"] < -0.5
    assert info.status == "rolled-back" and info.undone == 1
    assert snapshot(fedora_root) == before


# -- the quality gate: halo tune --measure --eval ----------------------------------------------

def same_answers(n: int = 6) -> list[Comparison]:
    return [Comparison("ifeval", "before", paired_test([1.0] * n, [1.0] * n), 0)]


def test_gate_rule():
    before = [result("pp32", 100, 104, 98), result("tg8", 30, 31, 29)]
    faster = [result("pp32", 200, 204, 198), result("tg8", 30, 31, 29.5)]
    kept = tune.gate("x", before, faster, same_answers())
    assert not kept.worse
    assert kept.detail == ("faster beyond noise: pp32 100.67 -> 200.67 t/s (+99.3%); answers ifeval "
                           "no difference (Δ +0.000, mcnemar p=1.0000, 6 pairs)")
    # not faster beyond noise: rolled back, even with the same answers
    same = tune.gate("x", before, [result("pp32", 99, 103, 101), result("tg8", 30, 30.5, 29.5)], same_answers())
    assert same.worse and same.detail == "not faster beyond noise: pp32 +0.3%, tg8 +0.0%"
    # faster, but six answers of six now fail: McNemar p = 2 * 0.5**6
    broken = [Comparison("ifeval", "before", paired_test([1.0] * 6, [0.0] * 6), 0)]
    worse = tune.gate("x", before, faster, broken)
    assert worse.worse and worse.detail == (
        "answers worse: ifeval worse (Δ -1.000, mcnemar p=0.0312, 6 pairs)")
    # five such pairs cannot tell (p = 0.0625): the gate keeps what it cannot show is worse
    assert not tune.gate("x", before, faster, [Comparison("ifeval", "before", paired_test([1.0] * 5, [0.0] * 5), 0)]).worse
    slower = tune.gate("x", before, [result("pp32", 50, 51, 49), result("tg8", 30, 31, 29)], broken)
    assert slower.detail == ("slower beyond noise: pp32 100.67 -> 50.00 t/s (-50.3%); answers worse: ifeval "
                             "worse (Δ -1.000, mcnemar p=0.0312, 6 pairs)")


class Sentences(EvalSuite):
    """Six requests for a sentence; a reply of three words or more passes."""

    name = "sentences"
    TOPICS = ("cats", "the sea", "bread", "rain", "music", "trees")

    def availability(self):
        return Availability(True)

    def run(self, endpoint, *, limit=None, workdir=None, context=None):
        replies = context.chat([ChatRequest(str(i), [{"role": "user", "content": f"Write one sentence about {t}."}],
                                            max_tokens=context.max_tokens or 16)
                                for i, t in enumerate(self.TOPICS[:limit], 1)])
        samples = [EvalSample(k, float(len(r.content.split()) >= 3), len(r.content.split()) >= 3, error=r.error)
                   for k, r in replies.items()]
        return EvalResult(self.name, {"accuracy": sum(s.score for s in samples) / len(samples)}, samples)


class Flag(Tuner):
    """A step that writes one flag file the llama.cpp wrappers read."""

    def __init__(self, name):
        self.name = name

    def verify(self, root):
        return [Check(self.name, "PASS", "")]

    def plan(self, root):
        target = f"/etc/halo-test/{self.name}"
        return [] if (root / target.lstrip("/")).exists() else [Change(self.name, "file", target, self.name, after="1\n")]


def test_the_eval_gate_keeps_a_faster_step_and_rolls_back_one_that_breaks_answers(
        fedora_root, smoke_model, llama_bin_dir, tmp_path, monkeypatch):
    """`faster` makes llama-bench report 100x; `broken` 100x again, but its server answers
    only "No." (a grammar): the paired test on the same six prompts says worse (p = 0.031)."""
    flags = fedora_root / "etc/halo-test"
    wrapper = wrapped_llama(tmp_path / "llama", llama_bin_dir, {flags / "faster": 100, flags / "broken": 100},
                            no_answers=flags / "broken")
    monkeypatch.setenv("HALO_LLAMA_CPP_DIR", str(wrapper))

    @hookimpl
    def register_tuners(register):
        register(Flag("faster"))
        register(Flag("broken"))

    @hookimpl
    def register_eval_suites(register):
        register(Sentences())

    host = PluginHost.from_entry_points()
    host.register(types.SimpleNamespace(register_tuners=register_tuners,
                                        register_eval_suites=register_eval_suites), "gate-test")
    # (4 repetitions: with 2, a 100x pp32 was now and then "within noise" on a busy 2-core box)
    spec = attrs.evolve(SMALL, reps=4, eval="sentences", eval_limit=6, max_tokens=16, ctx=2048)
    info = tune.apply_tuning(tune.plan_tuning(fedora_root, ["faster", "broken"], host=host), measure=spec, host=host)
    faster, broken = info.verdicts
    assert not faster.worse and faster.detail.startswith("faster beyond noise: pp32 ")
    assert faster.detail.endswith("answers sentences no difference (Δ +0.000, mcnemar p=1.0000, 6 pairs)")
    assert broken.worse and broken.detail == ("answers worse: sentences worse (Δ -1.000, mcnemar p=0.0312, "
                                              "6 pairs)")
    assert (flags / "faster").exists() and not (flags / "broken").exists()
    assert info.status == "applied" and info.undone == 1
    journal = Journal(info.path)
    measures = journal.events("measure")
    assert [(m["step"], m["phase"]) for m in measures] == [
        (None, "baseline"), ("faster", "after"), ("broken", "after"), (None, "final")]
    replies = [r["content"] for r in map(json.loads, open(f"{measures[2]['eval']}/completions.jsonl"))]
    assert replies == ["No."] * 6
    assert measures[-1]["eval"] == measures[1]["eval"]  # the kept step's measurement is the new baseline
    (quality,) = journal.events("verdict")[1]["quality"]
    assert quality["paired"]["worse"] == 6 and quality["suite"] == "sentences"


def test_cli_eval_needs_measure_and_a_known_suite(halo, fedora_root):
    done = halo("tune", "--root", str(fedora_root), "--eval", "ifeval")
    assert done.returncode == 2 and done.stderr.strip().endswith("--eval goes with --measure: halo tune --measure --eval SUITE")
    done = halo("tune", "--root", str(fedora_root), "--measure", "--eval", "nope")
    assert done.returncode == 1 and done.stderr.strip().startswith("Error: unknown suite or preset 'nope'")


def test_sigterm_while_measuring_a_step_rolls_it_back(fedora_root, smoke_model, llama_bin_dir, tmp_path,
                                                      monkeypatch):
    """(#21) `kill` (SIGTERM) of a `halo tune --measure` whose step is applied and being measured
    rolls the transaction back like Ctrl-C; the sysroot is as it was."""
    import os
    import signal
    import subprocess
    import sys

    from conftest import wait_until
    from halo_core.llama.process import read_pid_files
    from sysroot import snapshot

    monkeypatch.setenv("HALO_HOME", str(tmp_path / "home"))  # its own runs: the wait below sees only them
    monkeypatch.setenv("HALO_MODEL", str(smoke_model.path))
    before = snapshot(fedora_root)
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "tune", "--root", str(fedora_root), "--only", "tuned",
                             "--measure", "--pp", "512", "--tg", "64", "--reps", "5", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        def measuring_the_step():  # its bench run exists: llama-bench runs for the step now
            from halo_core.runs import list_runs
            return any(p.name.startswith("tune-tuned-") for p in list_runs("bench"))
        wait_until(measuring_the_step, 300, "the step was never applied", interval=0.1)
        # tune's own bench has no pid file: `halo flush` cannot signal the transaction
        assert [p for p in read_pid_files() if p.kind == "bench"] == []
        os.kill(proc.pid, signal.SIGTERM)
        _out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted: what this run changed was rolled back" in err and "Traceback" not in err
    (journal,) = Journal.all(fedora_root)
    assert journal.status == "rolled-back" and journal.header["error"].startswith("KeyboardInterrupt")
    assert snapshot(fedora_root) == before
