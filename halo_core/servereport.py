"""`halo bench report` of serve-bench runs: TTFT and ITL percentile bands against load, pp and
tg t/s against depth, each run's provenance and every cell (one self-contained HTML page plus
a PNG per chart, as for llama-bench runs)."""

from __future__ import annotations

import html
import json
import shlex
from collections import defaultdict

from .errors import HaloError
from .report import _pyplot, write_page
from .servebench import ServeCell, ServeRun


def _series_label(run: ServeRun, runs: list[ServeRun], text: str) -> str:
    return f"{run.path.name} · {text}" if len(runs) > 1 else text


def _bands(runs: list[ServeRun], metric: str, by_rate: bool):
    """A chart of `metric` (ttft_ms or itl_ms) against concurrency (or request rate): the p50
    line, the p50-p95 band and the p95-p99 band, one series per run and depth."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for run in runs:
        series: dict[int, list[ServeCell]] = defaultdict(list)
        for c in run.cells:
            if getattr(c, metric) is not None and (c.rate is not None) == by_rate:
                series[c.depth].append(c)
        for depth, cells in series.items():
            cells.sort(key=lambda c: c.rate if by_rate else c.concurrency)
            xs = [c.rate if by_rate else c.concurrency for c in cells]
            stats = [getattr(c, metric) for c in cells]
            line, = ax.plot(xs, [s.p50 for s in stats], marker="o",
                            label=_series_label(run, runs, f"depth {depth} p50 (bands: p95, p99)"))
            ax.fill_between(xs, [s.p50 for s in stats], [s.p95 for s in stats], color=line.get_color(), alpha=0.3)
            ax.fill_between(xs, [s.p95 for s in stats], [s.p99 for s in stats], color=line.get_color(), alpha=0.12)
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    if not by_rate:
        ax.set_xticks(sorted({c.concurrency for run in runs for c in run.cells if c.concurrency}))
    name = {"ttft_ms": "TTFT", "itl_ms": "ITL"}[metric]
    ax.set_xlabel("request rate (requests/s, Poisson)" if by_rate else "concurrent requests")
    ax.set_ylabel(f"{name} (ms)")
    ax.set_title(f"{name} percentiles vs {'request rate' if by_rate else 'concurrency'}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    load = "rate" if by_rate else "concurrency"
    return (f"{name.lower()}-{load}", f"{name} p50 / p95 / p99 vs {load}", fig)


def _speed_vs_depth(runs: list[ServeRun], metric: str):
    """pp or tg t/s (mean ± sd over requests) against depth, one series per run and load."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    drawn = False
    for run in runs:
        series: dict[str, list[ServeCell]] = defaultdict(list)
        for c in run.cells:
            if getattr(c, metric) is not None:
                series[c.load].append(c)
        for load, cells in series.items():
            cells.sort(key=lambda c: c.depth)
            ax.errorbar([c.depth for c in cells], [getattr(c, metric).mean for c in cells],
                        yerr=[getattr(c, metric).std for c in cells], marker="o", capsize=3,
                        label=_series_label(run, runs, load))
            drawn = True
    if not drawn:
        plt.close(fig)
        return None
    kind = metric.split("_")[0]
    ax.set_xlabel("context depth (tokens)")
    ax.set_ylabel("tokens / s per request")
    ax.set_title(f"{kind}: t/s vs context depth")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return (f"depth-{kind}", f"{kind} t/s vs context depth", fig)


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
             ("prompt cache", "left on" if run.spec.prompt_cache else "off, unique prefix per request"),
             ("cpu", system.get("cpu"))]
    facts += [("server", shlex.join(s["argv"])) for s in state.get("servers", [])]
    items = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in facts if v)
    return f"<h3>{html.escape(run.path.name)}</h3><ul>{items}</ul>"


def _stat(stat, *fields: str, spec: str = ".1f") -> str:
    return "" if stat is None else " / ".join(f"{getattr(stat, f):{spec}}" for f in fields)


def _table(runs: list[ServeRun]) -> str:
    head = ["run", "depth", "load", "prompt", "pp t/s", "tg t/s", "TTFR p50 ms", "TTFT p50/p95/p99 ms",
            "ITL p50/p95/p99 ms", "e2e p50/p95 ms", "req/s", "agg t/s", "cache hits", "cached %", "errors"]
    rows = []
    for run in runs:
        for c in run.cells:
            rows.append([run.path.name, str(c.depth), c.load, "" if c.prompt_tokens is None else str(c.prompt_tokens),
                         _stat(c.pp_ts, "mean") + (" (est.)" if c.pp_source == "estimated" else ""),
                         _stat(c.tg_ts, "mean"), _stat(c.ttfr_ms, "p50"), _stat(c.ttft_ms, "p50", "p95", "p99"),
                         _stat(c.itl_ms, "p50", "p95", "p99"), _stat(c.e2e_ms, "p50", "p95"),
                         _stat(c.req_per_s, "mean", spec=".2f"), _stat(c.agg_ts, "mean"),
                         f"{c.cache_hits}/{c.requests}", f"{c.cached_pct:.1f}", str(c.errors)])
    cells = "".join("<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows)
    return ("<table id='cells'><thead><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
            + f"</tr></thead><tbody>{cells}</tbody></table>")


def write_serve_report(runs: list[ServeRun], out_dir):
    """Write index.html and the PNGs of serve-bench runs into out_dir; return the page."""
    cells = [c for run in runs for c in run.cells]
    if not cells:
        raise HaloError("nothing to report: the runs hold no finished cells")
    charts = [_bands(runs, "ttft_ms", False), _bands(runs, "itl_ms", False),
              _bands(runs, "ttft_ms", True), _bands(runs, "itl_ms", True),
              _speed_vs_depth(runs, "pp_ts"), _speed_vs_depth(runs, "tg_ts")]
    return write_page(out_dir, "halo serve-bench report", f"{len(runs)} run(s), {len(cells)} cell(s).",
                      "".join(_provenance(run) for run in runs), [c for c in charts if c],
                      "<h2>All cells</h2>" + _table(runs))
