"""A serve-bench run's cells, and a comparison of two runs, as a markdown table in llama-bench's
style (text left, numbers right), csv (quoted as llama-bench quotes; a Stat's fields spread out
as FIELD_n, FIELD_mean, ... FIELD_max) or JSON lines."""

from __future__ import annotations

from typing import Sequence

from ..reporting import markdown_table, markdown_width, records_as
from .run import ServeCell, ServeDelta, ServeRun

FORMATS = ("md", "csv", "jsonl")


def _fmt(value, spec: str, suffix: str = "") -> str:
    return "-" if value is None else f"{value:{spec}}{suffix}"


def ms(stat, *fields: str) -> str:
    """Latency percentiles in ms, '/'-joined: one decimal below 100 ms."""
    values = [getattr(stat, f) for f in fields] if stat is not None else []
    return "/".join(f"{v:.1f}" if v < 100 else f"{v:.0f}" for v in values) or "-"


TIME_HEAD = ("depth", "load", "e2e ms p50", "queue ms p50", "prefill ms p50", "decode ms p50",
             "server pp t/s", "server tg t/s", "processing max", "deferred max", "client CPU s/1k tok")
TIME_TITLE = ("where the time went: queue (a slot, the template, HTTP) + prefill + decode, from the "
              "server's timings; its t/s and requests from /metrics; halo's client CPU")


TURN_HEAD = ("load", "turn", "requests", "prompt", "cached", "reuse", "pp t/s", "TTFT ms p50/95",
             "tg t/s", "errors")
TURN_TITLE = ("per turn of the agentic sessions: prompt and cached tokens (medians), the share of "
              "prompt tokens the server took from its cache, TTFT, pp t/s of the rest, tg t/s")


def turn_rows(cells: Sequence[ServeCell]) -> list[list[str]]:
    """A row per turn of each agentic cell (TURN_HEAD); none without agentic cells."""
    return [[c.load, str(t.turn), str(t.requests), _fmt(t.prompt_tokens, "d"), _fmt(t.cached_tokens, "d"),
             _fmt(t.reuse_pct, ".1f", "%"), _fmt(t.pp_ts and t.pp_ts.mean, ".1f"), ms(t.ttft_ms, "p50", "p95"),
             _fmt(t.tg_ts and t.tg_ts.mean, ".1f"), str(t.errors)]
            for c in cells for t in c.per_turn]


def time_rows(cells: Sequence[ServeCell]) -> list[list[str]]:
    """Per cell, where a request's time went, the server's own view and halo's client CPU
    (TIME_HEAD); none when no cell has any of them."""
    if not any(c.prefill_ms or c.server or c.client_cpu_s_per_1k for c in cells):
        return []
    rows = []
    for c in cells:
        view = c.server
        rows.append([c.workload or str(c.depth), c.load, ms(c.e2e_ms, "p50"), ms(c.queue_ms, "p50"), ms(c.prefill_ms, "p50"),
                     ms(c.decode_ms, "p50"), *(_fmt(view and getattr(view, name), spec) for name, spec in (
                         ("prompt_ts", ".1f"), ("predicted_ts", ".1f"), ("processing_max", ".0f"),
                         ("deferred_max", ".0f"))), _fmt(c.client_cpu_s_per_1k, ".3f")])
    return rows


def cells_markdown(cells: Sequence[ServeCell]) -> str:
    """One row per cell, the columns of `halo bench show`'s table."""
    drafts = any(c.draft_accepted_pct is not None for c in cells)
    joules = any(c.tokens_per_joule is not None for c in cells)
    numeric = ["depth", "prompt", "pp t/s", "tg t/s", "TTFR ms p50", "TTFT ms p50/95/99",
               "ITL ms p50/95/99", "e2e ms p50", "req/s", "agg t/s", *(["W", "t/J"] if joules else [])]
    columns = [(numeric[0], markdown_width(numeric[0], True)), ("load", markdown_width("load", False)),
               *((name, markdown_width(name, True)) for name in numeric[1:]),
               ("cache", markdown_width("cache", False)),
               *([("draft acc.", markdown_width("draft acc.", True))] if drafts else []),
               ("errors", markdown_width("errors", True))]
    rows = []
    for c in cells:
        pp = _fmt(c.pp_ts and c.pp_ts.mean, ".1f") + (" est." if c.pp_source == "estimated" else "")
        rows.append([c.workload or str(c.depth), c.load, _fmt(c.prompt_tokens, "d"), pp,
                     _fmt(c.tg_ts and c.tg_ts.mean, ".1f"), ms(c.ttfr_ms, "p50"),
                     ms(c.ttft_ms, "p50", "p95", "p99"), ms(c.itl_ms, "p50", "p95", "p99"),
                     ms(c.e2e_ms, "p50"), _fmt(c.req_per_s and c.req_per_s.mean, ".2f"),
                     _fmt(c.agg_ts and c.agg_ts.mean, ".1f"),
                     *([_fmt(c.power_w, ".0f"), _fmt(c.tokens_per_joule, ".2f")] if joules else []),
                     f"{c.cache_hits}/{c.requests} hit, {c.cached_pct:.0f}%" if c.cache_hits else "-",
                     *([_fmt(c.draft_accepted_pct, ".0f", "%")] if drafts else []), str(c.errors)])
    return "\n".join(markdown_table(columns, rows)) + "\n"


def format_serve_run(run: ServeRun, fmt: str) -> str:
    """A serve-bench run's cells as `fmt` (one of FORMATS): md, csv or jsonl."""
    return records_as(fmt, run.cells, ServeCell, cells_markdown)


def compare_markdown(deltas: Sequence[ServeDelta]) -> str:
    columns = [("cell", markdown_width("cell", False)), ("metric", markdown_width("metric", False)),
               *((name, markdown_width(name, True)) for name in ("before", "after", "change", "p")),
               ("verdict", markdown_width("verdict", False))]
    rows = [[d.cell, d.metric, _fmt(d.before, ".2f"), _fmt(d.after, ".2f"), _fmt(d.change_pct, "+.1f", "%"),
             _fmt(d.p_value, ".3f"), d.verdict] for d in deltas]
    return "\n".join(markdown_table(columns, rows)) + "\n"


def format_serve_comparison(deltas: Sequence[ServeDelta], fmt: str) -> str:
    """compare_serve_runs' deltas as `fmt`: md, csv or jsonl."""
    return records_as(fmt, deltas, ServeDelta, compare_markdown)
