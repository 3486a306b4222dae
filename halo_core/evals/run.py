"""Eval runs: presets, the run directory, resume, list/show/compare.

A run directory, $HALO_HOME/runs/eval/<suite>-<model>-<timestamp>/:

  run.json          spec (suites, endpoint, model, limit, concurrency, datasets), status
                    (a RunStatus), error, resume history (runs.RunState)
  metadata.json     endpoint, detection probes, server /props, halo and framework versions
  completions.jsonl every model reply as it arrives (suite, id, content or error, attempts):
                    what --resume reads, so a finished request is never sent twice
  scores.json       per suite, a SuiteScore: status, headline scores in [0, 1] over the
                    samples that ran, how many ran, passed and failed, versions, times
  <suite>/samples.jsonl  one record per sample (those that could not run with their error)
  <suite>/          the framework's own files (evalplus results, inspect .eval logs)
  metrics.csv       hardware metrics sampled during the run

Presets are data: configs/eval-presets.toml. A suite joins a preset by naming it in its
`presets` attribute; `full` is every registered suite.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Callable

import attrs

from .. import __version__
from ..chat import ChatClient, EvalContext, RequestsFailed, describe_failures
from ..llama.endpoints import Probe, require, server_props, slot_count
from ..errors import HaloError, Unavailable
from .kit import dist_version
from ..models.header import is_synthetic
from ..interfaces import EvalSuite
from ..machine.metrics import MetricsSampler
from ..plugins import PluginHost, get_host
from ..records import Endpoint, EvalSample, Run, RunStatus, SuiteScore, SuiteStatus
from .. import runs
from ..runs import RunState, read_jsonl, resolve_run
from ..store import append_line, from_dict, to_dict, write_json

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PRESETS_FILE = Path(__file__).with_name("eval-presets.toml")


# -- presets ---------------------------------------------------------------------------------

def presets(host: PluginHost | None = None) -> dict[str, list[str]]:
    """Preset name -> suite names: configs/eval-presets.toml plus every suite's `presets`."""
    host = host or get_host()
    data = tomllib.loads(PRESETS_FILE.read_text())
    table: dict[str, list[str]] = {k: list(v) for k, v in data.get("presets", {}).items()}
    suites = host.all("eval_suites")
    for name, suite in sorted(suites.items()):
        for preset in getattr(suite, "presets", ()) or ():
            members = table.setdefault(preset, [])
            if name not in members:
                members.append(name)
    for name, members in table.items():
        if "*" in members:
            table[name] = sorted(suites)
    return table


def resolve_suites(selection: str, host: PluginHost | None = None) -> list[str]:
    """'quick', 'humaneval+', 'quick,bfcl' -> suite names, each once, in order."""
    host = host or get_host()
    table, known = presets(host), host.all("eval_suites")
    names: list[str] = []
    for item in (s.strip() for s in selection.split(",") if s.strip()):
        if item in table:
            names += table[item]  # members no plugin registers are skipped later, with the reason
        elif item in known:
            names.append(item)
        else:
            raise HaloError(f"unknown suite or preset '{item}' (presets: {', '.join(sorted(table))}; "
                            f"suites: {', '.join(sorted(known)) or 'none registered'})")
    return list(dict.fromkeys(names))


def describe_suites(host: PluginHost | None = None) -> list[dict]:
    """Every registered suite: availability, presets it is in, data, framework versions."""
    host = host or get_host()
    table = presets(host)
    rows = []
    for name, suite in sorted(host.all("eval_suites").items()):
        availability = suite.availability()
        rows.append({"name": name, "description": suite.description,
                     "available": availability.available,
                     "reason": "" if availability.available else str(availability),
                     "presets": sorted(p for p, members in table.items() if name in members),
                     "data": suite.data,
                     "frameworks": framework_versions([suite])})
    return rows


# -- records ---------------------------------------------------------------------------------

KIND = "eval"  # runs/eval/


def list_eval_runs() -> list[Path]:
    """Every eval run folder under $HALO_HOME/runs/eval/, oldest first."""
    return runs.list_runs(KIND)


def resolve_eval_run(ref: str | Path) -> Path:
    """An eval run folder from its name, a unique prefix, "latest" or a path."""
    return runs.resolve_run(KIND, ref)


@attrs.frozen
class EvalSpec:
    """What `halo eval` was asked to run."""

    suites: tuple[str, ...] = attrs.field(converter=tuple)
    selection: str = ""
    limit: int | None = None
    concurrency: int | None = None  # None: the server's slot count, else 1
    timeout: float = 300.0
    retries: int = 3
    max_tokens: int | None = None
    datasets: dict = attrs.field(factory=dict)  # suite -> path or word
    unsafe_local_exec: bool = False  # score model-written code without a sandbox where none is here


@attrs.define
class EvalRun(Run):
    """An eval run directory (its spec an EvalSpec), its endpoint and each suite's score."""

    endpoint: dict = attrs.field(factory=dict)
    scores: dict[str, SuiteScore] = attrs.field(factory=dict)


def load_eval_run(path: Path) -> EvalRun:
    state = RunState.load(path, KIND)
    scores = {}
    if (path / "scores.json").is_file():
        scores = {suite: from_dict(SuiteScore, entry)
                  for suite, entry in json.loads((path / "scores.json").read_text()).items()}
    return EvalRun(path, from_dict(EvalSpec, state.data["spec"]), state.status, state.error,
                   state.data.get("endpoint", {}), scores)


def load_samples(path: Path, suite: str) -> list[EvalSample]:
    return [from_dict(EvalSample, row) for row in read_jsonl(path / safe_suite(suite) / "samples.jsonl")]


def safe_suite(name: str) -> str:
    return name.replace("+", "plus").replace("/", "_")


# -- running ---------------------------------------------------------------------------------

def framework_versions(suites: list[EvalSuite]) -> dict[str, str]:
    """Installed versions of the distributions the suites name in their `frameworks`."""
    dists = dict.fromkeys(d for suite in suites for d in suite.frameworks)
    return {d: v for d in dists if (v := dist_version(d))}


def _check(suites: list[str], host: PluginHost) -> tuple[list[EvalSuite], dict[str, str]]:
    known = host.all("eval_suites")
    ready, skipped = [], {}
    for name in suites:
        if name not in known:  # named by a preset, but no installed plugin provides it
            skipped[name] = f"no installed plugin registers the suite '{name}'"
            continue
        availability = known[name].availability()
        if availability.available:
            ready.append(known[name])
        else:
            skipped[name] = str(availability)
    if not ready:
        raise Unavailable("; ".join(f"suite '{n}' is unavailable: {why}" for n, why in skipped.items()))
    return ready, skipped


def run_eval(spec: EvalSpec | None = None, *, endpoint: str | None = None, model: str | None = None,
             resume: str | Path | None = None, limit: int | None = None, path: Path | None = None,
             host: PluginHost | None = None, on_status: Callable[[str], None] | None = None,
             on_progress: Callable[[str, int, int], None] | None = None,
             api_key: str | None = None) -> EvalRun:
    """Run (or resume) the suites of `spec` against the detected endpoint.

    A request that could not run (after its retries) is a failed sample, not a wrong answer:
    its suite is scored over the samples that ran and ends `partial`, and so does the run. A
    resumed run reuses its saved spec and endpoint, sends only the requests that have no
    successful reply in completions.jsonl, and skips the suites already complete. `limit` moves
    a resumed run's limit: its suites are scored again over that many samples, the replies
    already made reused. `path` is an empty directory for a new run (default: a new one under
    runs/eval). `api_key` is the server's bearer key: sent with every request, never saved
    (give it again to resume).
    """
    host = host or get_host()
    say = on_status or (lambda _m: None)
    if resume is not None:
        path = resolve_run(KIND, resume)
        previous = load_eval_run(path)
        spec = previous.spec
        if limit is not None:
            spec = attrs.evolve(spec, limit=limit)
        endpoint = endpoint or previous.endpoint.get("base_url")
        model = model or previous.endpoint.get("model")
    if spec is None:
        raise HaloError("nothing to run: give an EvalSpec or a run to resume")
    found, probes = require(endpoint, model, api_key=api_key)
    for probe in probes:
        say(f"{'found' if probe.ok else 'no server at'} {probe.url} ({probe.kind}: {probe.detail})")
    props = server_props(found.base_url, api_key=api_key)
    served = props.get("model_path")
    if isinstance(served, str) and served and is_synthetic(Path(served)):
        raise HaloError(f"the server at {found.base_url} serves {served}, a synthetic model "
                        "(random weights from `halo models synth`): its scores would mean "
                        "nothing; serve a real model to evaluate")
    suites, skipped = _check(list(spec.suites), host)
    concurrency = spec.concurrency or slot_count(props) or 1

    tag = f"{safe_suite(spec.selection or '+'.join(spec.suites))}-{found.model.rsplit('/', 1)[-1]}"
    state = runs.open_run(KIND, spec, resume=path if resume is not None else None, path=path,
                          tag=tag.removesuffix(".gguf"), endpoint=found)
    if state.resumed:
        run = attrs.evolve(previous, spec=spec, status=RunStatus.RUNNING, error="")
    else:
        run = EvalRun(state.path, spec, endpoint=state.data["endpoint"])
    path = state.path
    write_json(path / "metadata.json", {
        "endpoint": found, "probes": probes, "props": props, "concurrency": concurrency,
        "halo_version": __version__, "python": sys.version.split()[0],
        "frameworks": framework_versions(suites), "skipped": skipped})
    for name, why in skipped.items():
        say(f"skipping {name}: {why}")
        run.scores[name] = SuiteScore(SuiteStatus.SKIPPED, error=why)
    say(f"evaluating {found.model} at {found.base_url}: {', '.join(s.name for s in suites)} "
        f"(concurrency {concurrency}) -> {path}")
    client = ChatClient(found, concurrency=concurrency, timeout=spec.timeout, retries=spec.retries,
                        journal=path / "completions.jsonl", progress=on_progress)

    def finish(status_: RunStatus, error: str = "") -> None:
        run.status, run.error = status_, error
        write_json(path / "scores.json", run.scores)
        state.finish(status_, error)

    try:
        with MetricsSampler(path / "metrics.csv"):
            for suite in suites:
                done = run.scores.get(suite.name)
                if (done is not None and done.status == SuiteStatus.COMPLETE
                        and (done.limit if done.limit is not None else spec.limit) == spec.limit):
                    say(f"{suite.name}: already scored, skipped")
                    continue
                _run_suite(run, suite, found, client, spec, say)
                write_json(path / "scores.json", run.scores)
    except BaseException as exc:
        runs.record_exit(exc, finish, interrupted="interrupted by the user; continue with --resume")
        raise
    ran = {n: s for n, s in run.scores.items() if s.status != SuiteStatus.SKIPPED}
    short = [(n, s) for n, s in ran.items() if s.status != SuiteStatus.COMPLETE]
    if not short:
        finish(RunStatus.COMPLETE)
    else:
        name, score = short[0]
        every_failed = all(s.status == SuiteStatus.FAILED for s in ran.values())
        finish(RunStatus.FAILED if every_failed else RunStatus.PARTIAL,
               f"suite {name} {score.status}: {score.error}")
    return run


def _run_suite(run: EvalRun, suite: EvalSuite, endpoint: Endpoint, client: ChatClient,
               spec: EvalSpec, say: Callable[[str], None]) -> None:
    """Run one suite; record its score, with the samples that could not run counted beside it."""
    workdir = run.path / safe_suite(suite.name)
    workdir.mkdir(exist_ok=True)
    context = EvalContext(suite.name, client, dataset=spec.datasets.get(suite.name),
                          unsafe_local_exec=spec.unsafe_local_exec,
                          max_tokens=spec.max_tokens, log=say)
    started = time.monotonic()
    try:
        result = suite.run(endpoint, limit=spec.limit, workdir=workdir, context=context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one suite's failure is recorded; the others still run
        message = str(exc) if isinstance(exc, HaloError) else f"{type(exc).__name__}: {exc}"
        if context.failed and not isinstance(exc, RequestsFailed):
            message = f"{context.failures()}, and the suite failed without them: {message}"
        run.scores[suite.name] = SuiteScore(SuiteStatus.FAILED, error=message, failed=len(context.failed))
        say(f"{suite.name} failed: {message}")
        return
    samples = list(result.samples)
    returned = {s.id for s in samples}
    samples += [EvalSample(key, 0.0, False, error=error) for key, error in context.failed.items()
                if key not in returned]
    failed = {s.id: s.error for s in samples if s.error}
    scored = [s for s in samples if not s.error]
    samples_file = workdir / "samples.jsonl"
    samples_file.unlink(missing_ok=True)
    for sample in samples:
        append_line(samples_file, json.dumps(to_dict(sample)))
    run.scores[suite.name] = SuiteScore(
        SuiteStatus.PARTIAL if failed else SuiteStatus.COMPLETE,
        scores={k: float(v) for k, v in result.scores.items()}, samples=len(scored),
        passed=sum(1 for s in scored if s.passed), failed=len(failed),
        error=describe_failures(failed, len(samples)) if failed else "",
        framework_version=result.framework_version, seconds=round(time.monotonic() - started, 1),
        generation_seconds=round(client.wall.get(suite.name, 0.0), 2), limit=spec.limit)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
    say(f"{suite.name}: {shown} ({len(scored)} samples" + (f", {len(failed)} failed)" if failed else ")"))


# -- reading ---------------------------------------------------------------------------------

def compare_eval_runs(paths: list[Path]) -> list[dict]:
    """One row per suite: the headline score of each run (None where it did not run) and the
    samples that failed in it."""
    loaded = [load_eval_run(p) for p in paths]
    suites = list(dict.fromkeys(s for r in loaded for s in r.scores))
    return [{"suite": s, "runs": {r.path.name: r.scores[s].headline if s in r.scores else None
                                  for r in loaded},
             "failed": {r.path.name: r.scores[s].failed if s in r.scores else None for r in loaded}}
            for s in suites]


__all__ = ["KIND", "EvalRun", "EvalSpec", "Probe", "compare_eval_runs", "describe_suites", "load_eval_run",
           "load_samples", "presets", "resolve_suites", "run_eval"]
