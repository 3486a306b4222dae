"""Eval runs: presets, the run directory, resume, list/show/compare.

A run directory, $HALO_HOME/runs/eval/<suite>-<model>-<timestamp>/:

  run.json          spec (suites, endpoint, model, limit, concurrency, datasets), status
                    (running | complete | partial | failed | interrupted), error, resume history
  metadata.json     endpoint, detection probes, server /props, halo and framework versions
  completions.jsonl every model reply as it arrives (suite, id, content or error, attempts):
                    what --resume reads, so a finished request is never sent twice
  scores.json       per suite: status, headline scores in [0, 1], sample counts, version
  <suite>/samples.jsonl  one scored record per sample (failed ones with their error)
  <suite>/          the framework's own files (evalplus results, inspect .eval logs)
  metrics.csv       hardware metrics sampled during the run

Presets are data: configs/eval-presets.toml. A suite joins a preset by naming it in its
`presets` attribute; `full` is every registered suite.
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import attrs

from . import __version__
from .chat import ChatClient, EvalContext
from .endpoints import Probe, require, server_props, slot_count
from .errors import HaloError, Unavailable
from .evalkit import dist_version
from .interfaces import EvalSuite
from .metrics import MetricsSampler
from .plugins import PluginHost, get_host
from .records import Endpoint, EvalResult, EvalSample
from .runs import RUN_NAME, read_jsonl
from .store import append_line, halo_home, new_run_dir, to_json, write_json

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

PRESETS_FILE = Path(__file__).with_name("eval-presets.toml")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


@attrs.define
class EvalRun:
    path: Path
    spec: EvalSpec
    status: str = "running"
    error: str = ""
    endpoint: dict = attrs.field(factory=dict)
    scores: dict = attrs.field(factory=dict)  # suite -> {"status", "scores", ...}


def eval_root() -> Path:
    return halo_home() / "runs" / "eval"


def list_runs() -> list[Path]:
    root = eval_root()
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return sorted(runs, key=lambda p: (m["stamp"] if (m := RUN_NAME.match(p.name)) else "", p.name))


def resolve_run(ref: str | Path) -> Path:
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        return path
    if (eval_root() / str(ref) / "run.json").is_file():
        return eval_root() / str(ref)
    raise HaloError(f"no eval run '{ref}' (not a run directory or name; see `halo eval list`)")


def load_run(path: Path) -> EvalRun:
    try:
        state = json.loads((path / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise HaloError(f"{path} is not an eval run (no readable run.json)") from exc
    scores = {}
    if (path / "scores.json").is_file():
        scores = json.loads((path / "scores.json").read_text())
    spec = EvalSpec(**{k: v for k, v in state["spec"].items()
                       if k in {a.name for a in attrs.fields(EvalSpec)}})
    return EvalRun(path, spec, state.get("status", "?"), state.get("error", ""),
                   state.get("endpoint", {}), scores)


def load_samples(path: Path, suite: str) -> list[EvalSample]:
    names = {a.name for a in attrs.fields(EvalSample)}
    return [EvalSample(**{k: v for k, v in row.items() if k in names})
            for row in read_jsonl(path / safe_suite(suite) / "samples.jsonl")]


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


def _summary(result: EvalResult) -> dict:
    failed = sum(1 for s in result.samples if s.error)
    return {"status": "complete", "scores": {k: float(v) for k, v in result.scores.items()},
            "samples": len(result.samples), "passed": sum(1 for s in result.samples if s.passed),
            "failed": failed, "framework_version": result.framework_version}


def run_eval(spec: EvalSpec | None = None, *, endpoint: str | None = None, model: str | None = None,
             resume: str | Path | None = None, limit: int | None = None, path: Path | None = None,
             host: PluginHost | None = None, status: Callable[[str], None] | None = None,
             progress: Callable[[str, int, int], None] | None = None) -> EvalRun:
    """Run (or resume) the suites of `spec` against the detected endpoint.

    A resumed run reuses its saved spec and endpoint, sends only the requests that have no
    successful reply in completions.jsonl, and skips suites already scored. `limit` moves a
    resumed run's limit: its suites are scored again over that many samples, the replies
    already made reused. `path` is an empty directory for a new run (default: a new one
    under runs/eval).
    """
    host = host or get_host()
    say = status or (lambda _m: None)
    state: dict
    if resume is not None:
        path = resolve_run(resume)
        previous = load_run(path)
        spec = previous.spec
        if limit is not None:
            spec = attrs.evolve(spec, limit=limit)
        endpoint = endpoint or previous.endpoint.get("base_url")
        model = model or previous.endpoint.get("model")
        state = json.loads((path / "run.json").read_text())
    if spec is None:
        raise HaloError("nothing to run: give an EvalSpec or a run to resume")
    found, probes = require(endpoint, model)
    for probe in probes:
        say(f"{'found' if probe.ok else 'no server at'} {probe.url} ({probe.kind}: {probe.detail})")
    suites, skipped = _check(list(spec.suites), host)
    props = server_props(found.base_url)
    concurrency = spec.concurrency or slot_count(props) or 1

    if resume is None:
        tag = f"{safe_suite(spec.selection or '+'.join(spec.suites))}-{found.model.rsplit('/', 1)[-1]}"
        path = path or new_run_dir("eval", tag.removesuffix(".gguf"))
        state = {"spec": json.loads(to_json(spec)), "status": "running", "error": "",
                 "endpoint": json.loads(to_json(found)), "started_at": _now(),
                 "finished_at": None, "resumed_at": []}
    else:
        state.update(status="running", error="", finished_at=None, spec=json.loads(to_json(spec)))
        state.setdefault("resumed_at", []).append(_now())
    run = load_run(path) if resume is not None else EvalRun(path, spec, endpoint=state["endpoint"])
    run.spec = spec
    write_json(path / "run.json", state)
    write_json(path / "metadata.json", {
        "endpoint": found, "probes": probes, "props": props, "concurrency": concurrency,
        "halo_version": __version__, "python": sys.version.split()[0],
        "frameworks": framework_versions(suites), "skipped": skipped})
    for name, why in skipped.items():
        say(f"skipping {name}: {why}")
        run.scores[name] = {"status": "skipped", "error": why, "scores": {}}
    say(f"evaluating {found.model} at {found.base_url}: {', '.join(s.name for s in suites)} "
        f"(concurrency {concurrency}) -> {path}")
    client = ChatClient(found, concurrency=concurrency, timeout=spec.timeout, retries=spec.retries,
                        journal=path / "completions.jsonl", progress=progress)

    def finish(status_: str, error: str = "") -> None:
        run.status, run.error = status_, error
        state.update(status=status_, error=error, finished_at=_now())
        write_json(path / "scores.json", run.scores)
        write_json(path / "run.json", state)

    try:
        with MetricsSampler(path / "metrics.csv"):
            for suite in suites:
                done = run.scores.get(suite.name, {})
                if done.get("status") == "complete" and done.get("limit", spec.limit) == spec.limit:
                    say(f"{suite.name}: already scored, skipped")
                    continue
                _run_suite(run, suite, found, client, spec, say)
                write_json(path / "scores.json", run.scores)
    except KeyboardInterrupt:
        finish("interrupted", "interrupted by the user; continue with --resume")
        raise
    except BaseException as exc:
        finish("failed", str(exc) if isinstance(exc, HaloError) else f"{type(exc).__name__}: {exc}")
        raise
    failed = [n for n, s in run.scores.items() if s.get("status") == "failed"]
    if failed:
        finish("partial" if len(failed) < len(run.scores) else "failed",
               f"suite {failed[0]} failed: {run.scores[failed[0]].get('error', '')}")
    else:
        finish("complete")
    return run


def _run_suite(run: EvalRun, suite: EvalSuite, endpoint: Endpoint, client: ChatClient,
               spec: EvalSpec, say: Callable[[str], None]) -> None:
    workdir = run.path / safe_suite(suite.name)
    workdir.mkdir(exist_ok=True)
    context = EvalContext(suite.name, client, dataset=spec.datasets.get(suite.name),
                          max_tokens=spec.max_tokens, log=say)
    started = time.monotonic()
    try:
        result = suite.run(endpoint, limit=spec.limit, workdir=workdir, context=context)
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as exc:  # one suite's failure is recorded; the others still run
        message = str(exc) if isinstance(exc, HaloError) else f"{type(exc).__name__}: {exc}"
        run.scores[suite.name] = {"status": "failed", "error": message, "scores": {}}
        say(f"{suite.name} failed: {message}")
        return
    samples_file = workdir / "samples.jsonl"
    samples_file.unlink(missing_ok=True)
    for sample in result.samples:
        append_line(samples_file, json.dumps(json.loads(to_json(sample))))
    run.scores[suite.name] = {**_summary(result), "limit": spec.limit,
                              "seconds": round(time.monotonic() - started, 1),
                              "generation_seconds": round(client.wall.get(suite.name, 0.0), 2)}
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.scores.items())
    say(f"{suite.name}: {shown} ({len(result.samples)} samples)")


# -- reading ---------------------------------------------------------------------------------

def headline(scores: dict) -> float | None:
    """A suite's first score (its headline number)."""
    values = list((scores or {}).get("scores", {}).values())
    return float(values[0]) if values else None


def compare(paths: list[Path]) -> list[dict]:
    """One row per suite: the headline score of each run (None where it did not run)."""
    runs = [load_run(p) for p in paths]
    suites = list(dict.fromkeys(s for r in runs for s in r.scores))
    return [{"suite": s, "runs": {r.path.name: headline(r.scores.get(s, {})) for r in runs}}
            for s in suites]


__all__ = ["EvalRun", "EvalSpec", "Probe", "compare", "describe_suites", "list_runs", "load_run", "load_samples",
           "presets", "resolve_run", "resolve_suites", "run_eval"]
