"""A bench run in the forms results are shared in: the markdown table `llama-bench -o md` prints
(plus halo's columns), llama-bench's csv and JSONL, and a before/after comparison as markdown,
csv or JSON lines.

llama-bench's formats are rebuilt from its own records, the raw.jsonl of the run (the lines
llama-bench printed), not from halo's BenchResults: the numbers and their text are llama-bench's.
"""

from __future__ import annotations

from typing import Sequence

import attrs

from ..errors import HaloError
from ..llama import bench_output
from ..llama.flags import parse_bench_line
from ..records import BenchResult, BenchRun
from ..reporting import markdown_table, markdown_width, records_as
from .compare import CellDelta

FORMATS = ("md", "csv", "jsonl")


@attrs.frozen
class RawRecord:
    """One result of a run with the llama-bench record it came from."""

    result: BenchResult
    line: str  # as llama-bench printed it
    record: dict  # the line parsed, numbers' text kept (bench_output.parse_record)


def _key(r: BenchResult) -> tuple:
    return (r.test, r.avg_ts, r.stddev_ts, r.test_time, r.model_file, r.type_k, r.type_v,
            r.n_batch, r.n_ubatch, r.n_threads, tuple(r.samples_ts))


def raw_records(run: BenchRun) -> list[RawRecord]:
    """The run's results, in order, each with its line of raw.jsonl; a HaloError when a
    result has none (a run from before raw.jsonl was kept, or a damaged file)."""
    by_key: dict[tuple, list[tuple[str, dict]]] = {}
    path = run.path / "raw.jsonl"
    lines = path.read_text(errors="replace").splitlines() if path.exists() else []
    for line in lines:
        if not line.strip():
            continue
        try:
            key = _key(parse_bench_line(line, model="", backend=""))
            record = bench_output.parse_record(line)
        except ValueError:
            continue  # a line a crash tore
        by_key.setdefault(key, []).append((line, record))
    out, missing = [], 0
    for result in run.results:
        found = by_key.get(_key(result))
        if not found:
            missing += 1
            continue
        line, record = found.pop(0)
        out.append(RawRecord(result, line, record))
    if missing:
        raise HaloError(f"{missing} of the {len(run.results)} results of {run.path.name} have no "
                        f"llama-bench record in {path}: llama-bench's formats need them "
                        f"(--format table or json show the run)")
    return out


def _fmt(value, spec: str) -> str:
    return "-" if value is None else f"{value:{spec}}"


def halo_columns(results: Sequence[BenchResult]) -> list[tuple[str, list[str], bool]]:
    """halo's columns after llama-bench's "t/s", each only where the run has it: power (W),
    tokens per joule, % of the bandwidth roofline (tg), the test group (a run with the
    long-context group measures depth 0 twice), halo's backend (llama-bench names two Vulkan
    drivers alike) and whether the weights are random."""
    columns = []
    for header, field, spec in (("W", "power_w", ".1f"), ("t/J", "tokens_per_joule", ".2f"),
                                ("% BW", "bandwidth_pct", ".1f")):
        if any(getattr(r, field) is not None for r in results):
            columns.append((header, [_fmt(getattr(r, field), spec) for r in results], True))
    if len({r.group for r in results}) > 1:
        columns.append(("group", [_fmt(r.group, "") for r in results], False))
    if len({r.backend for r in results}) > 1:
        columns.append(("halo backend", [r.backend for r in results], False))
    if any(r.synthetic for r in results):
        columns.append(("synthetic", ["yes" if r.synthetic else "no" for r in results], False))
    return columns


def run_markdown(run: BenchRun) -> str:
    """`llama-bench -o md` of the run's records, halo's columns appended after "t/s". For a
    run of one llama-bench process the llama-bench columns are that process's own table; a
    run of several (models, backends, kv types, the long-context group) gets one table with
    every column any of them needs."""
    raw = raw_records(run)
    if not raw:
        raise HaloError(f"{run.path.name} has no results to show")
    return bench_output.markdown([r.record for r in raw], threads_given=run.spec.threads is not None,
                                 extra=halo_columns([r.result for r in raw]))


def run_csv(run: BenchRun) -> str:
    """`llama-bench -o csv` of the run's records."""
    raw = raw_records(run)
    if not raw:
        raise HaloError(f"{run.path.name} has no results to show")
    return bench_output.csv([r.record for r in raw])


def run_jsonl(run: BenchRun) -> str:
    """The run's records as llama-bench printed them (`-o jsonl`)."""
    return "".join(r.line + "\n" for r in raw_records(run))


def format_bench_run(run: BenchRun, fmt: str) -> str:
    """The run as `fmt` (one of FORMATS): md, csv or jsonl."""
    return {"md": run_markdown, "csv": run_csv, "jsonl": run_jsonl}[fmt](run)


def compare_markdown(deltas: Sequence[CellDelta]) -> str:
    """The comparison as a markdown table in llama-bench's style (text left, numbers right)."""
    groups = len({d.group for d in deltas}) > 1
    columns = [("model", -30), ("backend", markdown_width("backend", False))]
    if groups:
        columns.append(("group", markdown_width("group", False)))
    columns += [("kv", markdown_width("kv", False)), ("test", 15),
                *((name, markdown_width(name, True)) for name in ("before t/s", "after t/s", "change")),
                ("verdict", markdown_width("verdict", False))]
    rows = []
    for d in deltas:
        rows.append([d.model, d.backend, *([_fmt(d.group, "")] if groups else []), d.kv, d.test,
                     _fmt(d.before_ts, ".2f"), _fmt(d.after_ts, ".2f"),
                     "-" if d.change_pct is None else f"{d.change_pct:+.1f}%", d.verdict])
    return "\n".join(markdown_table(columns, rows)) + "\n"


def format_comparison(deltas: Sequence[CellDelta], fmt: str) -> str:
    """compare_runs' deltas as `fmt`: md (compare_markdown), csv or jsonl of every field."""
    return records_as(fmt, deltas, CellDelta, compare_markdown)
