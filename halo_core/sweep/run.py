"""`halo sweep`: what a serving setting costs in answers, beside what it buys in t/s.

The settings are the product of the --vary axes (model, backend, kv, ngram, no-think); the
first value of each axis makes the baseline, the first setting. For each setting the sweep
starts llama-server with it (temperature 0, a fixed seed, one slot unless asked), runs the
eval suites against it, stops it, and measures its speed with llama-bench and the same flags.
Each suite's per-sample outcomes then give a score with its 95% interval and a paired test
against the baseline on the same samples (halo_core/stats.py).

A sweep is a run directory, $HALO_HOME/runs/sweep/<tag>-<timestamp>/:

  run.json      spec, status, and per setting: its state, the exact server argv, the model's
                sha256, its eval run and its bench run (ordinary runs under runs/eval and
                runs/bench, so `halo eval show` and `halo bench show` read them too)
  results.json  the analysis: scores with intervals, speed, paired tests, speed changes
  report/       index.html with the quality-vs-speed chart of each suite, and its PNGs

A killed sweep resumes (`resume=`): finished settings are kept, a setting cut short continues
its eval run (no reply is asked for twice) and its bench run. A setting whose model or server
fails is recorded with the reason and the log tail, and the sweep goes on.
"""

from __future__ import annotations

import html
import itertools
import re
from pathlib import Path
from typing import Callable, Mapping

import attrs

from .. import __version__
from ..bench.compare import speed_change
from ..errors import HaloError
from ..evals.compare import Comparison, compare_evals
from ..evals.run import EvalSpec, load_eval_run, load_samples, resolve_suites, run_eval
from ..llama.flags import DEFAULT_CACHE_TYPE, KV_TYPES
from ..models.resolve import fetch_model
from ..plugins import PluginHost, get_host
from ..records import BenchResult, BenchSpec, Run, RunStatus, StrEnum, states
from ..bench.run import load_bench_run, run_bench
from ..runs import RunState, new_run_dir, open_run, read_jsonl, record_exit, resolve_run as resolve_run_dir
from ..llama.server import ServerSpec, start_server
from ..llama.process import free_port
from ..stats import ALPHA, Interval, interval
from ..store import from_dict, safe_name, sha256_file, to_dict, write_atomic, write_json

AXES = ("model", "backend", "kv", "ngram", "no-think")
ON_OFF = {"on": True, "off": False}
# a quantisation tag in a model name: Q4_K_M, IQ4_XS, Q8_0, BF16, ...
QUANT = re.compile(r"(?i)(?<![a-z0-9])(?:i?q\d(?:_[a-z0-9]+)*|bf16|f16|f32)(?![a-z0-9])")


def _vary(value) -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((axis, tuple(values)) for axis, values in value)


def parse_vary(items) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """["kv=f16,q8_0", "ngram=off,on"] -> (("kv", ("f16", "q8_0")), ("ngram", ("off", "on")))."""
    out: dict[str, tuple[str, ...]] = {}
    for item in items:
        axis, eq, rest = item.partition("=")
        values = tuple(v.strip() for v in rest.split(",") if v.strip())
        if not eq or not values:
            raise HaloError(f"--vary {item}: write AXIS=VALUE,VALUE (axes: {', '.join(AXES)})")
        if axis not in AXES:
            raise HaloError(f"--vary {item}: unknown axis '{axis}' (axes: {', '.join(AXES)})")
        if axis in out:
            raise HaloError(f"--vary {axis} is given twice")
        if len(set(values)) != len(values):
            raise HaloError(f"--vary {item}: a value is given twice")
        known = {"kv": tuple(KV_TYPES), "ngram": tuple(ON_OFF), "no-think": tuple(ON_OFF)}.get(axis)
        for value in values:
            if known and value not in known:
                raise HaloError(f"--vary {item}: '{value}' is not one of {', '.join(known)}")
        out[axis] = values
    return tuple(out.items())


def model_ref(base: str, value: str | None) -> str:
    """A model axis value: a quantisation tag (Q8_0) replaces the one in the base model's
    name (…-Q4_K_M.gguf -> …-Q8_0.gguf); anything else is a model reference of its own."""
    if value is None:
        return base
    matches = list(QUANT.finditer(base)) if QUANT.fullmatch(value) else []
    if not matches:
        return value
    last = matches[-1]
    return base[:last.start()] + value + base[last.end():]


@attrs.frozen
class Setting:
    """One server configuration of a sweep; `name` shows the values of the varied axes."""

    name: str
    model: str
    backend: str
    cache_type: str
    ngram: bool
    no_think: bool


# the fields of the ServerSpec a sweep's spec held at its top level before it embedded one
# (run.json files of earlier sweeps): _flat_server moves them under "server"
_FLAT_SERVER_FIELDS = ("model", "backend", "ctx", "parallel", "cache_type", "ngram", "no_think",
                       "threads", "ready_timeout")


def _server_spec(value) -> ServerSpec:
    return from_dict(ServerSpec, value) if isinstance(value, dict) else value


def _flat_server(data: Mapping) -> dict:
    """A sweep spec as run.json holds it, with an older sweep's flat server fields (model,
    backend, ctx, ... beside vary and suite) moved into `server`."""
    data = dict(data)
    if "server" not in data:
        data["server"] = {k: data.pop(k) for k in _FLAT_SERVER_FIELDS if k in data}
    return data


@attrs.frozen
class SweepSpec:
    """What `halo sweep` was asked: the base server (a ServerSpec: model, backend, ctx, KV
    cache, ..., as `halo serve` takes them) with the backend options it starts with, the axes
    to vary, the evals and the speed test. `limit` is the samples per suite (with
    `until_decided`, the most). Each setting's server is `server` with the varied values, a
    free port and `--seed seed`."""

    server: ServerSpec = attrs.field(converter=_server_spec)
    vary: tuple[tuple[str, tuple[str, ...]], ...] = attrs.field(default=(), converter=_vary)
    suite: str = "quick"
    limit: int = 20
    until_decided: bool = False
    step: int = 10  # until_decided: samples of the first round, doubled each round
    max_tokens: int | None = None
    timeout: float = 300.0  # seconds per eval request
    seed: int = 0
    pp: int = 512
    tg: int = 128
    reps: int = 3
    tag: str = "sweep"
    backend_options: Mapping[str, str] = attrs.field(factory=dict, converter=dict)  # start_server, run_bench

    @server.validator
    def _no_key(self, _attr, value: ServerSpec) -> None:
        if value.api_key:  # the sweep's own evals talk to its servers and send no key
            raise HaloError("a sweep's servers take no API key (they listen on loopback for its evals)")

    @classmethod
    def from_dict(cls, data: Mapping) -> "SweepSpec":
        """The spec from run.json, an older sweep's flat server fields included."""
        return from_dict(cls, _flat_server(data))

    @property
    def model(self) -> str:
        """The base model reference (the server's)."""
        return self.server.model

    def settings(self) -> list[Setting]:
        """Every combination of the varied values, the baseline (first values) first."""
        axes = [axis for axis, _values in self.vary]
        out = []
        for combo in itertools.product(*(values for _axis, values in self.vary)):
            chosen = dict(zip(axes, combo))
            out.append(Setting(
                name=" ".join(f"{a}={v}" for a, v in chosen.items()) or "base",
                model=model_ref(self.server.model, chosen.get("model")),
                backend=chosen.get("backend", self.server.backend),
                cache_type=chosen.get("kv", self.server.cache_type or DEFAULT_CACHE_TYPE),
                ngram=ON_OFF[chosen["ngram"]] if "ngram" in chosen else self.server.ngram,
                no_think=ON_OFF[chosen["no-think"]] if "no-think" in chosen else self.server.no_think))
        return out

    def rounds(self) -> list[int]:
        """The sample counts the sweep looks at: `limit` once, or with `until_decided` `step`
        doubled each round up to `limit`."""
        if not self.until_decided or self.step >= self.limit:
            return [self.limit]
        sizes = [self.step]
        while sizes[-1] * 2 < self.limit:
            sizes.append(sizes[-1] * 2)
        return sizes + [self.limit]


class SettingStatus(StrEnum):
    """Where one setting of a sweep stands (run.json `settings[].status`)."""

    PENDING = "pending"
    RUNNING = "running"  # its server runs, or it was cut short: a resume continues it
    DONE = "done"  # scored at its `samples`
    FAILED = "failed"  # its model, server or eval failed: `error` says why


@attrs.define
class SettingRun:
    """Where one setting stands (run.json): its state and the runs that hold its numbers."""

    setting: Setting
    status: SettingStatus = attrs.field(default=SettingStatus.PENDING,
                                        converter=states(SettingStatus, "setting status"))
    error: str = ""
    log_tail: str = ""
    model_path: str = ""
    model_sha256: str = ""
    server_argv: list[str] = attrs.field(factory=list)
    eval_run: str = ""
    samples: int = 0  # the eval limit this setting has been scored at
    bench_run: str = ""
    speed_error: str = ""


@attrs.frozen
class SettingScore:
    """One suite of one setting: the suite's own scores, and the mean per-sample outcome over
    the samples that ran, with its 95% interval. Failed samples are left out and counted."""

    suite: str
    status: str
    headline: dict
    outcome: Interval
    failed: int


@attrs.frozen
class Speed:
    """A setting's speed: llama-bench with its flags, and llama-server's own timings over the
    eval's requests (the only place speculation shows: llama-bench does not draft)."""

    source: str
    run: str
    pp: BenchResult | None
    tg: BenchResult | None
    server_prompt_ts: float | None
    server_gen_ts: float | None
    draft_acceptance: float | None  # accepted / drafted tokens, None without speculation


@attrs.frozen
class SpeedChange:
    test: str
    change_pct: float | None
    p_value: float | None
    verdict: str  # faster | slower | within noise | untested


@attrs.frozen
class SettingResult:
    setting: Setting
    status: SettingStatus = attrs.field(converter=states(SettingStatus, "setting status"))
    error: str
    server_argv: tuple[str, ...] = attrs.field(converter=tuple)
    model_sha256: str
    eval_run: str
    bench_run: str
    scores: tuple[SettingScore, ...] = attrs.field(converter=tuple)
    speed: Speed | None
    quality: tuple[Comparison, ...] = attrs.field(converter=tuple)
    speed_changes: tuple[SpeedChange, ...] = attrs.field(converter=tuple)


@attrs.define
class SweepRun(Run):
    """A sweep run directory (its spec a SweepSpec), analysed: one result per setting."""

    alpha: float = ALPHA
    results: list[SettingResult] = attrs.field(factory=list)


# -- the run directory ---------------------------------------------------------------------

KIND = "sweep"  # runs/sweep/


def resolve_sweep_run(ref: str | Path) -> Path:
    """A sweep from a path, a run directory name, or a tag (its latest run)."""
    try:
        return resolve_run_dir(KIND, ref)
    except HaloError:
        raise HaloError(f"no sweep '{ref}' (not a sweep directory, run name or tag)") from None


def _setting_run(data: dict) -> SettingRun:
    return SettingRun(**{**data, "setting": Setting(**data["setting"])})


class _State:
    """run.json (a RunState) with its spec and settings read: rewritten atomically after every
    change."""

    def __init__(self, run: RunState):
        self.run, self.path, self.data = run, run.path, run.data
        self.spec = SweepSpec.from_dict(run.data["spec"])
        self.data["spec"] = to_dict(self.spec)  # an older sweep's flat spec, rewritten
        self.settings = [_setting_run(s) for s in run.data["settings"]]

    def save(self) -> None:
        self.data["settings"] = to_dict(self.settings)
        self.run.save()


# -- running -------------------------------------------------------------------------------

def run_sweep(spec: SweepSpec | None = None, *, resume: str | Path | None = None,
              host: PluginHost | None = None, on_status: Callable[[str], None] | None = None,
              on_progress: Callable[[str, int, int], None] | None = None) -> SweepRun:
    """Run (or resume) a sweep and return it analysed.

    Bad input (an unknown suite, axis or value) raises a HaloError before anything starts; a
    setting that fails (its model, its server, its eval) is recorded and the sweep goes on.
    """
    host = host or get_host()
    say = on_status or (lambda _m: None)
    fields = {}
    if resume is None:
        if spec is None:
            raise HaloError("nothing to run: give a SweepSpec or a sweep to resume")
        settings = spec.settings()
        if len(settings) < 2:
            raise HaloError("a sweep needs two settings at least: --vary AXIS=A,B")
        fields = {"suites": resolve_suites(spec.suite, host), "settings": [SettingRun(s) for s in settings]}
    state = _State(open_run(KIND, spec, resume=resolve_sweep_run(resume) if resume is not None else None,
                            **fields))
    path = state.path
    say(f"sweep of {len(state.settings)} settings -> {path}")
    if resume is not None:
        done = sum(s.status == SettingStatus.DONE for s in state.settings)
        say(f"resuming: {done} of {len(state.settings)} settings scored already")
    rounds = state.spec.rounds()
    alpha = ALPHA / len(rounds)  # one look per round: Bonferroni keeps the error rate at ALPHA
    tried: set[int] = set()
    try:
        unsettled = list(range(1, len(state.settings)))
        for target in rounds:
            for index in _to_run(state, target, unsettled, tried):
                tried.add(index)
                _run_setting(state, index, target, host, say, on_progress)
            unsettled = [i for i in range(1, len(state.settings)) if not _settled(state, i, alpha)]
            if not unsettled:
                break
    except BaseException as exc:
        record_exit(exc, lambda status_, error: _finish(state, status_, error),
                    interrupted="interrupted; continue with halo sweep --resume " + path.name)
        raise
    failed = [s for s in state.settings if s.status == SettingStatus.FAILED]
    if failed:
        analysed = _finish(state, RunStatus.PARTIAL if len(failed) < len(state.settings) else RunStatus.FAILED,
                           f"{len(failed)} of {len(state.settings)} settings failed: "
                           f"{failed[0].setting.name}: {failed[0].error}")
    else:
        analysed = _finish(state, RunStatus.COMPLETE)
    return analysed or load_sweep_run(path)  # (it says why the analysis failed)


def _finish(state: _State, status: RunStatus, error: str = "") -> SweepRun | None:
    """End the sweep with `status`; its analysis (also written to results.json), or None when
    it cannot be made (it needs scipy; run.json alone is enough to resume)."""
    state.data["settings"] = to_dict(state.settings)
    state.run.finish(status, error)
    try:
        analysed = analyse(state.path)
    except HaloError:
        return None
    write_json(state.path / "results.json", analysed)
    return analysed


def _to_run(state: _State, target: int, unsettled: list[int], tried: set[int]) -> list[int]:
    """The settings to (re)run for `target` samples: the unsettled ones and the baseline they
    are compared with; a failed setting once per invocation."""
    first = target == state.spec.rounds()[0]
    return [index for index, run in enumerate(state.settings)
            if not (run.status == SettingStatus.DONE and run.samples >= target)
            and not (run.status == SettingStatus.FAILED and index in tried)
            and (first or index in unsettled or (index == 0 and bool(unsettled)))]


def _settled(state: _State, index: int, alpha: float) -> bool:
    """Nothing more to learn from more samples of this setting: it failed, the baseline
    failed, or every suite's paired test has decided."""
    run, base = state.settings[index], state.settings[0]
    if SettingStatus.FAILED in (run.status, base.status):
        return True
    if run.status != SettingStatus.DONE or base.status != SettingStatus.DONE:
        return False
    comparisons = _compare(base, run, alpha)
    return bool(comparisons) and all(c.paired.verdict != "no difference" for c in comparisons)


def _run_setting(state: _State, index: int, target: int, host: PluginHost, say, progress) -> None:
    run = state.settings[index]
    setting, spec = run.setting, state.spec
    say(f"[{index + 1}/{len(state.settings)}] {setting.name}: {target} samples per suite")
    run.status, run.error, run.log_tail = SettingStatus.RUNNING, "", ""
    state.save()

    def fail(error: str, log_tail: str = "") -> None:
        run.status, run.error, run.log_tail = SettingStatus.FAILED, error, log_tail
        state.save()
        say(f"{setting.name} failed: {error}")

    try:
        model = fetch_model(setting.model, host=host)
    except HaloError as exc:
        return fail(str(exc))
    if run.model_path != str(model.path) or not run.model_sha256:
        run.model_path = str(model.path)
        known = {s.model_path: s.model_sha256 for s in state.settings if s.model_sha256}
        if not (model.sha256 or known.get(run.model_path)):
            say(f"sha256 of {model.path}")
        run.model_sha256 = model.sha256 or known.get(run.model_path) or sha256_file(model.path)
        state.save()
    server_spec = attrs.evolve(
        spec.server, model=str(model.path), backend=setting.backend, port=free_port(),
        cache_type=setting.cache_type, ngram=setting.ngram, no_think=setting.no_think,
        extra=(*spec.server.extra, "--seed", str(spec.seed)))
    try:
        server = start_server(server_spec, host=host, backend_options=spec.backend_options, on_status=say)
    except HaloError as exc:
        return fail(str(exc), getattr(exc, "log_tail", ""))
    run.server_argv = list(server.info.argv)
    state.save()
    try:
        _evaluate(state, index, target, server.info.url, host, say, progress)
        # the endpoint bench (`halo bench serve`, halo_core/servebench.py) plugs in here, to
        # measure this running server, speculation included; until then llama-bench runs below,
        # once the server has stopped and given back its memory
    except HaloError as exc:
        return fail(f"eval: {exc}")
    finally:
        server.stop()
    if not run.bench_run or load_bench_run(Path(run.bench_run)).status != RunStatus.COMPLETE:
        _bench(state, index, model.path, host, say)
    run.status, run.samples = SettingStatus.DONE, target
    state.save()


def _evaluate(state: _State, index: int, target: int, url: str, host, say, progress) -> None:
    run, spec = state.settings[index], state.spec
    if run.eval_run and (Path(run.eval_run) / "run.json").is_file():
        run_eval(resume=run.eval_run, endpoint=url, limit=target, host=host, on_status=say,
                 on_progress=progress)
        return
    if not run.eval_run:
        run.eval_run = str(new_run_dir("eval", f"{state.path.name}-{index + 1}"))
        state.save()
    eval_spec = EvalSpec(suites=state.data["suites"], selection=spec.suite, limit=target,
                         concurrency=spec.server.parallel or 1, timeout=spec.timeout, max_tokens=spec.max_tokens)
    run_eval(eval_spec, endpoint=url, path=Path(run.eval_run), host=host, on_status=say,
             on_progress=progress)


def _bench(state: _State, index: int, model_path: Path, host, say) -> None:
    """llama-bench with the setting's model, backend, KV cache, threads and RPC workers (split
    as the server splits the model), on the backend options the server had."""
    run, spec = state.settings[index], state.spec
    kv = run.setting.cache_type
    bench_spec = BenchSpec(models=(str(model_path),), backends=(run.setting.backend,), pp=spec.pp,
                           tg=spec.tg, reps=spec.reps, threads=spec.server.threads, kv_types=((kv, kv),),
                           batch=spec.server.batch, ubatch=spec.server.ubatch, flash_attn=spec.server.flash_attn,
                           rpc=spec.server.rpc, tensor_split=spec.server.tensor_split,
                           tag=f"{state.path.name}-{index + 1}")
    try:
        bench = run_bench(bench_spec, resume_tag=True, host=host, backend_options=spec.backend_options,
                          on_status=say)
    except HaloError as exc:
        run.speed_error = str(exc)
    else:
        run.bench_run, run.speed_error = str(bench.path), bench.error
    state.save()


# -- analysis ------------------------------------------------------------------------------


def _compare(base: SettingRun, run: SettingRun, alpha: float) -> list[Comparison]:
    return compare_evals(Path(base.eval_run), Path(run.eval_run), alpha, base.setting.name)


def _server_timings(eval_run: str, suites: list[str]) -> tuple[float | None, float | None, float | None]:
    """(prompt t/s, generation t/s, draft acceptance) over the eval's replies, from the
    timings llama-server returns with each one (the last successful reply per sample)."""
    last = {}
    for row in read_jsonl(Path(eval_run) / "completions.jsonl"):
        if row.get("suite") in suites and not row.get("error") and row.get("timings"):
            last[(row["suite"], row["id"])] = row["timings"]
    totals = {k: sum(t.get(k) or 0 for t in last.values())
              for k in ("prompt_n", "prompt_ms", "predicted_n", "predicted_ms", "draft_n", "draft_n_accepted")}

    def rate(n, ms):
        return round(1000 * totals[n] / totals[ms], 2) if totals[ms] else None

    drafted = totals["draft_n"]
    return (rate("prompt_n", "prompt_ms"), rate("predicted_n", "predicted_ms"),
            round(totals["draft_n_accepted"] / drafted, 4) if drafted else None)


def _speed(run: SettingRun, suites: list[str]) -> Speed | None:
    pp = tg = None
    if run.bench_run:
        results = load_bench_run(Path(run.bench_run)).results
        pp = next((r for r in results if r.n_prompt and not r.n_gen), None)
        tg = next((r for r in results if r.n_gen and not r.n_prompt), None)
    timings = _server_timings(run.eval_run, suites) if run.eval_run else (None, None, None)
    if pp is None and tg is None and not any(timings):
        return None
    return Speed("llama-bench", run.bench_run, pp, tg, *timings)


def analyse(path: Path) -> SweepRun:
    """The sweep at `path` with every number computed from its eval and bench runs."""
    data = RunState.load(path, KIND).data
    spec = SweepSpec.from_dict(data["spec"])
    alpha = ALPHA / len(spec.rounds())
    runs = [_setting_run(s) for s in data["settings"]]
    suites = data["suites"]
    base = runs[0]
    base_speed = _speed(base, suites) if base.status == SettingStatus.DONE else None
    results = []
    for index, run in enumerate(runs):
        scores, quality, changes, speed = [], [], [], None
        if run.eval_run and (Path(run.eval_run) / "run.json").is_file():
            evaluation = load_eval_run(Path(run.eval_run))
            for suite in suites:
                samples = load_samples(Path(run.eval_run), suite)
                ran = [s.score for s in samples if not s.error]
                entry = evaluation.scores.get(suite)
                scores.append(SettingScore(suite, str(entry.status) if entry else "missing",
                                         dict(entry.scores) if entry else {},
                                         interval(ran), len(samples) - len(ran)))
            speed = base_speed if index == 0 and base_speed is not None else _speed(run, suites)
            if index and base.status == SettingStatus.DONE and run.status == SettingStatus.DONE:
                quality = _compare(base, run, alpha)
        if index and speed and base_speed:
            for name in ("pp", "tg"):
                before, after = getattr(base_speed, name), getattr(speed, name)
                if before and after:
                    changes.append(SpeedChange(after.test, *speed_change(before, after)))
        results.append(SettingResult(run.setting, run.status, run.error or run.speed_error,
                                     run.server_argv, run.model_sha256, run.eval_run, run.bench_run,
                                     scores, speed, quality, changes))
    return SweepRun(path, spec, data.get("status", RunStatus.RUNNING), data.get("error", ""), alpha, results)


def load_sweep_run(path: Path) -> SweepRun:
    """The sweep analysed (read only: run_sweep writes results.json when a sweep ends)."""
    return analyse(path)


# -- the report ----------------------------------------------------------------------------

def fmt(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals, '-' for none."""
    return "-" if value is None else f"{value:.{digits}f}"


def _chart(sweep: SweepRun, suite: str):
    """Quality (mean outcome, 95% interval) against generation speed, one point per setting."""
    from ..reporting import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    points = 0
    for index, result in enumerate(sweep.results):
        score = next((s for s in result.scores if s.suite == suite and s.outcome.n), None)
        speed = result.speed
        x = speed.tg.avg_ts if speed and speed.tg else (speed.server_gen_ts if speed else None)
        if score is None or x is None:
            continue
        o = score.outcome
        low, high = (o.low, o.high) if o.low is not None else (o.mean, o.mean)
        ax.errorbar([x], [o.mean], yerr=[[o.mean - low], [high - o.mean]], marker="s" if index == 0 else "o",
                    capsize=4, label=result.setting.name + (" (baseline)" if index == 0 else ""))
        points += 1
    if not points:
        plt.close(fig)
        return None
    ax.set_xlabel("generation t/s (llama-bench)")
    ax.set_ylabel(f"{suite}: mean per-sample score")
    ax.set_title(f"{suite}: quality vs speed per setting (95% intervals)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _rows(sweep: SweepRun) -> str:
    head = ("setting", "status", "suite", "score", "95% interval", "n", "failed", "Δ vs baseline",
            "Δ interval", "test", "p", "verdict", "pp t/s", "tg t/s", "server tg t/s", "draft accepted")
    rows = []
    for result in sweep.results:
        speed = result.speed
        by_suite = {c.suite: c for c in result.quality}
        for score in result.scores or [None]:
            c = by_suite.get(score.suite) if score else None
            o = score.outcome if score else None
            rows.append([
                result.setting.name, result.status, score.suite if score else "-",
                fmt(o and o.mean), f"{fmt(o and o.low)} – {fmt(o and o.high)}" if o else "-",
                str(o.n) if o else "-", str(score.failed) if score else "-",
                fmt(c and c.paired.delta), f"{fmt(c and c.paired.low)} – {fmt(c and c.paired.high)}" if c else "-",
                c.paired.test if c else "-", fmt(c and c.paired.p_value, 4), c.paired.verdict if c else "-",
                fmt(speed and speed.pp and speed.pp.avg_ts, 2), fmt(speed and speed.tg and speed.tg.avg_ts, 2),
                fmt(speed and speed.server_gen_ts, 2), fmt(speed and speed.draft_acceptance, 3)])
    from ..reporting import html_table

    return html_table("settings", list(head), rows)


def write_report(sweep: SweepRun, out_dir: Path | None = None) -> Path:
    """index.html (self-contained, charts inline as SVG) and a PNG per chart; returns the page."""
    from ..reporting import STYLE, figure

    out_dir = out_dir or sweep.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    suites = list(dict.fromkeys(s.suite for r in sweep.results for s in r.scores))
    figures = [figure(out_dir, f"quality-speed-{safe_name(suite)}", f"{suite}: quality vs speed", fig)
               for suite in suites if (fig := _chart(sweep, suite)) is not None]
    spec = sweep.spec
    argv = "".join(f"<li><b>{html.escape(r.setting.name)}</b>: <code>{html.escape(' '.join(r.server_argv))}"
                   f"</code> · model sha256 <code>{html.escape(r.model_sha256 or '-')}</code></li>"
                   for r in sweep.results)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>halo sweep report</title>"
            f"<style>{STYLE}</style></head><body><h1>halo sweep report</h1>"
            f"<p>{html.escape(sweep.path.name)}: {html.escape(str(sweep.status))} · halo {__version__} · "
            f"{html.escape(spec.model)} · suite {html.escape(spec.suite)} · up to {spec.limit} samples · "
            f"seed {spec.seed} · paired tests at α = {sweep.alpha:g}</p>"
            + "<h2>Charts</h2>" + "".join(figures)
            + "<h2>Settings</h2>" + _rows(sweep)
            + f"<h2>Server commands</h2><ul>{argv}</ul></body></html>")
    write_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"


__all__ = ["AXES", "Comparison", "Setting", "SettingStatus", "SweepSpec", "SweepRun", "SettingResult", "analyse",
           "compare_evals", "load_sweep_run", "model_ref", "parse_vary", "resolve_sweep_run",
           "run_sweep", "write_report"]
