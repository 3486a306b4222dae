"""`halo optimize MODEL`: the fastest lossless llama.cpp settings for this model, backend and
workload on this machine, found by measurement and kept as a profile (llama/profile.py) that
`halo serve` then starts llama-server with.

The search (Optuna's TPE sampler, seeded) is over what llama-bench and the backend accept:
`-ub`, `-b` (only sizes the workload's prompts can use), `-fa`, and `-t` where the model runs
on the CPU. Every trial is a real llama-bench run (an ordinary run under runs/bench, so `halo
bench show` reads it): the workload's depth-0 pp/tg test first, then its long-context depths
unless the depth-0 figure is below PRUNE_BELOW of the best trial's (a dominated setting is not
measured further: Optuna's PRUNED). The first trial is the defaults. After the budget the
winner, the runner-up and the defaults are measured again, CONFIRM_REPS repetitions each,
interleaved, and a setting is recommended only when one of the objective's tests is faster than
the defaults by the one rule `halo bench compare` uses (stats.judge_speed) and none is slower;
else the defaults stand and the report says what the winner would have bought.

A run directory, $HALO_HOME/runs/optimize/<tag>-<UTC time>/:
  run.json      spec, status, the trial in progress (its bench runs, so a killed trial resumes
                them), the confirmation's bench runs, the result and the profile written
  trials.jsonl  one line per finished trial: its settings, state (complete, pruned, failed),
                objective value, its tests' t/s, its bench runs, the error of a failed one

compare_backends() ranks finished runs of one model and workload on different backends by their
recommended settings, measured again side by side (`halo optimize --backend A --backend B`,
`halo optimize compare`).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from pathlib import Path
from typing import Callable

import attrs

from .. import runs
from ..bench.compare import speed_change
from ..bench.run import run_bench
from ..config import defaults
from ..errors import HaloError
from ..llama.profile import Profile, Settings, build_identity, describe_changes, machine_identity, save_profile
from ..machine.hostfacts import read_facts
from ..models.header import read_header
from ..models.resolve import fetch_model
from ..plugins import PluginHost, get_host
from ..records import BenchResult, BenchSpec, Run, RunStatus
from ..runs import RunState, now, read_jsonl
from ..store import append_line, from_dict, to_dict

KIND = "optimize"
# workload -> (pp, tg, long-context depths)
WORKLOADS = {"chat": (512, 128, ()), "long": (512, 128, (16384,)), "agentic": (4096, 256, (8192,))}
OBJECTIVES = ("tg", "pp", "balanced")
UBATCH = (64, 128, 256, 512, 1024, 2048)
BATCH = (256, 512, 1024, 2048, 4096)
PRUNE_BELOW = 0.90  # a trial's depth-0 objective under this share of the best so far: pruned
CONFIRM_REPS = 5
COMPARE_ROUNDS = 2  # halo optimize compare: interleaved rounds of CONFIRM_REPS a backend
MAX_FAILED_IN_A_ROW = 3
GPU_ACCELS = ("cuda", "vulkan", "rocm", "hip", "metal", "sycl")
LOSSLESS_KV = ("f32", "f16", "bf16")
KV_CHOICES = ("f16", "q8_0", "q4_0")
EVAL_CTX = 8192  # the gate's servers' context (or the model's, when smaller)  # with allow_lossy: the K/V cache types searched


@attrs.frozen
class OptimizeSpec:
    """What `halo optimize` searches: `model` on `backend` at a workload (its pp, tg and depths,
    or those given: the profile is still the workload's), for an objective (tg, pp or balanced: the geometric mean of both), within
    `budget` trials (and `minutes`, when given) of `reps` llama-bench repetitions each."""

    model: str
    backend: str = attrs.field(factory=lambda: defaults().backend)
    workload: str = "chat"
    pp: int | None = None
    tg: int | None = None
    depths: tuple[int, ...] | None = attrs.field(default=None, converter=lambda v: None if v is None else tuple(v))
    objective: str = "tg"
    budget: int = 12
    minutes: float | None = None
    reps: int = 3
    seed: int = 0
    tag: str = "optimize"
    backend_options: dict[str, str] = attrs.field(factory=dict)
    allow_lossy: bool = False  # search KV cache types too (LOSSY_KV), kept only if `eval` finds no regression
    eval: str = ""  # the suite (or preset) whose paired test gates a lossy setting
    limit: int = 20  # its samples
    max_tokens: int | None = None  # its reply length (None: the suite's)

    def shape(self) -> tuple[int, int, tuple[int, ...]]:
        """(pp, tg, depths) of the workload, what was given overriding the named one's."""
        pp, tg, depths = WORKLOADS.get(self.workload, WORKLOADS["chat"])
        return (self.pp or pp, self.tg or tg, self.depths if self.depths is not None else depths)


@attrs.frozen
class Trial:
    number: int
    settings: Settings = attrs.field(converter=lambda v: from_dict(Settings, v) if isinstance(v, dict) else v)
    state: str  # complete | pruned | failed
    value: float | None = None
    tests: dict = attrs.field(factory=dict)  # test -> t/s (avg)
    runs: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    error: str = ""
    depth0: float | None = None  # the objective of its depth-0 test alone (what pruning compares)


@attrs.define
class OptimizeRun(Run):
    trials: list[Trial] = attrs.field(factory=list)
    result: dict | None = None
    profile: str = ""
    server_command: str = ""  # what `halo serve MODEL` runs with the profile (llama-server's argv)


def check_spec(spec: OptimizeSpec) -> None:
    if spec.workload not in WORKLOADS:
        raise HaloError(f"unknown workload '{spec.workload}' (known: {', '.join(WORKLOADS)})")
    if spec.objective not in OBJECTIVES:
        raise HaloError(f"unknown objective '{spec.objective}' (known: {', '.join(OBJECTIVES)})")
    if spec.budget < 1:
        raise HaloError("the budget must be at least 1 trial (the defaults)")
    if spec.minutes is not None and spec.minutes <= 0:
        raise HaloError("--minutes must be > 0")
    pp, tg, depths = spec.shape()
    if pp < 1 or tg < 2 or any(d < 0 for d in depths):
        raise HaloError("pp must be >= 1, tg >= 2 and depths >= 0")
    if spec.allow_lossy and not spec.eval:
        raise HaloError("--allow-lossy needs --eval SUITE: a setting that changes answers is kept only "
                        "when the suite's paired test finds no regression")
    if spec.limit < 1:
        raise HaloError("--limit must be at least 1 sample")


def is_lossy(settings) -> bool:
    """Whether the setting changes the model's answers (a quantized K/V cache)."""
    return settings.cache_type not in (None, *LOSSLESS_KV)


def objective_value(results: list[BenchResult], objective: str) -> float | None:
    """The geometric mean of the objective's tests' t/s (tg: token generation at every depth;
    pp: prompt processing; balanced: both)."""
    keep = [r.avg_ts for r in results if r.avg_ts > 0 and (
        objective == "balanced" or (objective == "tg") == bool(r.n_gen and not r.n_prompt))]
    return round(math.exp(sum(map(math.log, keep)) / len(keep)), 3) if keep else None


def search_space(pp: int, depths: tuple[int, ...], accel: str, lossy: bool = False) -> dict[str, tuple]:
    """The choices per setting: batch and ubatch sizes the workload's prompts can fill (a size
    above the longest prompt changes nothing), -fa both ways, threads on a CPU build, and with
    `lossy` the K/V cache types."""
    longest = max([pp, *([2048] if depths else [])])
    batch = tuple(b for b in BATCH if b <= max(longest, BATCH[0])) or (BATCH[0],)
    space = {"batch": batch, "ubatch": tuple(u for u in UBATCH if u <= max(batch)), "flash_attn": (True, False)}
    if not any(a in accel for a in GPU_ACCELS):
        cores = os.cpu_count() or 1
        space["threads"] = tuple(sorted({max(1, cores // 2), cores}))
    if lossy:
        space["cache_type"] = KV_CHOICES
    return space


def _normal(settings: Settings) -> Settings:
    """One setting per distinct llama.cpp behaviour: a ubatch above the batch is the batch, an
    f16 cache llama.cpp's default, and a quantized V cache runs with flash attention (llama.cpp
    refuses it without)."""
    if settings.batch and settings.ubatch and settings.ubatch > settings.batch:
        settings = attrs.evolve(settings, ubatch=settings.batch)
    if settings.cache_type == "f16":
        settings = attrs.evolve(settings, cache_type=None)
    if is_lossy(settings) and settings.flash_attn is False:
        settings = attrs.evolve(settings, flash_attn=True)
    return settings


def trial_spec(model: str, backend: str, settings: Settings, *, pp: int, tg: int, reps: int,
               depths: tuple[int, ...] = (), standard: bool = True, tag: str) -> BenchSpec:
    """The llama-bench run that measures `settings` (a trial, a confirmation, a benchmark's pick)."""
    return BenchSpec(models=(model,), backends=(backend,), pp=pp, tg=tg, reps=reps, ctx_reps=reps, depths=depths,
                     standard=standard, batch=settings.batch, ubatch=settings.ubatch, threads=settings.threads,
                     flash_attn=settings.flash_attn, kv_types=((settings.cache_type or "f16",) * 2,), tag=tag)


def bench_setting(spec: OptimizeSpec, settings: Settings, *, reps: int, standard: bool, depths: tuple[int, ...],
                  tag: str, host: PluginHost):
    """One llama-bench run of `settings` at `spec`'s model, backend and shape, tagged `tag`: the
    latest run of that tag continued when cut short, read back when finished."""
    pp, tg, _depths = spec.shape()
    return run_bench(trial_spec(spec.model, spec.backend, settings, pp=pp, tg=tg, reps=reps, depths=depths,
                                standard=standard, tag=tag),
                     resume_tag=True, host=host, backend_options=spec.backend_options)


def results_of(bench, what: str = "") -> list[BenchResult]:
    """A bench run's results; none is an error (its first failure's, `what` before it)."""
    if not bench.results:
        raise HaloError(what + (bench.failures[0].error if bench.failures else "llama-bench reported nothing"))
    return bench.results


def judge_tests(base: dict[str, BenchResult], after: dict[str, BenchResult]) -> dict[str, dict]:
    """Each test of `after` that `base` has, against it by `halo bench compare`'s rule:
    {test: {change_pct, p_value, verdict}}."""
    judged = {}
    for name, r in after.items():
        if name in base:
            change, p, verdict = speed_change(base[name], r)
            judged[name] = {"change_pct": change, "p_value": p, "verdict": verdict}
    return judged


class _Search:
    """One sitting of an optimize run: its state, the bench runs of each trial, the study."""

    def __init__(self, run: OptimizeRun, state: RunState, host: PluginHost, status, model, accel: str):
        self.run, self.state, self.host, self.status, self.model = run, state, host, status, model
        self.spec: OptimizeSpec = run.spec
        self.pp, self.tg, self.depths = self.spec.shape()
        self.space = search_space(self.pp, self.depths, accel, self.spec.allow_lossy)

    def bench(self, settings: Settings, key: str, reps: int, standard: bool, depths: tuple) -> list[BenchResult]:
        """One bench run of `settings`, tagged by the trial (`key`), so that a killed trial's run
        is continued (run_bench's resume_tag) and a finished one is read back."""
        self.status(f"{key}: {settings.describe()}" + (f" at depths {','.join(map(str, depths))}" if depths else ""))
        bench = bench_setting(self.spec, settings, reps=reps, standard=standard, depths=depths,
                              tag=f"{self.run.path.name}-{key}", host=self.host)
        self.state.data.setdefault("bench_runs", {})[key] = str(bench.path)
        self.state.save()
        return results_of(bench)

    def trial(self, number: int, settings: Settings, best: float | None) -> Trial:
        """Measure one setting: depth 0, then its depths unless its depth-0 figure is below
        PRUNE_BELOW of `best` (the best trial's at depth 0)."""
        key, first = f"t{number}", None
        mine = lambda: tuple(v for k, v in self.state.data.get("bench_runs", {}).items() if k in (key, f"{key}d"))  # noqa: E731
        try:
            results = self.bench(settings, key, self.spec.reps, True, ())
            first = objective_value(results, self.spec.objective)
            state = "complete"
            if self.depths:
                if best is not None and first is not None and first < PRUNE_BELOW * best:
                    state = "pruned"
                else:
                    results = results + self.bench(settings, f"{key}d", self.spec.reps, False, self.depths)
        except HaloError as exc:
            return Trial(number, settings, "failed", error=str(exc), runs=mine(), depth0=first)
        value = objective_value(results, self.spec.objective) if state == "complete" else None
        return Trial(number, settings, state, value, {r.test: r.avg_ts for r in results}, mine(), depth0=first)


def _settings(params: dict) -> Settings:
    return _normal(Settings(**{k: params.get(k) for k in attrs.fields_dict(Settings)}))


def _params(settings: Settings, space: dict) -> dict:
    """The point of the search space a (normal) setting is: its unset cache type is f16."""
    return {k: ("f16" if k == "cache_type" and settings.cache_type is None else getattr(settings, k))
            for k in space}


def _search_loop(search: _Search, on_trial) -> None:
    """Trials until the budget (or the minutes) is spent: the defaults first, then TPE's picks;
    a setting already measured is told its value again, not measured twice."""
    import optuna
    from optuna.distributions import CategoricalDistribution
    from optuna.trial import TrialState, create_trial

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    run, state, spec = search.run, search.state, search.spec
    dists = {k: CategoricalDistribution(v) for k, v in search.space.items()}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
        seed=spec.seed, n_startup_trials=max(2, min(5, spec.budget // 3))))
    states = {"complete": TrialState.COMPLETE, "pruned": TrialState.PRUNED, "failed": TrialState.FAIL}
    for t in run.trials[1:]:  # (the defaults are no point of the space: llama.cpp's own choice)
        study.add_trial(create_trial(params=_params(t.settings, dists), distributions=dists,
                                     value=t.value if t.state == "complete" else None, state=states[t.state]))
    measured = {t.settings: t for t in run.trials}
    started, asks, failed_in_a_row = time.monotonic(), 0, 0
    while len(run.trials) < spec.budget and asks < 4 * spec.budget:
        if spec.minutes and run.trials and time.monotonic() - started > 60 * spec.minutes:
            search.status(f"{spec.minutes:g} minutes spent: the search stops at {len(run.trials)} trials")
            break
        number, current, asked = len(run.trials), state.data.get("current"), None
        if number == 0:
            settings = Settings()
        else:
            if current and current["number"] == number:  # a trial cut short: the same setting again
                study.enqueue_trial(_params(from_dict(Settings, current["settings"]), dists))
            asked, asks = study.ask(dists), asks + 1
            settings = _settings(asked.params)
            if settings in measured:
                seen = measured[settings]
                study.tell(asked, seen.value if seen.state == "complete" else None,
                           state=states[seen.state] if seen.state != "complete" else None)
                continue
        state.data["current"] = {"number": number, "settings": to_dict(settings)}
        state.save()
        best = max((t.depth0 for t in run.trials if t.depth0), default=None)
        trial = search.trial(number, settings, best)
        append_line(run.path / "trials.jsonl", json.dumps(to_dict(trial)))
        run.trials.append(trial)
        measured[settings] = trial
        state.data.pop("current", None)
        state.save()
        if asked is not None:
            if trial.state == "complete" and trial.value is not None:
                study.tell(asked, trial.value)
            else:
                study.tell(asked, None, state=states["failed" if trial.state == "failed" else "pruned"])
        if on_trial:
            on_trial(trial)
        if trial.state == "failed":
            if number == 0:
                raise HaloError(f"the defaults did not run: {trial.error}")
            failed_in_a_row += 1
            if failed_in_a_row >= MAX_FAILED_IN_A_ROW:
                raise HaloError(f"{failed_in_a_row} trials in a row failed, the last: {trial.error}")
        else:
            failed_in_a_row = 0


def _objective_tests(results: list[BenchResult], objective: str) -> dict[str, BenchResult]:
    return {r.test: r for r in results if objective == "balanced"
            or (objective == "tg") == bool(r.n_gen and not r.n_prompt)}


def _confirm(search: _Search) -> dict:
    """The winner and the runner-up (and, in a lossy search, the best lossless and the best
    lossy trial) against the defaults, CONFIRM_REPS repetitions each; the first candidate faster
    beyond noise on some objective test and slower on none is recommended, a lossy one only
    when its answers pass the gate (_gate; run for gate_target's candidate), else the defaults."""
    run, spec = search.run, search.spec
    done = sorted((t for t in run.trials[1:] if t.state == "complete" and t.value),
                  key=lambda t: t.value, reverse=True)
    ranked = done[:2]
    if spec.allow_lossy:
        for pick in (next((t for t in done if not is_lossy(t.settings)), None),
                     next((t for t in done if is_lossy(t.settings)), None)):
            if pick is not None and pick not in ranked:
                ranked.append(pick)
        ranked.sort(key=lambda t: t.value, reverse=True)
    defaults_trial = run.trials[0]
    if not ranked:
        return {"recommended": Settings(), "trial": 0, "why": "no other setting completed", "tests": {},
                "candidates": []}
    measured: dict[int, list[BenchResult]] = {}
    for t in [defaults_trial, *ranked]:
        key = f"confirm-t{t.number}"
        results = search.bench(t.settings, key, CONFIRM_REPS, True, ())
        if search.depths:
            results = results + search.bench(t.settings, f"{key}d", CONFIRM_REPS, False, search.depths)
        measured[t.number] = results
    base = _objective_tests(measured[0], spec.objective)
    candidates = []
    for t in ranked:
        after = _objective_tests(measured[t.number], spec.objective)
        tests = {name: {"defaults": round(base[name].avg_ts, 2), "setting": round(after[name].avg_ts, 2), **judged}
                 for name, judged in judge_tests(base, after).items()}
        verdicts = [v["verdict"] for v in tests.values()]
        candidates.append({"trial": t.number, "settings": to_dict(t.settings), "tests": tests,
                           "faster": "faster" in verdicts and "slower" not in verdicts,
                           "lossy": is_lossy(t.settings)})
    gate = None
    lossy = gate_target(candidates)
    if lossy is not None:  # its answers, beside the same setting's at f16
        gate = _gate(search, from_dict(Settings, lossy["settings"]))
        lossy["gate"] = gate
    chosen = next((c for c in candidates if eligible(c)), None)
    held = ""
    if lossy is not None and lossy["faster"] and not gate["passed"]:
        held = (f"; trial {lossy['trial']} {from_dict(Settings, lossy['settings']).describe()} would have bought "
                + describe_changes(lossy["tests"]) + f" but is not kept: {gate['why']}")
    if chosen is None:
        top = candidates[0]
        gains = describe_changes(top["tests"], verdicts=True)
        return {"recommended": Settings(), "trial": 0, "tests": top["tests"], "candidates": candidates,
                "gate": gate, "why": f"no setting was faster than the defaults beyond noise (the best, trial "
                                     f"{top['trial']} {from_dict(Settings, top['settings']).describe()}: {gains})"
                                     + held}
    return {"recommended": from_dict(Settings, chosen["settings"]), "trial": chosen["trial"], "tests": chosen["tests"],
            "candidates": candidates, "gate": gate,
            "why": f"trial {chosen['trial']} is faster than the defaults beyond noise: {describe_changes(chosen['tests'])}"
                   + (f"; its answers: {gate['why']}" if chosen["lossy"] else held)}


def gate_target(candidates: list[dict]) -> dict | None:
    """The lossy candidate whose answers the gate measures (one sweep per run): the best one
    faster beyond noise, else the best one (to say what it would have bought)."""
    lossy = [c for c in candidates if c["lossy"]]
    return next((c for c in lossy if c["faster"]), lossy[0] if lossy else None)


def eligible(candidate: dict) -> bool:
    """Whether a confirmed candidate may be recommended: faster beyond noise, and, when lossy,
    gated with answers that passed (an ungated lossy candidate is not)."""
    gate = candidate.get("gate")
    return candidate["faster"] and (not candidate["lossy"] or bool(gate and gate["passed"]))



def _gate(search: _Search, settings: Settings) -> dict:
    """The lossy `settings` against the same settings with an f16 cache, through a sweep (its
    servers, the eval suite on the same samples, the paired test): passed when every suite's
    verdict is other than "worse". A sweep cut short is resumed (it is tagged by the run)."""
    from ..llama.server import ServerSpec
    from ..sweep.run import SweepSpec, load_sweep_run, run_sweep

    run, spec, state = search.run, search.spec, search.state
    kv = settings.cache_type
    sweep_spec = SweepSpec(
        ServerSpec(model=spec.model, backend=spec.backend, ctx=search.eval_ctx, batch=settings.batch,
                   ubatch=settings.ubatch, flash_attn=settings.flash_attn, threads=settings.threads),
        vary=(("kv", ("f16", kv)),), suite=spec.eval, limit=spec.limit, max_tokens=spec.max_tokens,
        pp=search.pp, tg=search.tg, reps=spec.reps, tag=f"{run.path.name}-gate",
        backend_options=spec.backend_options)
    search.status(f"gate: {spec.eval} on {spec.limit} samples, -ctk/-ctv {kv} against f16")
    earlier = state.data.get("gate_run")
    try:
        if earlier and Path(earlier, "run.json").is_file():
            sweep = load_sweep_run(Path(earlier))
            if sweep.status != RunStatus.COMPLETE:
                sweep = run_sweep(resume=earlier, host=search.host, on_status=search.status)
        else:
            sweep = run_sweep(sweep_spec, host=search.host, on_status=search.status)
    except HaloError as exc:
        return {"sweep": earlier or "", "passed": False, "suites": {}, "why": f"the gate's sweep failed: {exc}"}
    state.data["gate_run"] = str(sweep.path)
    state.save()
    lossy = sweep.results[1] if len(sweep.results) > 1 else None
    suites = {c.suite: {"n": c.paired.n, "delta": c.paired.delta, "low": c.paired.low, "high": c.paired.high,
                        "test": c.paired.test, "p_value": c.paired.p_value, "verdict": c.paired.verdict,
                        "needed": c.paired.needed}
              for c in (lossy.quality if lossy else ())}
    if not suites:
        errors = "; ".join(r.error for r in sweep.results if r.error) or "no suite was scored on both sides"
        return {"sweep": str(sweep.path), "passed": False, "suites": {}, "why": f"no paired verdict: {errors}"}
    worse = [n for n, v in suites.items() if v["verdict"] == "worse"]
    said = ", ".join(f"{n} Δ {v['delta']:+.3f} [{v['low']:+.3f}, {v['high']:+.3f}] p {v['p_value']:.3g} "
                     f"({v['verdict']}, n {v['n']})" for n, v in suites.items())
    return {"sweep": str(sweep.path), "passed": not worse, "suites": suites,
            "why": (f"{', '.join(worse)} worse than f16: " if worse else "no regression against f16: ") + said}


def pooled(measured: list[list[BenchResult]]) -> list[BenchResult]:
    """Each test's samples over several bench runs of one setting, as one result."""
    by_test: dict[str, list[BenchResult]] = {}
    for results in measured:
        for r in results:
            by_test.setdefault(r.test, []).append(r)
    out = []
    for rs in by_test.values():
        samples = [x for r in rs for x in r.samples_ts]
        out.append(attrs.evolve(rs[0], samples_ts=tuple(samples),
                                avg_ts=statistics.fmean(samples) if samples else rs[0].avg_ts,
                                stddev_ts=statistics.stdev(samples) if len(samples) > 1 else 0.0))
    return out


def compare_backends(found: list[OptimizeRun], *, host: PluginHost | None = None,
                     on_status: Callable[[str], None] | None = None, rounds: int = COMPARE_ROUNDS) -> dict:
    """Finished optimize runs of one model and workload on different backends: each backend's
    recommended setting measured again, CONFIRM_REPS repetitions a round in `rounds` rounds
    whose order alternates (drift hits all alike; a search's own figures were measured at other
    times), ranked by the objective, each against the fastest by the rule `halo bench compare`
    uses. The fastest is named only when every other backend is slower on some objective test
    and faster on none. The measurements are bench runs tagged by the first run and the backend,
    so a comparison cut short continues them and one done is read back."""
    status = on_status or (lambda _msg: None)
    if len(found) < 2:
        raise HaloError("comparing backends needs two optimize runs or more")
    first = found[0]
    for run in found:
        if run.status != RunStatus.COMPLETE or not run.result:
            raise HaloError(f"{run.path.name} is {run.status}: resume it first (halo optimize --resume {run.path.name})")
        if (run.spec.model, run.spec.shape(), run.spec.objective) != (first.spec.model, first.spec.shape(),
                                                                       first.spec.objective):
            raise HaloError(f"{run.path.name} measured {run.spec.model} at another workload or objective than "
                            f"{first.path.name}: compare runs of one model, workload and objective")
    backends = [run.spec.backend for run in found]
    if len(set(backends)) < len(backends):
        raise HaloError(f"two runs of one backend ({', '.join(sorted({b for b in backends if backends.count(b) > 1}))}): "
                        "compare one run per backend")
    host = host or get_host()
    objective = first.spec.objective
    depths = first.spec.shape()[2]
    measured: dict[str, list[list[BenchResult]]] = {b: [] for b in backends}
    for r in range(rounds):
        for run in (found if r % 2 == 0 else found[::-1]):
            settings = from_dict(Settings, run.result["recommended"])
            status(f"round {r + 1}/{rounds}: {run.spec.backend} {settings.describe()}")
            results = []
            for standard, at in ((True, ()), (False, depths)) if depths else ((True, ()),):
                tag = f"{first.path.name}-vs-{run.spec.backend}-r{r}{'' if standard else 'd'}"
                results += results_of(bench_setting(run.spec, settings, reps=CONFIRM_REPS, standard=standard,
                                                    depths=at, tag=tag, host=host), f"{run.spec.backend}: ")
            measured[run.spec.backend].append(results)
    rows = []
    for run in found:
        tests = _objective_tests(pooled(measured[run.spec.backend]), objective)
        rows.append((run, tests, objective_value(list(tests.values()), objective)))
    rows.sort(key=lambda row: row[2] or 0.0, reverse=True)
    best_tests = rows[0][1]
    out, beaten = [], []
    for i, (run, tests, value) in enumerate(rows):
        against = judge_tests(best_tests, tests) if i else {}
        if i:
            verdicts = [v["verdict"] for v in against.values()]
            beaten.append("slower" in verdicts and "faster" not in verdicts)
        out.append({"backend": run.spec.backend, "run": str(run.path), "profile": run.profile,
                    "recommended": run.result["recommended"], "value": value,
                    "tests": {name: round(r.avg_ts, 2) for name, r in tests.items()}, "against_fastest": against})
    top = rows[0][0].spec.backend
    if all(beaten):
        why = f"{top} is faster beyond noise: " + "; ".join(
            f"{row['backend']} {describe_changes(row['against_fastest'])}" for row in out[1:])
    else:
        close = [row["backend"] for row, ok in zip(out[1:], beaten) if not ok]
        why = (f"no backend is faster than the others beyond noise ({top} measured highest, "
               f"{', '.join(close)} not slower beyond noise)")
    return {"objective": objective, "rounds": rounds, "reps": CONFIRM_REPS,
            "fastest": top if all(beaten) else None, "backends": out, "why": why}


def _server_command(spec: OptimizeSpec, host: PluginHost) -> str:
    """The llama-server command `halo serve MODEL` now runs here, the new profile's flags in it."""
    import shlex

    from ..llama.server import ServerSpec, plan_server

    plan = plan_server(ServerSpec(model=spec.model, backend=spec.backend, profile=spec.workload), host=host,
                       backend_options=spec.backend_options)
    return shlex.join(plan.argv)


def _finish(run: OptimizeRun, state: RunState, status: RunStatus, error: str) -> None:
    run.status, run.error = status, error
    state.finish(status, error)


def resolve_optimize_run(ref: str | Path) -> Path:
    return runs.resolve_run(KIND, ref)


def load_optimize_run(path: Path) -> OptimizeRun:
    state = RunState.load(Path(path), KIND)
    spec = from_dict(OptimizeSpec, state.data["spec"])
    trials = [from_dict(Trial, row) for row in read_jsonl(Path(path) / "trials.jsonl")]
    return OptimizeRun(path=Path(path), spec=spec, status=state.data["status"], error=state.data.get("error", ""),
                       trials=trials, result=state.data.get("result"), profile=state.data.get("profile", ""),
                       server_command=state.data.get("server_command", ""))


def run_optimize(spec: OptimizeSpec | None = None, *, resume: str | Path | None = None,
                 host: PluginHost | None = None, on_status: Callable[[str], None] | None = None,
                 on_trial: Callable[[Trial], None] | None = None) -> OptimizeRun:
    """Run (or resume) the search of `spec`, confirm its winner and write the profile; the run.

    Bad input (an unknown workload or objective, a budget of 0, a workload deeper than the
    model's context, a model or backend that is not there) raises a HaloError before a run
    exists; a trial that fails is recorded and the search goes on."""
    status = on_status or (lambda _msg: None)
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise HaloError("halo optimize searches with Optuna: pip install 'halo-llm[optimize]'") from None
    if resume is not None:
        resume = resolve_optimize_run(resume)
        spec = load_optimize_run(resume).spec
    if spec is None:
        raise HaloError("nothing to run: give an OptimizeSpec or a run to resume")
    check_spec(spec)
    host = host or get_host()
    if spec.eval:
        from ..evals.run import resolve_suites

        resolve_suites(spec.eval, host)
    [backend] = host.available_backends([spec.backend], spec.backend_options)
    model = fetch_model(spec.model, host=host)
    pp, tg, depths = spec.shape()
    n_ctx = read_header(model.path).arch_key("context_length")
    need = max(depths, default=0) + max(pp, 2048 if depths else 0) + tg
    if isinstance(n_ctx, int) and need > n_ctx:
        raise HaloError(f"the workload needs {need} tokens of context (depth {max(depths, default=0)} + "
                        f"prompt + {tg}) and {model.name} has {n_ctx}: give smaller --depths")
    state = runs.open_run(KIND, spec, resume=resume)
    run = load_optimize_run(state.path) if state.resumed else OptimizeRun(path=state.path, spec=spec)
    if run.trials:
        status(f"resuming {run.path.name}: {len(run.trials)} trial(s) done")
    provenance = backend.provenance()
    search = _Search(run, state, host, status, model, str(provenance.get("accel", "")))
    search.eval_ctx = min(n_ctx, EVAL_CTX) if isinstance(n_ctx, int) else EVAL_CTX
    state.data["space"] = {k: list(v) for k, v in search.space.items()}
    state.save()
    try:
        _search_loop(search, on_trial)
        status("confirming the winner against the defaults")
        result = _confirm(search)
        from ..llama.profile import model_digest

        profile = Profile(model=model.name, model_sha256=model_digest(model), backend=spec.backend,
                          build=build_identity(provenance), machine=machine_identity(read_facts(Path("/"), host=host)),
                          workload=spec.workload, objective=spec.objective,
                          # (the cache type it was measured with: halo serve's own is for memory, not speed)
                          settings=attrs.evolve(result["recommended"],
                                                cache_type=result["recommended"].cache_type or "f16"),
                          defaults=Settings(), measured=result["tests"], run=str(run.path), created=now())
        run.profile = str(save_profile(profile))
        run.result = to_dict({**result, "recommended": result["recommended"]})
        run.server_command = _server_command(spec, host)
        state.data.update(result=run.result, profile=run.profile, server_command=run.server_command)
        _finish(run, state, RunStatus.COMPLETE, "")
    except BaseException as exc:
        runs.record_exit(exc, lambda status_, error: _finish(run, state, status_, error))
        raise
    return run
