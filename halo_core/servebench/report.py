"""`halo bench report` of serve-bench runs: TTFT and ITL percentile bands against load, pp and
tg t/s against depth, each run's provenance and every cell (one self-contained HTML page plus
a PNG per chart, as for llama-bench runs)."""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path

from .. import __version__
from ..errors import HaloError
from ..reporting import STYLE, facts_html, figure, html_table, pyplot
from ..runs import now
from .run import ServeRun
from ..store import write_atomic


def _groups(runs: list[ServeRun], keep, by):
    """(run, group, cells) for the cells `keep` picks, grouped by `by` within each run."""
    for run in runs:
        groups: dict = defaultdict(list)
        for c in run.cells:
            if keep(c):
                groups[by(c)].append(c)
        yield from ((run, name, cells) for name, cells in groups.items())


def _chart(runs: list[ServeRun], draw, chart_id: str, title: str, xlabel: str, ylabel: str):
    """(id, title, figure) with one series per `draw(ax, label_prefix)` call, or None when
    `draw` drew nothing."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    if not draw(ax, lambda run: f"{run.path.name} · " if len(runs) > 1 else ""):
        plt.close(fig)
        return None
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return chart_id, title, fig


def _bands(runs: list[ServeRun], metric: str, by_rate: bool):
    """`metric` (ttft_ms or itl_ms) against concurrency (or request rate): the p50 line, the
    p50-p95 band and the p95-p99 band, one series per run and depth."""
    load = (lambda c: c.rate) if by_rate else (lambda c: c.concurrency)

    def draw(ax, prefix) -> bool:
        drawn = False
        for run, shape, cells in _groups(runs, lambda c: getattr(c, metric) and load(c), lambda c: c.shape):
            cells.sort(key=load)
            xs, stats = [load(c) for c in cells], [getattr(c, metric) for c in cells]
            line, = ax.plot(xs, [s.p50 for s in stats], marker="o",
                            label=f"{prefix(run)}{shape} p50 (bands: p95, p99)")
            ax.fill_between(xs, [s.p50 for s in stats], [s.p95 for s in stats], color=line.get_color(), alpha=0.3)
            ax.fill_between(xs, [s.p95 for s in stats], [s.p99 for s in stats], color=line.get_color(), alpha=0.12)
            drawn = True
        if drawn and not by_rate:
            ax.set_xticks(sorted({c.concurrency for run in runs for c in run.cells if c.concurrency}))
        return drawn

    name = {"ttft_ms": "TTFT", "itl_ms": "ITL"}[metric]
    kind = "rate" if by_rate else "concurrency"
    return _chart(runs, draw, f"{name.lower()}-{kind}", f"{name} p50 / p95 / p99 vs {kind}",
                  "request rate (requests/s, Poisson)" if by_rate else "concurrent requests", f"{name} (ms)")


def _speed_vs_depth(runs: list[ServeRun], metric: str):
    """pp or tg t/s (mean ± sd over requests) against depth, one series per run and load."""
    def draw(ax, prefix) -> bool:
        drawn = False
        for run, load, cells in _groups(runs, lambda c: getattr(c, metric) and not c.workload, lambda c: c.load):
            cells.sort(key=lambda c: c.depth)
            ax.errorbar([c.depth for c in cells], [getattr(c, metric).mean for c in cells],
                        yerr=[getattr(c, metric).std for c in cells], marker="o", capsize=3,
                        label=f"{prefix(run)}{load}")
            drawn = True
        return drawn

    kind = metric.split("_")[0]
    return _chart(runs, draw, f"depth-{kind}", f"{kind} t/s vs context depth", "context depth (tokens)",
                  "tokens / s per request")


def _provenance(run: ServeRun) -> str:
    try:
        state = json.loads((run.path / "run.json").read_text())
        system = json.loads((run.path / "system.json").read_text())
    except (OSError, ValueError):
        state, system = {}, {}
    props = system.get("server_props") or {}
    facts = [("status", run.status), ("endpoint", run.endpoint), ("model", run.model),
             ("llama.cpp build", props.get("build_info")), ("slots", props.get("total_slots")),
             ("token counts", (state.get("endpoint") or {}).get("token_counts")),
             ("prompt cache", "on: agentic sessions, each on its own slot" if run.spec.workload else
              "left on" if run.spec.prompt_cache else "off, unique prefix per request"),
             ("cpu", system.get("cpu"))]
    facts += [("server", shlex.join(s["argv"])) for s in state.get("servers", [])]
    return facts_html(run.path.name, facts)


def _stat(stat, *fields: str, spec: str = ".1f") -> str:
    return "" if stat is None else " / ".join(f"{getattr(stat, f):{spec}}" for f in fields)


def _table(runs: list[ServeRun]) -> str:
    head = ["run", "depth", "load", "prompt", "pp t/s", "tg t/s", "TTFR p50 ms", "TTFT p50/p95/p99 ms",
            "ITL p50/p95/p99 ms", "e2e p50/p95 ms", "req/s", "agg t/s", "W", "t/J", "cache hits", "cached %",
            "draft accepted %", "errors"]
    rows = [[run.path.name, c.workload or str(c.depth), c.load, None if c.prompt_tokens is None else str(c.prompt_tokens),
             _stat(c.pp_ts, "mean") + (" (est.)" if c.pp_source == "estimated" else ""),
             _stat(c.tg_ts, "mean"), _stat(c.ttfr_ms, "p50"), _stat(c.ttft_ms, "p50", "p95", "p99"),
             _stat(c.itl_ms, "p50", "p95", "p99"), _stat(c.e2e_ms, "p50", "p95"),
             _stat(c.req_per_s, "mean", spec=".2f"), _stat(c.agg_ts, "mean"),
             None if c.power_w is None else f"{c.power_w:.1f}",
             None if c.tokens_per_joule is None else f"{c.tokens_per_joule:.2f}", f"{c.cache_hits}/{c.requests}",
             f"{c.cached_pct:.1f}", None if c.draft_accepted_pct is None else f"{c.draft_accepted_pct:.1f}",
             str(c.errors)]
            for run in runs for c in run.cells]
    return html_table("cells", head, rows)


def _time_table(runs: list[ServeRun]) -> str:
    """Where the time went, per run and cell (share.time_rows), with the server's /metrics."""
    from .share import TIME_HEAD, TIME_TITLE, time_rows

    rows = [[run.path.name, *row] for run in runs for row in time_rows(run.cells)]
    if not rows:
        return ""
    return f"<h2>Where the time went</h2><p>{TIME_TITLE}.</p>" + html_table("time", ["run", *TIME_HEAD], rows)


def _turn_table(runs: list[ServeRun]) -> str:
    """Per turn of the agentic sessions (share.turn_rows): cache reuse, TTFT, tg."""
    from .share import TURN_HEAD, TURN_TITLE, turn_rows

    rows = [[run.path.name, *row] for run in runs for row in turn_rows(run.cells)]
    if not rows:
        return ""
    return f"<h2>Turn by turn</h2><p>{TURN_TITLE}.</p>" + html_table("turns", ["run", *TURN_HEAD], rows)


def write_serve_report(runs: list[ServeRun], out_dir: Path) -> Path:
    """Write index.html (self-contained, charts inline as SVG) and a PNG per chart of serve-bench
    runs into out_dir; return the page."""
    cells = [c for run in runs for c in run.cells]
    if not cells:
        raise HaloError("nothing to report: the runs hold no finished cells")
    charts = [_bands(runs, "ttft_ms", False), _bands(runs, "itl_ms", False),
              _bands(runs, "ttft_ms", True), _bands(runs, "itl_ms", True),
              _speed_vs_depth(runs, "pp_ts"), _speed_vs_depth(runs, "tg_ts")]
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [figure(out_dir, chart_id, title, fig) for chart_id, title, fig in filter(None, charts)]
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>halo serve-bench report</title>"
            f"<style>{STYLE}</style></head><body><h1>halo serve-bench report</h1>"
            f"<p>halo {__version__}, written {now()}, {len(runs)} run(s), {len(cells)} cell(s).</p>"
            + "".join(_provenance(run) for run in runs)
            + "<h2>Charts</h2>" + "".join(figures)
            + "<h2>All cells</h2>" + _table(runs) + _turn_table(runs) + _time_table(runs) + "</body></html>")
    write_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
