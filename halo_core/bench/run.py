"""`halo bench run` as a library call: the bench matrix, its resumable execution, and the
records it streams into the run directory.

A bench run directory, $HALO_HOME/runs/bench/<tag>-<timestamp>/ (runs.py finds it):

  run.json       spec, status (a RunStatus), error, every command run, resume history
  system.json    machine and backend provenance
  results.jsonl  one line per finished or failed cell, appended and fsynced as it happens:
                 the source of truth, and what a resumed run reads
  results.json   the finished cells as one JSON array, rewritten atomically after each cell
  raw.jsonl      llama-bench's own JSONL records, as it printed them
  bench.log      llama-bench's stderr, one header line per process
  metrics.csv    hardware metrics sampled during the run
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Callable, Mapping

import attrs

from ..errors import HaloError
from ..machine.hostfacts import system_state
from ..machine.bandwidth import roofline_bandwidth, roofline_pct
from ..interfaces import Backend
from ..llama.flags import BenchParams, bench_argv, bench_test_name, parse_bench_line, probe_flags
from ..machine.metrics import MetricsSampler
from ..models.resolve import fetch_model
from ..plugins import PluginHost, get_host
from ..records import (
    BenchGroup, BenchResult, BenchRun, BenchSpec, FailedCell, LocalModel, RunStatus,
)
from ..llama.rpc import check_workers, describe, down_workers
from ..runner import Process, describe_exit
from .. import runs
from ..runs import RunState, now, read_jsonl
from ..llama.process import record_bench
from ..store import append_line, from_dict, to_dict, write_json

LONG_CONTEXT_PROMPT = 2048
KIND = "bench"  # runs/bench/


def list_bench_runs() -> list[Path]:
    """Every bench run folder under $HALO_HOME/runs/bench/, oldest first."""
    return runs.list_runs(KIND)


def resolve_bench_run(ref: str | Path) -> Path:
    """A bench run folder from a path, its name or a tag (the tag's latest run)."""
    return runs.resolve_run(KIND, ref)


# -- reading runs ----------------------------------------------------------------------------

def _result(row: dict) -> BenchResult:
    result = from_dict(BenchResult, row)
    if result.group is None and result.cell.count("|") >= 2:  # written before results kept it
        result = attrs.evolve(result, group=result.cell.split("|")[2])
    return result


def load_cells(path: Path) -> tuple[list[BenchResult], list[FailedCell]]:
    """Finished results and still-failed cells of a run, from results.jsonl."""
    results: dict[str, BenchResult] = {}
    failures: dict[str, FailedCell] = {}
    for row in read_jsonl(path / "results.jsonl"):
        if row.get("status") == "ok":
            result = _result(row["result"])
            results.setdefault(result.cell or f"#{len(results)}", result)
            failures.pop(result.cell, None)
        elif row.get("status") == "failed":
            failure = from_dict(FailedCell, row["failure"])
            if failure.cell not in results:
                failures[failure.cell] = failure
    if not results and not (path / "results.jsonl").exists() and (path / "results.json").exists():
        # runs written before results.jsonl existed
        results = {str(i): _result(r) for i, r in enumerate(json.loads((path / "results.json").read_text()))}
    return list(results.values()), list(failures.values())


def load_bench_run(path: Path) -> BenchRun:
    """A bench run directory and what it holds."""
    state = RunState.load(path, KIND)
    results, failures = load_cells(path)
    return BenchRun(path=path, spec=from_dict(BenchSpec, state.data["spec"]), status=state.status,
                    error=state.error, results=results, failures=failures)


def write_results_snapshot(run: BenchRun) -> None:
    write_json(run.path / "results.json", run.results)


# -- the matrix ------------------------------------------------------------------------------


def ctx_prompt_for(spec: BenchSpec, depth: int) -> int:
    """The long-context test's prompt: 2048 tokens, raised to depth/16 above 32K depth so the
    prompt stays a meaningful share of the context (as the seed's baseline does)."""
    if spec.ctx_prompt:
        return spec.ctx_prompt
    return max(LONG_CONTEXT_PROMPT, depth // 16) if depth > 32768 else LONG_CONTEXT_PROMPT


@attrs.frozen
class Group:
    """One llama-bench process: a model on a backend, one kv pair, one kind of test, and the
    values llama-bench sweeps itself (depths)."""

    model: LocalModel
    backend: Backend = attrs.field(eq=False)
    kind: BenchGroup  # the standard pp/tg test at depth 0, or long context at each depth
    pp: int
    tg: int
    depths: tuple[int, ...]
    reps: int
    type_k: str
    type_v: str
    batch: int | None
    ubatch: int | None

    def cell(self, test: str) -> str:
        return "|".join([self.model.name, self.backend.name, self.kind, f"{self.type_k}:{self.type_v}",
                         f"b{self.batch or ''}", f"ub{self.ubatch or ''}", test])

    def tests(self) -> list[tuple[str, int, int, int]]:
        """(name, n_prompt, n_gen, n_depth) of every test this group asks for."""
        out = []
        for depth in self.depths or (0,):
            if self.pp:
                out.append((bench_test_name(self.pp, 0, depth), self.pp, 0, depth))
            if self.tg:
                out.append((bench_test_name(0, self.tg, depth), 0, self.tg, depth))
        return out

    def cells(self) -> list[str]:
        return [self.cell(name) for name, *_ in self.tests()]

    def narrowed(self, done: set[str]) -> "Group | None":
        """This group cut down to what is not done yet, or None when all is done."""
        missing = [t for t in self.tests() if self.cell(t[0]) not in done]
        if not missing:
            return None
        return attrs.evolve(self, pp=self.pp if any(t[1] for t in missing) else 0,
                            tg=self.tg if any(t[2] for t in missing) else 0,
                            depths=tuple(sorted({t[3] for t in missing})) if self.depths else ())

    @property
    def kv(self) -> str:
        return self.type_k if self.type_k == self.type_v else f"{self.type_k}/{self.type_v}"

    def describe(self) -> str:
        extra = f" kv {self.kv}" if self.kv != "f16" else ""
        extra += f" b{self.batch}" if self.batch else ""
        extra += f" ub{self.ubatch}" if self.ubatch and self.kind == BenchGroup.STD else ""
        tests = ", ".join(name for name, *_ in self.tests())
        return f"{self.model.name} on {self.backend.name}{extra}: {tests}"


def plan(spec: BenchSpec, models: list[LocalModel], backends: list[Backend]) -> list[Group]:
    """Every llama-bench process of the matrix, in the order they run."""
    groups = []
    for model in models:
        for backend in backends:
            for type_k, type_v in spec.kv_types:
                common = dict(model=model, backend=backend, type_k=type_k, type_v=type_v,
                              batch=spec.batch)
                if spec.standard and (spec.pp or spec.tg):
                    groups.append(Group(kind=BenchGroup.STD, pp=spec.pp, tg=spec.tg, depths=(),
                                        reps=spec.reps, ubatch=spec.ubatch, **common))
                by_prompt: dict[int, list[int]] = {}
                for depth in spec.depths:
                    by_prompt.setdefault(ctx_prompt_for(spec, depth), []).append(depth)
                for prompt, depths in by_prompt.items():
                    groups.append(Group(kind=BenchGroup.CTX, pp=prompt, tg=spec.tg, depths=tuple(depths),
                                        reps=spec.ctx_reps,
                                        ubatch=spec.ubatch or backend.defaults().ubatch, **common))
    return groups


class _Recorder:
    """Writes a run's state as it changes: run.json atomically, results.jsonl appended."""

    def __init__(self, run: BenchRun, state: RunState):
        self.run, self.state = run, state
        self.done = {r.cell for r in run.results}
        self.state.save()

    def command(self, group: Group, argv: list[str], env: dict) -> None:
        self.state.data["commands"].append({"group": group.describe(), "argv": argv, "env": env,
                                            "started_at": now()})
        self.state.save()

    def result(self, raw_line: str, result: BenchResult) -> None:
        append_line(self.run.path / "raw.jsonl", raw_line)
        append_line(self.run.path / "results.jsonl", json.dumps(
            {"status": "ok", "result": to_dict(result)}))
        self.run.results.append(result)
        self.run.failures = [f for f in self.run.failures if f.cell != result.cell]
        self.done.add(result.cell)
        write_results_snapshot(self.run)

    def failure(self, failure: FailedCell) -> None:
        append_line(self.run.path / "results.jsonl", json.dumps(
            {"status": "failed", "failure": to_dict(failure)}))
        self.run.failures.append(failure)

    def finish(self, status: RunStatus, error: str = "") -> None:
        self.run.status, self.run.error = status, error
        self.state.finish(status, error)


def _open_run(spec: BenchSpec, resume: str | Path | None, resume_tag: bool) -> tuple[BenchRun, RunState]:
    """The run (runs.open_run) with what it already holds; failed cells are tried again."""
    state = runs.open_run(KIND, spec, resume=resume, resume_tag=resume_tag, models=[], commands=[])
    run = BenchRun(path=state.path, spec=from_dict(BenchSpec, state.data["spec"]))
    if state.resumed:
        run.results, _failed = load_cells(state.path)
    write_results_snapshot(run)
    return run, state


def run_bench(spec: BenchSpec | None = None, *, resume: str | Path | None = None,
              resume_tag: bool = False, host: PluginHost | None = None,
              backend_options: Mapping[str, str] | None = None, root: Path = Path("/"),
              metrics_interval: float = 1.0,
              on_result: Callable[[BenchResult], None] | None = None,
              on_failure: Callable[[FailedCell], None] | None = None,
              on_status: Callable[[str], None] | None = None, record: bool = True) -> BenchRun:
    """Run (or resume) the bench matrix of `spec` and return the run.

    `resume` names a run directory to continue (its saved spec is used); `resume_tag` continues
    the latest run with the same tag when its spec is the same. Finished cells are skipped.
    A cell whose llama-bench fails is recorded in `run.failures` and the run goes on; bad
    input (unknown backend or model, llama.cpp missing) raises a HaloError before anything runs.
    `backend_options` go to the backends that take them (`Backend.configure`). `record=False`
    writes no bench pid file, so `halo flush` leaves the bench alone (halo tune's own).
    """
    host = host or get_host()
    status = on_status or (lambda _msg: None)
    if resume is not None:
        resume = resolve_bench_run(resume)
        spec = load_bench_run(resume).spec
    if spec is None:
        raise HaloError("nothing to run: give a BenchSpec or a run to resume")
    backends = host.available_backends(spec.backends, backend_options)
    workers = []
    if spec.rpc:
        status(f"checking RPC workers {','.join(spec.rpc)}")
        workers = check_workers(spec.rpc, [(b.command("llama-bench"), "llama-bench") for b in backends])
    models = []
    for ref in spec.models:
        status(f"resolving model {ref}")
        models.append(fetch_model(ref, host=host))

    run, state = _open_run(spec, resume, resume_tag)
    state.data["models"] = to_dict(models)
    facts = None
    if not (run.path / "system.json").exists():
        extra = {"backends": {b.name: b.provenance() for b in backends}, **({"rpc": workers} if workers else {})}
        facts = _Facts(run.path / "system.json", root, extra)
    recorder = _Recorder(run, state)
    # the pid file `halo flush` stops benches by; a tune's own measurement has none (a flush
    # must not kill a transaction half-way)
    pid_file = record_bench(run.path, backends) if record else None
    bandwidth = roofline_bandwidth(status)
    groups = plan(run.spec, models, backends)
    todo = [g for g in (group.narrowed(recorder.done) for group in groups) if g is not None]
    if len(todo) < len(groups):
        status(f"resuming {run.path.name}: {len(groups) - len(todo)} of {len(groups)} groups already done")
    try:
        with MetricsSampler(run.path / "metrics.csv", root=root, interval=metrics_interval) as sampler:
            for index, group in enumerate(todo):
                if index and run.spec.cooldown:
                    status(f"cooling down {run.spec.cooldown:g}s")
                    time.sleep(run.spec.cooldown)
                _run_group(recorder, group, sampler, bandwidth, status, on_result, on_failure)
        if facts is not None:
            facts.wait(status)
    except BaseException as exc:
        if facts is not None:
            facts.wait(status)
        runs.record_exit(exc, recorder.finish)
        raise
    finally:
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    if run.failures:
        first = run.failures[0].error
        total = len(run.failures) + len(run.results)
        recorder.finish(RunStatus.PARTIAL if run.results else RunStatus.FAILED,
                        f"{len(run.failures)} of {total} cells failed: {first}")
    else:
        recorder.finish(RunStatus.COMPLETE)
    return run


class _Facts:
    """The machine's facts (system.json), gathered in a thread while llama-bench runs: on an
    NVIDIA host NVML's start-up alone is ~0.09 s, which would otherwise come before the first
    llama-bench (#24: halo's cost per run). `wait` writes the file; facts that cannot be read
    are written as their error, and the run's results stand."""

    def __init__(self, path: Path, root: Path, extra: dict):
        self.path, self.root, self.extra = path, root, extra
        self.system: dict | None = None
        self.error = ""
        self.thread = threading.Thread(target=self._gather, name="halo-facts", daemon=True)
        self.thread.start()

    def _gather(self) -> None:
        try:
            self.system = system_state(self.root)
        except Exception as exc:  # (a sysfs or NVML surprise must not cost the run its results)
            self.error = f"{type(exc).__name__}: {exc}"

    def wait(self, status) -> None:
        if self.path.exists():  # (written already)
            return
        self.thread.join()
        if self.error:
            status(f"machine facts could not be read: {self.error}")
        write_json(self.path, {**(self.system or {"error": self.error}), **self.extra})


def _log_tail(path: Path, offset: int, lines: int = 20) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(offset)
            text = fh.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _run_group(recorder: _Recorder, group: Group, sampler: MetricsSampler, bandwidth,
               status, on_result, on_failure) -> None:
    run = recorder.run
    backend, model = group.backend, group.model
    cmd = backend.command("llama-bench")
    flags = probe_flags(cmd, "llama-bench")
    params = BenchParams(backend.map_path(model.path), group.pp, group.tg, group.reps,
                         run.spec.threads, group.depths, group.type_k, group.type_v,
                         group.batch, group.ubatch, run.spec.rpc, run.spec.tensor_split, run.spec.flash_attn,
                         run.spec.n_gpu_layers)
    argv = bench_argv(cmd, flags, params, backend.defaults())
    pending = [c for c in group.cells() if c not in recorder.done]
    down = down_workers(run.spec.rpc) if run.spec.rpc else []
    if down:  # llama-bench would abort at once: fail the group's cells, the run goes on
        _fail(recorder, group, pending, describe(down[0]), "", on_failure)
        return
    # an abort (a lost RPC worker, say) runs gdb for a backtrace, which prints on stdout: the JSONL
    env = {"GGML_NO_BACKTRACE": "1", **cmd.env}
    recorder.command(group, argv, env)
    log_path = run.path / "bench.log"
    with open(log_path, "a") as log:
        log.write(f"=== {now()} {' '.join(argv)}\n")
    offset = log_path.stat().st_size
    where = f"{model.name} on {backend.name}"
    status(f"llama-bench: {group.describe()}")
    error = ""
    window_start = time.time()
    with Process(argv, env=env, log_path=log_path) as proc:
        for line in proc.lines():
            if not line.strip():
                continue
            try:
                result = parse_bench_line(line, model=model.name, backend=backend.name)
            except ValueError as exc:
                error = f"llama-bench printed output halo cannot parse ({where}): {exc}"
                break
            ended = time.time()
            cell = group.cell(result.test)
            if cell in recorder.done:  # a resumed group re-ran a finished cell: keep the first
                window_start = ended
                continue
            power = sampler.average(sampler.power_column, window_start, ended) if sampler.power_column else None
            result = attrs.evolve(
                result, cell=cell, group=group.kind, power_w=power,
                tokens_per_joule=round(result.avg_ts / power, 3) if power else None,
                bandwidth_pct=roofline_pct(result.avg_ts, result.model_size, bandwidth)
                if result.n_gen and not result.n_prompt else None,
                synthetic=model.synthetic)
            recorder.result(line, result)
            if cell in pending:
                pending.remove(cell)
            if on_result:
                on_result(result)
            status(f"llama-bench: {where}: {result.test} done")
            window_start = ended
        else:
            code = proc.wait()
            if code != 0:
                tail = _log_tail(log_path, offset)
                last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "no output")
                error = f"llama-bench {describe_exit(code)} ({where}): {last.strip()}"
            elif pending:
                error = f"llama-bench finished without reporting these tests ({where})"
    if error or pending:
        lost = down_workers(run.spec.rpc) if run.spec.rpc else []
        if lost:  # name the worker that died under llama-bench
            error = f"{error or 'llama-bench did not report this test'}; {describe(lost[0])}"
        _fail(recorder, group, pending, error or "llama-bench did not report this test",
              _log_tail(log_path, offset), on_failure)


def _fail(recorder: _Recorder, group: Group, cells: list[str], error: str, tail: str,
          on_failure) -> None:
    names = {group.cell(name): name for name, *_ in group.tests()}
    for cell in cells:
        failure = FailedCell(cell, group.model.name, group.backend.name, names.get(cell, cell), group.kv,
                             error, tail)
        recorder.failure(failure)
        if on_failure:
            on_failure(failure)
