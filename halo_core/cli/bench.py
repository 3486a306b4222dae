"""`halo bench`: benchmark llama.cpp (llama-bench) across models, backends and settings."""

from __future__ import annotations

from pathlib import Path

import attrs
import click
from rich.markup import escape
from rich.table import Table

from ..bench.run import KIND, list_bench_runs, load_bench_run, run_bench
from ..bench.compare import compare_runs
from ..errors import HaloError
from ..llama.flags import KV_TYPES
from ..machine.bandwidth import configured_bandwidth
from ..models.resolve import list_models
from ..records import BenchResult, BenchSpec, FailedCell
from ..llama.rpc import parse_endpoints, parse_tensor_split
from ..runs import resolve_kind, resolve_run
from ..bench.inventory import bench_setup
from .common import (
    PassThrough, backend_flags, backend_options, emit_json, err_console, passthrough, print_table,
    sigterm_as_interrupt, spinner_status, split_list,
)
from .serve import server_options, server_spec



@click.group()
def bench():
    """Benchmark llama.cpp (llama-bench) across models, backends and settings."""


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def results_table(results: list[BenchResult], title: str = "llama-bench") -> Table:
    extras = {
        "W": any(r.power_w is not None for r in results),
        "t/J": any(r.tokens_per_joule is not None for r in results),
        "% BW": any(r.bandwidth_pct is not None for r in results),
    }
    table = Table("model", "backend", "group", "kv", "test", "t/s",
                  *[k for k, v in extras.items() if v], title=title)
    for r in results:
        row = [r.model_label, r.backend, _fmt(r.group, ""), r.kv, r.test, f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f}"]
        if extras["W"]:
            row.append(_fmt(r.power_w, ".1f"))
        if extras["t/J"]:
            row.append(_fmt(r.tokens_per_joule, ".2f"))
        if extras["% BW"]:
            row.append(_fmt(r.bandwidth_pct, ".1f", "%"))
        table.add_row(*row)
    return table


def _parse_numbers(value: str | None, option: str, kind=int, minimum: int = 0) -> tuple:
    """Comma-separated whole numbers >= minimum (kind=float: numbers > 0)."""
    if not value:
        return ()
    try:
        numbers = tuple(kind(v) for v in split_list((value,)))
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise click.UsageError(f"{option} takes comma-separated {what}, not {value!r}") from None
    if kind is float and any(n <= 0 for n in numbers):
        raise click.UsageError(f"{option} values must be > 0")
    if any(n < minimum for n in numbers):
        raise click.UsageError(f"{option} values must be >= {minimum}")
    return numbers


def _parse_kv(value: str | None) -> tuple[tuple[str, str], ...]:
    if not value:
        return (("f16", "f16"),)
    pairs = []
    for item in split_list((value,)):
        k, _, v = item.partition(":")
        v = v or k
        for t in (k, v):
            if t not in KV_TYPES:
                raise click.UsageError(f"unknown KV cache type '{t}' in --kv-types (known: {', '.join(KV_TYPES)})")
        pairs.append((k, v))
    return tuple(pairs)


def matrix_options(default_tag: str, default_context: int | None):
    """The options `bench run` and `bench baseline` share."""
    def decorate(f):
        options = [
            click.option("-m", "--model", "--models", "models_", multiple=True,
                         help="Models: catalog name, SOURCE:REF or GGUF path (repeat or comma-separate); "
                              "default: the --category/--max-size selection, else the default model "
                              "(`halo plugins` shows it)."),
            click.option("--category", "-c", default=None,
                         help="Add every downloaded catalog model of these categories (comma-separated)."),
            click.option("--max-size", "-s", type=click.FloatRange(min=0, min_open=True), default=None,
                         help="Only catalog models up to this many GB."),
            click.option("--backend", "--backends", "backends_", multiple=True,
                         help="Backends (repeat or comma-separate); default: the default backend "
                              "(`halo backends` shows it)."),
            click.option("--pp", type=click.IntRange(min=0), default=512, show_default=True,
                         help="Prompt tokens of the standard test (0 skips pp)."),
            click.option("--tg", type=click.IntRange(min=0), default=128, show_default=True,
                         help="Generated tokens, standard and long-context tests (0 skips tg)."),
            click.option("--reps", "-r", type=click.IntRange(min=1), default=5, show_default=True,
                         help="Repetitions of each standard test."),
            click.option("--context", "-d", "context", type=click.IntRange(min=1), default=default_context,
                         show_default=True, help="Long-context test at this depth (pp2048, 3 reps)."),
            click.option("--depths", default=None,
                         help="Long-context tests at each depth, e.g. 0,4096,8192,16384,32768."),
            click.option("--ctx-prompt", type=click.IntRange(min=1), default=None,
                         help="Prompt tokens of the long-context test (default 2048; depth/16 above 32K)."),
            click.option("--skip-longctx", is_flag=True, help="No long-context tests."),
            click.option("--kv-types", default=None,
                         help="KV cache sweep: TYPE or K:V, comma-separated (e.g. f16,q8_0,q4_0:q8_0)."),
            click.option("-b", "--batch", type=click.IntRange(min=1), default=None, help="Batch size (-b)."),
            click.option("-ub", "--ubatch", type=click.IntRange(min=1), default=None,
                         help="Micro-batch size (-ub); long-context tests default to the backend's."),
            click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads (-t)."),
            click.option("--rpc", default=None, metavar="HOST:PORT,...",
                         help="llama.cpp RPC workers to split the model over (see `halo rpc`)."),
            click.option("--tensor-split", "-ts", "tensor_split", default=None, metavar="N0,N1,...",
                         help="Share of the model per device, RPC workers' devices first (-ts)."),
            click.option("--cooldown", type=click.FloatRange(min=0), default=0, show_default=True,
                         help="Seconds to wait between llama-bench processes."),
            click.option("--tag", default=default_tag, show_default=True,
                         help="Run name prefix; an explicit tag resumes its latest run when the spec is the same."),
            click.option("--resume", "resume", default=None, metavar="RUN",
                         help="Continue this run (path, name or tag) with its own spec."),
            backend_flags,
            click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
                         show_default=True, help="Sysroot for sensors and machine facts."),
            click.option("--json", "as_json", is_flag=True, help="Print the run as JSON."),
        ]
        for option in reversed(options):
            f = option(f)
        return f
    return decorate


def select_models(models_: tuple[str, ...], category: str | None, max_size: float | None) -> tuple[str, ...]:
    """Explicit models, plus the downloaded catalog models --category/--max-size pick; ()
    when nothing is named (the spec then takes the default model)."""
    chosen = list(split_list(models_))
    if category or max_size:
        picked = []
        categories = split_list((category,)) if category else (None,)
        for cat in categories:
            for m in list_models(category=cat, downloaded=True):
                size_gb = m.size / 1e9 if m.size else m.size_gb
                if m.shadowed_by or (max_size and size_gb and size_gb > max_size):
                    continue
                if m.name not in picked and m.name not in chosen:
                    picked.append(m.name)
        if not picked and not chosen:
            raise HaloError(f"no downloaded catalog model matches"
                            f"{' --category ' + category if category else ''}"
                            f"{f' --max-size {max_size:g}' if max_size else ''} (see `halo models list`)")
        chosen += picked
    return tuple(chosen)


def _execute(ctx: click.Context, *, models_, category, max_size, backends_, pp, tg, reps, context, depths, ctx_prompt, skip_longctx,
             kv_types, batch, ubatch, threads, rpc, tensor_split, cooldown, tag, resume, backend_opts,
             root, as_json):
    if pp == 0 and tg == 0:
        raise click.UsageError("--pp and --tg cannot both be 0")
    options = backend_options(backend_opts)
    all_depths = _parse_numbers(depths, "--depths")
    if context and not all_depths:
        all_depths = (context,)
    named = dict(models=select_models(models_, category, max_size), backends=split_list(backends_))
    spec = BenchSpec(**{k: v for k, v in named.items() if v}, pp=pp, tg=tg, reps=reps, tag=tag,
                     threads=threads, kv_types=_parse_kv(kv_types), batch=batch, ubatch=ubatch,
                     depths=() if skip_longctx else all_depths, ctx_prompt=ctx_prompt,
                     cooldown=cooldown, rpc=parse_endpoints(rpc or ()),
                     tensor_split=parse_tensor_split(tensor_split))
    explicit_tag = ctx.get_parameter_source("tag") != click.core.ParameterSource.DEFAULT
    resume_path = resolve_run(KIND, resume) if resume else None

    def show_result(r: BenchResult) -> None:
        err_console.print(f"  {r.model_label} · {r.backend} · {r.group} · {r.kv} · {r.test}: "
                          f"{r.avg_ts:.2f} ± {r.stddev_ts:.2f} t/s")

    def show_failure(f: FailedCell) -> None:
        err_console.print(f"  [red]FAILED[/red] {f.model} · {f.backend} · {f.kv} · {f.test}: {f.error}",
                          markup=True, highlight=False)

    with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
        run = run_bench(None if resume_path else spec, resume=resume_path,
                        resume_tag=explicit_tag or ctx.info_name == "baseline",
                        backend_options=options, root=root,
                        on_status=spinner_status(spinner), on_result=show_result,
                        on_failure=show_failure)
    if as_json:
        emit_json({"path": run.path, "status": run.status, "error": run.error, "spec": run.spec,
                   "results": run.results, "failures": run.failures})
    else:
        print_table(results_table(run.results))
        bw = configured_bandwidth()
        if bw and any(r.bandwidth_pct is not None for r in run.results):
            click.echo(f"% BW: of {bw.gbs:g} GB/s, {bw.source}" + (f" ({bw.device})" if bw.device else "")
                       + " · `halo hw bandwidth` measures again, `--set GBS` records a known figure")
        click.echo(f"saved: {run.path}")
    if run.failures:
        raise HaloError(f"{run.error}; {len(run.results)} result(s) kept in {run.path}")


@bench.command("run")
@matrix_options(default_tag="run", default_context=None)
@click.pass_context
def bench_run(ctx, **options):
    """Run llama-bench over the matrix and save the run under $HALO_HOME/runs/bench/."""
    _execute(ctx, **options)


@bench.command("baseline")
@matrix_options(default_tag="baseline", default_context=32768)
@click.pass_context
def bench_baseline(ctx, **options):
    """The baseline capture: pp512/tg128 (5 reps) and pp2048 at 32K depth (3 reps), tagged
    `baseline` (run it again to resume it)."""
    _execute(ctx, **options)


@bench.command("setup")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def bench_setup_cmd(as_json):
    """Backends required and optional for benchmarking, present or missing (with the command
    that creates each), the llama.cpp build inside each, and which catalog models are here."""
    report = bench_setup()
    if as_json:
        emit_json({"ready": report.ready, "backends": report.backends, "models": report.models})
        return
    table = Table("need", "backend", "state", "llama.cpp / how to create it", title="backends")
    order = {"required": 0, "optional": 1, "": 2}
    for b in sorted(report.backends, key=lambda b: (order.get(b.need, 2), b.name)):
        table.add_row(b.need or "-", b.name, "present" if b.available else "missing",
                      b.llama_cpp if b.available else (b.reason if not b.hint or b.hint in b.reason
                                                       else f"{b.reason}; {b.hint}"))
    models = Table("model", "downloaded", "size", "categories", title="catalog models")
    for m in report.models:
        size = f"{m.size / 1e9:.1f} GB" if m.size else (f"{m.size_gb:g} GB" if m.size_gb else "-")
        models.add_row(m.name, "yes" if m.downloaded else "no", size, ",".join(m.categories))
    print_table(table, models)
    have = sum(m.downloaded for m in report.models)
    click.echo(f"{have} of {len(report.models)} catalog models downloaded (halo models pull NAME)")
    missing = [b.name for b in report.backends if b.need == "required" and not b.available]
    click.echo("setup complete: every required backend is present" if not missing
               else f"setup incomplete: required backend(s) missing: {', '.join(missing)}")


@bench.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def bench_list(as_json):
    """List bench runs (llama-bench runs, then serve-bench runs), oldest first."""
    from ..servebench.run import list_serve_runs, load_serve_run

    rows = []
    for path in list_bench_runs():
        try:
            run = load_bench_run(path)
        except HaloError:
            continue
        rows.append({"kind": KIND, "name": path.name, "path": str(path), "status": run.status,
                     "models": list(run.spec.models), "backends": list(run.spec.backends),
                     "results": len(run.results), "failed": len(run.failures)})
    for path in list_serve_runs():
        try:
            served = load_serve_run(path)
        except HaloError:
            continue
        rows.append({"kind": "serve", "name": path.name, "path": str(path), "status": served.status,
                     "models": [Path(served.model).name or served.model], "backends": [served.endpoint],
                     "results": sum(1 for c in served.cells if not c.errors),
                     "failed": sum(1 for c in served.cells if c.errors)})
    if as_json:
        emit_json(rows)
        return
    table = Table("run", "kind", "status", "models", "backends / endpoint", "cells ok", "failed")
    for row in rows:
        table.add_row(row["name"], row["kind"], row["status"], ", ".join(row["models"]),
                      ", ".join(row["backends"]), str(row["results"]), str(row["failed"]))
    print_table(table)


OUTPUT_FORMATS = ("table", "md", "csv", "jsonl", "json")


def format_option(what: str):
    """--format, and --json as its alias for `--format json`."""
    def decorate(f):
        f = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts (--format json).")(f)
        return click.option("--format", "fmt", type=click.Choice(OUTPUT_FORMATS), default=None,
                            help=f"{what} [default: table].")(f)
    return decorate


def _format(fmt: str | None, as_json: bool) -> str:
    if as_json and fmt not in (None, "json"):
        raise click.UsageError(f"--json is --format json: give one of --json and --format {fmt}")
    return "json" if as_json else (fmt or "table")


@bench.command("show")
@click.argument("run_ref", metavar="RUN")
@format_option("table (rich), md (llama-bench's -o md table, halo's columns after t/s), csv or "
               "jsonl (llama-bench's -o csv / -o jsonl of the run's records), json (halo's records); "
               "serve-bench runs: their cells")
def bench_show(run_ref, fmt, as_json):
    """Show one run: its results, failures and status (RUN: path, name or tag; a llama-bench
    or serve-bench run)."""
    fmt = _format(fmt, as_json)
    kind, [run] = _load_runs((run_ref,))
    if kind != KIND:  # a serve-bench run
        from ..servebench.share import format_serve_run

        if fmt == "json":
            emit_json(_serve_json(run))
            return
        if fmt != "table":
            click.echo(format_serve_run(run, fmt), nl=False)
            return
        print_table(serve_table(run.cells, f"{run.path.name} ({run.status}): "
                                           f"{Path(run.model).name or run.model} at {run.endpoint}"))
        print_cell_details(run.cells)
        echo_search(run)
        if run.error:
            click.echo(f"error: {run.error}")
        click.echo(f"path: {run.path}")
        return
    if fmt == "json":
        emit_json(run)
        return
    if fmt != "table":
        from ..bench.share import format_bench_run

        click.echo(format_bench_run(run, fmt), nl=False)
        for f in run.failures:  # stdout stays the table
            err_console.print(f"FAILED {f.model} · {f.backend} · {f.kv} · {f.test}: {escape(f.error)}",
                              highlight=False, soft_wrap=True)
        return
    print_table(results_table(run.results, title=f"{run.path.name} ({run.status})"))
    for f in run.failures:
        click.echo(f"FAILED {f.model} · {f.backend} · {f.kv} · {f.test}: {f.error}")
    click.echo(f"path: {run.path}")


def _serve_json(run) -> dict:
    """A serve-bench run for scripts: its cells (the requests are in its requests.jsonl) and a
    capacity search's result."""
    return {"path": run.path, "status": run.status, "error": run.error, "endpoint": run.endpoint,
            "model": run.model, "spec": run.spec, "cells": run.cells, "capacity": run.capacity,
            "slots": run.slot_choice}


def echo_search(run) -> None:
    """A capacity search's result (with --slots: each slot count's, and the best -np)."""
    if run.capacity is not None:
        click.echo("\n".join(capacity_lines(run.capacity)))
    choice = run.slot_choice
    if choice is not None:
        for r in choice.results:
            head = f"-np {r.slots} (-c {r.ctx}): "
            if r.capacity is None:
                click.echo(head + r.error)
                continue
            first, *rest = capacity_lines(r.capacity)
            click.echo("\n".join([head + first, *rest]))
        click.echo(f"best -np: {choice.best} — {choice.why}" if choice.best else f"best -np: none — {choice.why}")


def capacity_lines(result) -> list[str]:
    """A capacity search's result for people: the boundary with its interval, why it stopped,
    each level."""
    unit = result.unit or ("concurrent requests" if result.mode == "concurrency" else "requests/s")
    lo, hi = result.interval or (None, None)
    shown = "none" if result.boundary is None else f"{result.boundary:g} {unit}"
    span = f" (bootstrap interval {_fmt(lo, 'g')} to {_fmt(hi, 'g')})" if result.levels else ""
    lines = [f"capacity at {result.slo}: {shown}{span}", f"stopped: {result.stopped}"]
    for lv in result.levels:
        verdict = "met" if lv.met else ("saturated" if lv.saturated else "missed")
        lines.append(f"  {lv.level:g}: {verdict} · P(meets) {_fmt(lv.p_meet, '.2f')} · goodput "
                     f"{_fmt(lv.goodput, '.2f')} r/s")
    return lines


def _load_runs(refs) -> tuple[str, list]:
    """(kind, the runs loaded) for the RUN arguments of show/compare/report: llama-bench runs
    or serve-bench runs, each found by path, name or tag (a tag both kinds use is refused)."""
    from ..servebench.run import KIND as SERVE_KIND, load_serve_run

    found = [resolve_kind(ref, (KIND, SERVE_KIND)) for ref in refs]
    kinds = {kind for kind, _path in found}
    if len(kinds) > 1:
        raise HaloError("cannot mix serve-bench runs (halo bench serve) with llama-bench runs")
    kind = kinds.pop()
    load = load_serve_run if kind == SERVE_KIND else load_bench_run
    return kind, [load(path) for _kind, path in found]


@bench.command("compare")
@click.argument("before")
@click.argument("after")
@format_option("table (rich), md (a markdown table in llama-bench's style), csv, jsonl or json "
               "of the per-cell changes")
def bench_compare(before, after, fmt, as_json):
    """Per-cell t/s before and after, % change, and whether it is beyond noise (serve-bench
    runs: t/s and TTFT/ITL/latency percentiles per cell)."""
    fmt = _format(fmt, as_json)
    colors = {"faster": "green", "slower": "red"}
    kind, loaded = _load_runs((before, after))
    if kind != KIND:  # serve-bench runs
        from ..servebench.run import compare_serve_runs
        from ..servebench.share import format_serve_comparison

        serve_deltas = compare_serve_runs(*loaded)
        if fmt == "json":
            emit_json(serve_deltas)
            return
        if fmt != "table":
            click.echo(format_serve_comparison(serve_deltas, fmt), nl=False)
            return
        table = Table("cell", "metric", "before", "after", "change", "p", "verdict")
        for d in serve_deltas:
            verdict = f"[{colors[d.verdict]}]{d.verdict}[/]" if d.verdict in colors else d.verdict
            table.add_row(d.cell, d.metric, _fmt(d.before, ".2f"), _fmt(d.after, ".2f"),
                          _fmt(d.change_pct, "+.1f", "%"), _fmt(d.p_value, ".3f"), verdict)
        print_table(table)
        return
    deltas = compare_runs(*loaded)
    if fmt == "json":
        emit_json(deltas)
        return
    if fmt != "table":
        from ..bench.share import format_comparison

        click.echo(format_comparison(deltas, fmt), nl=False)
        return
    table = Table("model", "backend", "group", "kv", "test", "before t/s", "after t/s", "change",
                  "verdict")
    for d in deltas:
        change = "-" if d.change_pct is None else f"{d.change_pct:+.1f}%"
        verdict = f"[{colors[d.verdict]}]{d.verdict}[/]" if d.verdict in colors else d.verdict
        table.add_row(d.model, d.backend, _fmt(d.group, ""), d.kv, d.test, _fmt(d.before_ts, ".2f"),
                      _fmt(d.after_ts, ".2f"), change, verdict)
    print_table(table)


@bench.command("report")
@click.argument("run_refs", nargs=-1, required=True, metavar="RUN...")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for index.html and the PNGs (default: <last run>/report).")
def bench_report(run_refs, output):
    """Write a self-contained HTML report (and PNG charts) of one or more runs."""
    from ..bench.report import write_report
    from ..servebench.report import write_serve_report

    kind, runs = _load_runs(run_refs)
    if kind != KIND:  # serve-bench runs
        click.echo(str(write_serve_report(runs, output or runs[-1].path / "report")))
        return
    page = write_report(runs, output or runs[-1].path / "report")
    click.echo(str(page))


def _ms(stat, *fields: str) -> str:
    from ..servebench.share import ms

    return ms(stat, *fields)


def serve_table(cells: list, title: str) -> Table:
    """One row per cell: speeds, latency percentiles (ms), throughput, cache hits, errors."""
    drafts = any(c.draft_accepted_pct is not None for c in cells)
    joules = any(c.tokens_per_joule is not None for c in cells)
    slos = any(c.slo_met is not None for c in cells)
    table = Table("depth", "load", "prompt", "pp t/s", "tg t/s", "TTFR ms p50", "TTFT ms p50/95/99",
                  "ITL ms p50/95/99", "e2e ms p50", "req/s", "agg t/s", *(["W", "t/J"] if joules else []),
                  "cache", *(["draft acc."] if drafts else []), *(["goodput r/s", "SLO"] if slos else []),
                  "errors", title=title)
    for c in cells:
        pp = _fmt(c.pp_ts and c.pp_ts.mean, ".1f") + (" est." if c.pp_source == "estimated" else "")
        cache = (f"[yellow]{c.cache_hits}/{c.requests} hit, {c.cached_pct:.0f}%[/]" if c.cache_hits else "-")
        errors = f"[red]{c.errors}[/]" if c.errors else "0"
        table.add_row(c.workload or str(c.depth), c.load, _fmt(c.prompt_tokens, "d"), pp,
                      _fmt(c.tg_ts and c.tg_ts.mean, ".1f"), _ms(c.ttfr_ms, "p50"),
                      _ms(c.ttft_ms, "p50", "p95", "p99"), _ms(c.itl_ms, "p50", "p95", "p99"),
                      _ms(c.e2e_ms, "p50"), _fmt(c.req_per_s and c.req_per_s.mean, ".2f"),
                      _fmt(c.agg_ts and c.agg_ts.mean, ".1f"),
                      *([_fmt(c.power_w, ".0f"), _fmt(c.tokens_per_joule, ".2f")] if joules else []), cache,
                      *([_fmt(c.draft_accepted_pct, ".0f", "%")] if drafts else []),
                      *([_fmt(c.goodput and c.goodput.mean, ".2f"),
                         "[green]met[/]" if c.slo_met else "[red]missed[/]"] if slos else []), errors)
    return table


def print_cell_details(cells: list) -> None:
    """The tables after a serve-bench run's cells, each where it has rows: per turn of agentic
    sessions (share.turn_rows), where the time went when the server said (share.time_rows)."""
    from ..servebench.share import TIME_HEAD, TIME_TITLE, TURN_HEAD, TURN_TITLE, time_rows, turn_rows

    for head, title, rows in ((TURN_HEAD, TURN_TITLE, turn_rows(cells)), (TIME_HEAD, TIME_TITLE, time_rows(cells))):
        if rows:
            table = Table(*head, title=title)
            for row in rows:
                table.add_row(*row)
            print_table(table)


@bench.command("serve", cls=PassThrough)
@click.argument("model", required=False)
@click.option("--endpoint", default=None, metavar="URL",
              help="Measure this OpenAI-compatible server instead of starting MODEL "
                   "(neither: the server `halo eval` would detect).")
@click.option("--model-id", default=None, help="Model name sent in requests (default: the first in /v1/models).")
@click.option("--api-key", envvar="HALO_API_KEY", default=None,
              help="Bearer key for --endpoint [env: HALO_API_KEY] (not saved: give it again to resume).")
@click.option("--depths", default="0", show_default=True, help="Context depths in tokens, comma-separated.")
@click.option("--pp", type=click.IntRange(min=1), default=None,
              help="Prompt tokens after the context [default: 512; agentic: the first turn's, 4096].")
@click.option("--tg", type=click.IntRange(min=2), default=128, show_default=True, help="Generated tokens.")
@click.option("--concurrency", default=None,
              help="Concurrent requests, comma-separated levels [default: 1, none with --rate only].")
@click.option("--rate", default=None, help="Request rates (requests/s, Poisson arrivals), comma-separated.")
@click.option("--requests", type=click.IntRange(min=1), default=None,
              help="Requests per round (agentic: sessions) [default: the concurrency; 8 per rate].")
@click.option("--reps", "-r", type=click.IntRange(min=1), default=3, show_default=True,
              help="Rounds per cell.")
@click.option("--prompt-cache", is_flag=True,
              help="Leave the server's prompt cache on and send one prompt per cell (cells it serves "
                   "from the cache are flagged).")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds one request may take.")
@click.option("--tag", default="serve", show_default=True,
              help="Run name prefix; an explicit tag resumes its latest run when the spec is the same.")
@click.option("--resume", "resume", default=None, metavar="RUN", help="Continue this serve-bench run.")
@click.option("--slo", default=None, metavar="METRIC_STAT=LIMIT,...",
              help="Service-level objectives, e.g. ttft_p95=2s,itl_p95=100ms,tg_min=20: goodput "
                   "(requests meeting all of them per second) and a verdict per cell.")
@click.option("--workload", type=click.Choice(["agentic"]), default=None,
              help="agentic: multi-turn coding-agent sessions (a long system prompt with a tool schema, "
                   "tool outputs appended turn by turn, replies of varying length), --concurrency of "
                   "them at once, each on its own slot, the prompt cache on; per-turn cache reuse, TTFT, tg.")
@click.option("--turns", type=click.IntRange(min=1), default=None,
              help="Turns per agentic session [default: 6].")
@click.option("--tool-tokens", default=None, metavar="LO,HI",
              help="Corpus tokens of one tool output in an agentic session, drawn uniformly [default: 128,1024].")
@click.option("--capacity", type=click.Choice(["concurrency", "rate"]), default=None,
              help="Search the largest load meeting --slo (doubling, then bisection) up to the largest "
                   "--concurrency (or between the lowest and highest --rate), instead of the matrix.")
@click.option("--slots", default=None, metavar="N,N,...",
              help="With MODEL and --capacity: run the search once per slot count (-np N, each slot "
                   "the context one request needs) and report which -np serves the most.")
@server_options(ctx_default="what the matrix needs", parallel_default="the largest --concurrency")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), default=Path("/"),
              show_default=True, help="Sysroot for machine facts.")
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
@passthrough
def bench_serve(model, endpoint, model_id, api_key, depths, pp, tg, concurrency, rate, requests,
                reps, prompt_cache, timeout, tag, resume, slo, workload, turns, tool_tokens, capacity, slots,
                root, as_json, extra, **server):
    """Benchmark serving: streamed chat completions against an OpenAI-compatible endpoint (or
    llama-server started for MODEL with `halo serve`'s options) over depths x concurrency
    levels / request rates (or --workload agentic: coding-agent sessions); TTFR, TTFT, ITL and
    latency percentiles, pp/tg t/s, cache hits (per turn of the sessions).

    Anything after `--` goes to the llama-server halo starts.
    """
    from ..servebench import agentic
    from ..servebench.run import ServeBenchSpec, matrix_server, resolve_serve_run, run_serve_bench

    context = click.get_current_context()  # (`ctx` is -c/--ctx here)
    given = [name for name in server  # (the options server_options added)
             if context.get_parameter_source(name) != click.core.ParameterSource.DEFAULT]
    starts = bool(model or server["preset"])
    if endpoint and starts:
        raise click.UsageError("give MODEL (or --preset) to start a server, or --endpoint URL, not both")
    if not starts and (given or extra):
        raise click.UsageError("server options (--backend, -c, -np, ... or args after --) need MODEL or --preset")
    rates = _parse_numbers(rate, "--rate", float)
    levels = _parse_numbers(concurrency, "--concurrency", minimum=1) or (() if rates else (1,))
    if slo is not None:
        from ..servebench.slo import parse_slos

        try:
            slo = ",".join(map(str, parse_slos(slo)))
        except HaloError as exc:
            raise click.BadParameter(str(exc), param_hint="'--slo'") from None
    if capacity and not slo:
        raise click.UsageError("--capacity needs --slo: the objectives the largest load must meet")
    slot_counts = _parse_numbers(slots, "--slots", minimum=1)
    if slots is not None:
        if not (starts and capacity):
            raise click.UsageError("--slots needs MODEL (a server halo starts) and --capacity")
        if {"parallel", "ctx"} & set(given):
            raise click.UsageError("--slots sets -np and -c for each slot count: leave -np and -c out")
        if len(set(slot_counts)) != len(slot_counts):
            raise click.UsageError("--slots: a slot count is given twice")
    depth_values = _parse_numbers(depths, "--depths") or (0,)
    tools = _parse_numbers(tool_tokens, "--tool-tokens", minimum=1)
    if workload:
        if rates:
            raise click.UsageError("--rate does not apply to --workload agentic: each --concurrency level "
                                   "is that many sessions at once")
        if depth_values != (0,):
            raise click.UsageError("--depths does not apply to --workload agentic: a session's context is "
                                   "its own turns (--pp, --turns, --tool-tokens)")
        if tool_tokens is not None and (len(tools) != 2 or tools[0] > tools[1]):
            raise click.UsageError(f"--tool-tokens takes LO,HI with LO <= HI, not {tool_tokens!r}")
    elif turns is not None or tool_tokens is not None:
        raise click.UsageError("--turns and --tool-tokens need --workload agentic")
    spec = ServeBenchSpec(slo=slo or "", capacity=capacity or "",
        endpoint=endpoint, model=model_id, depths=depth_values,
        pp=pp or (agentic.SYSTEM_TOKENS if workload else 512), tg=tg, concurrency=levels,
        rates=rates, requests=requests, reps=reps, prompt_cache=prompt_cache, tag=tag, timeout=timeout,
        workload=workload or "", turns=turns or agentic.TURNS, tool_tokens=tools or agentic.TOOL_TOKENS,
        slots=slot_counts)
    if starts:
        fields = {k: v for k, v in server.items() if k not in ("preset", "backend_opts")}
        fields["profile"] = workload or "chat"
        if not server["preset"]:  # a plain MODEL: slots and context to fit the matrix
            parallel, needed = matrix_server(spec)
            fields.update(parallel=fields["parallel"] or parallel, ctx=fields["ctx"] or needed)
        spec = attrs.evolve(spec, server=server_spec(model, server["preset"], port=0, extra=tuple(extra), **fields),
                            backend_options=backend_options(server["backend_opts"]))
    resume_path = resolve_serve_run(resume) if resume else None
    explicit_tag = context.get_parameter_source("tag") != click.core.ParameterSource.DEFAULT

    def show_cell(c) -> None:
        line = (f"  {c.shape} · {c.load}: pp {_fmt(c.pp_ts and c.pp_ts.mean, '.1f')} t/s · "
                f"tg {_fmt(c.tg_ts and c.tg_ts.mean, '.1f')} t/s · TTFT p50 {_ms(c.ttft_ms, 'p50')} ms · "
                f"ITL p95 {_ms(c.itl_ms, 'p95')} ms")
        if c.slo_met is not None:
            line += (f" · goodput {_fmt(c.goodput and c.goodput.mean, '.2f')} r/s · "
                     + ("[green]SLO met[/]" if c.slo_met else f"[red]SLO missed: {escape('; '.join(c.slo_missed))}[/]"))
        if c.per_turn:  # (agentic: the cache is the point)
            line += " · cache reuse by turn " + " ".join(_fmt(t.reuse_pct, ".0f", "%") for t in c.per_turn)
        elif c.cache_hits:
            line += f" · [yellow]{c.cache_hits} cache hit(s)[/]"
        if c.errors:
            line += f" · [red]{c.errors} error(s): {escape(c.first_error)}[/]"
        err_console.print(line, highlight=False, soft_wrap=True)

    with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
        run = run_serve_bench(None if resume_path else spec, resume=resume_path, resume_tag=explicit_tag,
                              api_key=api_key, root=root, on_status=spinner_status(spinner),
                              on_cell=show_cell)
    if as_json:
        emit_json(_serve_json(run))
    else:
        print_table(serve_table(run.cells, f"{Path(run.model).name or run.model} at {run.endpoint}"))
        print_cell_details(run.cells)
        echo_search(run)
        click.echo(f"saved: {run.path}")
    if run.status != "complete":
        raise HaloError(f"{run.error}; {sum(1 for c in run.cells if not c.errors)} clean cell(s) kept in {run.path}")
