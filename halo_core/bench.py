"""`halo bench run` as a library call: llama-bench per (model, backend), records streamed to disk.

Run directory ($HALO_HOME/runs/bench/<tag>-<timestamp>/):
  run.json      spec, status (running | complete | failed | interrupted), error, commands
  system.json   machine and backend provenance
  raw.jsonl     llama-bench's JSONL records, appended as each test finishes
  results.json  the parsed BenchResult records so far (rewritten atomically after each one)
  bench.log     llama-bench's stderr
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Callable

import attrs

from .errors import HaloError, ToolFailed, Unavailable
from .interfaces import Backend
from .llamacpp import BenchParams, bench_argv, parse_bench_line, probe_flags
from .models import fetch_model
from .plugins import PluginHost, get_host
from .records import BenchResult, BenchRun, BenchSpec, LocalModel
from .runner import Process, describe_exit, tail_of
from .store import append_line, new_run_dir, write_json
from .sysinfo import system_state


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class _RunWriter:
    """Keeps run.json and results.json in step with a BenchRun."""

    def __init__(self, run: BenchRun, models: list[LocalModel]):
        self.run = run
        self.state = {"spec": attrs.asdict(run.spec), "status": run.status, "error": "",
                      "started_at": _now(), "finished_at": None,
                      "models": [attrs.asdict(m) for m in models], "commands": []}
        write_json(run.path / "results.json", run.results)
        self.flush()

    def command(self, model: LocalModel, backend: str, argv: list[str], env: dict) -> None:
        self.state["commands"].append({"model": model.name, "backend": backend,
                                       "argv": argv, "env": env})
        self.flush()

    def result(self, result: BenchResult) -> None:
        self.run.results.append(result)
        write_json(self.run.path / "results.json", self.run.results)

    def finish(self, status: str, error: str = "") -> None:
        self.run.status, self.run.error = status, error
        self.state.update(status=status, error=error, finished_at=_now())
        self.flush()

    def flush(self) -> None:
        write_json(self.run.path / "run.json", self.state)


def _check_backends(spec: BenchSpec, host: PluginHost) -> list[Backend]:
    backends = [host.backend(name) for name in spec.backends]
    for backend in backends:
        availability = backend.availability()
        if not availability.available:
            raise Unavailable(f"backend '{backend.name}' is unavailable: {availability.reason}")
    return backends


def run_bench(spec: BenchSpec, *, host: PluginHost | None = None,
              on_result: Callable[[BenchResult], None] | None = None,
              on_status: Callable[[str], None] | None = None) -> BenchRun:
    """Run llama-bench for every (model, backend) of `spec` and return the finished run.

    Raises a HaloError subclass on failure; whatever finished before it stays in the run
    directory, whose path the message names.
    """
    host = host or get_host()
    status = on_status or (lambda _msg: None)
    backends = _check_backends(spec, host)
    models = []
    for ref in spec.models:
        status(f"resolving model {ref}")
        models.append(fetch_model(ref, host=host))

    run = BenchRun(path=new_run_dir("bench", spec.tag), spec=spec)
    system = system_state()
    system["backends"] = {b.name: b.provenance() for b in backends}
    write_json(run.path / "system.json", system)
    writer = _RunWriter(run, models)
    try:
        for model in models:
            for backend in backends:
                _bench_one(run, writer, model, backend, spec, status, on_result)
    except KeyboardInterrupt:
        writer.finish("interrupted", "interrupted by the user")
        raise
    except HaloError as exc:
        writer.finish("failed", str(exc))
        raise
    except BaseException as exc:
        writer.finish("failed", f"{type(exc).__name__}: {exc}")
        raise
    writer.finish("complete")
    return run


def _bench_one(run: BenchRun, writer: _RunWriter, model: LocalModel, backend: Backend,
               spec: BenchSpec, status, on_result) -> None:
    cmd = backend.command("llama-bench")
    flags = probe_flags(cmd, "llama-bench")
    params = BenchParams(backend.map_path(model.path), spec.pp, spec.tg, spec.reps, spec.threads)
    argv = bench_argv(cmd, flags, params, backend.defaults())
    writer.command(model, backend.name, argv, dict(cmd.env))
    log_path = run.path / "bench.log"
    where = f"{model.name} on {backend.name}"
    status(f"llama-bench: {where}")
    kept = lambda: f"{len(run.results)} result(s) kept in {run.path}"  # noqa: E731
    with Process(argv, env=cmd.env, log_path=log_path) as proc:
        for line in proc.lines():
            if not line.strip():
                continue
            try:
                result = parse_bench_line(line, model=model.name, backend=backend.name)
            except ValueError as exc:
                raise ToolFailed(f"llama-bench printed output halo cannot parse ({where}): {exc}; "
                                 f"{kept()}") from None
            append_line(run.path / "raw.jsonl", line)
            writer.result(result)
            if on_result:
                on_result(result)
            status(f"llama-bench: {where}: {result.test} done")
        code = proc.wait()
    if code != 0:
        tail = tail_of(log_path, 20)
        last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "no output")
        raise ToolFailed(f"llama-bench {describe_exit(code)} ({where}): {last.strip()}; {kept()}",
                         returncode=code, log_tail=tail)
