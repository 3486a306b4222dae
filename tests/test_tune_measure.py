"""`halo tune --measure`: the real llama-bench on the smoke model before and after each step,
the deltas in the journal, a step that is worse beyond noise rolled back, and the steps that
need a reboot measured after it (`--resume`)."""

from __future__ import annotations

import json
import sys

import pytest

from halo_core import Change, Check, Tuner, tune
from halo_core.errors import TuneError
from halo_core.journal import Journal
from halo_core.records import MeasureSpec

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
    # ranges overlap: one fast sample after the change keeps it
    assert not tune.compare("x", before, [result("pp32", 80, 82, 99)]).worse
    # a drop smaller than min_effect is noise even without overlap
    assert not tune.compare("x", [result("pp32", 100, 100.5)], [result("pp32", 97, 97.5)]).worse
    # a drop within twice the spread is noise
    assert not tune.compare("x", [result("pp32", 60, 100)], [result("pp32", 50, 55)]).worse
    # faster is never worse; tests missing on one side are skipped
    assert not tune.compare("x", before, [result("pp32", 200, 210), result("tg16", 1, 1)]).worse


def test_measured_apply_then_resume_after_the_reboot(fedora_root, smoke_model, llama_bin_dir):
    plan = tune.plan(fedora_root)
    info = tune.apply(plan, measure=SMALL)
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
        tune.resume(fedora_root)
    assert str(err.value) == (f"the kernel changes of journal {info.id} take effect after a reboot: reboot, "
                              f"then run halo tune --measure --resume")
    sysroot.reboot(fedora_root)
    resumed = tune.resume(fedora_root)
    kernel = [v for v in resumed.verdicts if v.step == "kernel"]
    assert len(kernel) == 1 and resumed.pending_measure == ()
    assert [m["phase"] for m in Journal(info.path).events("measure")][-1] == "after-reboot"
    assert all(i in Journal(info.path).undone() for i in journal.step_changes("kernel")) == kernel[0].worse
    with pytest.raises(TuneError) as err:
        tune.resume(fedora_root)
    assert str(err.value) == f"nothing to resume: no journal of {fedora_root} waits for a measurement after a reboot"


def test_cli_measure(halo, fedora_root, smoke_model, llama_bin_dir):
    done = halo("tune", "--root", str(fedora_root), "--only", "tuned", "--measure",
                "--pp", "32", "--tg", "8", "--reps", "2", "--threads", "1")
    assert done.returncode == 0, done.stderr
    line = next(l for l in done.stdout.splitlines() if l.startswith("measured tuned: "))
    assert line.startswith(("measured tuned: kept: within noise or better: pp32 ",
                            "measured tuned: rolled back: worse beyond noise: "))


class Slowdown(Tuner):
    """A change that makes llama-bench 100x slower: the wrapper below reads its flag file."""

    name = "slowdown"

    def verify(self, root):
        return [Check("slowdown", "PASS", "")]

    def plan(self, root):
        flag = root / "etc/halo-test/slow"
        return [] if flag.exists() else [Change(self.name, "file", "/etc/halo-test/slow", "slow down", after="1\n")]


def slow_llama_bench(folder, llama_bin_dir, flag):
    """The real llama-bench, reporting 1/100 of its speed while `flag` exists (a 100x drop
    stays a drop whatever the load of a shared test machine does between two runs)."""
    folder.mkdir()
    (folder / "llama-server").symlink_to(llama_bin_dir / "llama-server")
    script = folder / "llama-bench"
    script.write_text(f"""#!{sys.executable}
import json, os, subprocess, sys
done = subprocess.run([{str(llama_bin_dir / 'llama-bench')!r}, *sys.argv[1:]], stdout=subprocess.PIPE, text=True)
for line in done.stdout.splitlines(True):
    if os.path.exists({str(flag)!r}) and line.startswith("{{"):
        record = json.loads(line)
        record["avg_ts"] /= 100
        record["stddev_ts"] /= 100
        record["samples_ts"] = [s / 100 for s in record.get("samples_ts", [])]
        line = json.dumps(record) + "\\n"
    sys.stdout.write(line)
sys.exit(done.returncode)
""")
    script.chmod(0o755)
    return folder


def test_a_step_that_makes_things_worse_is_rolled_back(fedora_root, smoke_model, llama_bin_dir, tmp_path,
                                                       monkeypatch):
    wrapper = slow_llama_bench(tmp_path / "llama", llama_bin_dir, fedora_root / "etc/halo-test/slow")
    monkeypatch.setenv("HALO_LLAMA_CPP_DIR", str(wrapper))

    host = with_tuner(Slowdown())
    before = snapshot(fedora_root)
    info = tune.apply(tune.plan(fedora_root, ["slowdown"], host=host), measure=SMALL, host=host)
    (verdict,) = info.verdicts
    assert verdict.worse and verdict.step == "slowdown"
    assert verdict.detail.startswith("worse beyond noise: pp32 ")
    assert verdict.deltas["pp32"] < -0.5 and verdict.deltas["tg8"] < -0.5
    assert info.status == "rolled-back" and info.undone == 1
    assert snapshot(fedora_root) == before
