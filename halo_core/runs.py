"""Bench run directories: the files in one, loading it back, finding runs by name or tag.

  run.json       spec, status (running | complete | partial | failed | interrupted), error,
                 every command run, resume history
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
import re
from pathlib import Path

import attrs

from .errors import HaloError
from .records import BenchResult, BenchRun, BenchSpec, FailedCell
from .store import halo_home, to_json, write_json

RUN_NAME = re.compile(r"^(?P<tag>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:\.\d+)?$")


def bench_root() -> Path:
    return halo_home() / "runs" / "bench"


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of a JSONL file; a line torn by a kill is cut off the file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if data and not data.endswith(b"\n"):
        keep = data.rfind(b"\n") + 1
        with open(path, "r+b") as fh:
            fh.truncate(keep)
        data = data[:keep]
    rows = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def _from_dict(cls, data: dict):
    names = {a.name for a in attrs.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def spec_from_dict(data: dict) -> BenchSpec:
    return _from_dict(BenchSpec, data)


def spec_to_dict(spec: BenchSpec) -> dict:
    return json.loads(to_json(spec))


def load_cells(path: Path) -> tuple[list[BenchResult], list[FailedCell]]:
    """Finished results and still-failed cells of a run, from results.jsonl."""
    results: dict[str, BenchResult] = {}
    failures: dict[str, FailedCell] = {}
    for row in read_jsonl(path / "results.jsonl"):
        if row.get("status") == "ok":
            result = _from_dict(BenchResult, row["result"])
            results.setdefault(result.cell or f"#{len(results)}", result)
            failures.pop(result.cell, None)
        elif row.get("status") == "failed":
            failure = _from_dict(FailedCell, row["failure"])
            if failure.cell not in results:
                failures[failure.cell] = failure
    if not results and not (path / "results.jsonl").exists() and (path / "results.json").exists():
        # runs written before results.jsonl existed
        results = {str(i): _from_dict(BenchResult, r)
                   for i, r in enumerate(json.loads((path / "results.json").read_text()))}
    return list(results.values()), list(failures.values())


def load_run(path: Path) -> BenchRun:
    try:
        state = json.loads((path / "run.json").read_text())
    except (OSError, ValueError) as exc:
        raise HaloError(f"{path} is not a bench run (no readable run.json)") from exc
    results, failures = load_cells(path)
    return BenchRun(path=path, spec=spec_from_dict(state["spec"]), status=state.get("status", "?"),
                    error=state.get("error", ""), results=results, failures=failures)


def list_runs() -> list[Path]:
    """Every bench run directory, oldest first."""
    root = bench_root()
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return sorted(runs, key=lambda p: (RUN_NAME.match(p.name)["stamp"] if RUN_NAME.match(p.name) else "", p.name))


def latest_with_tag(tag: str) -> Path | None:
    matches = [p for p in list_runs() if (m := RUN_NAME.match(p.name)) and m["tag"] == tag]
    return matches[-1] if matches else None


def resolve_run(ref: str | Path) -> Path:
    """A run from a path, a run directory name, or a tag (its latest run)."""
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        return path
    named = bench_root() / str(ref)
    if (named / "run.json").is_file():
        return named
    tagged = latest_with_tag(str(ref))
    if tagged is not None:
        return tagged
    raise HaloError(f"no bench run '{ref}' (not a run directory, run name or tag; see `halo bench list`)")


def write_results_snapshot(run: BenchRun) -> None:
    write_json(run.path / "results.json", run.results)
