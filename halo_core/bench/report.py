"""`halo bench report`: one self-contained HTML page (charts inline as SVG) plus a PNG of
each chart, from one or more bench runs."""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from .. import __version__
from ..errors import HaloError
from ..records import BenchGroup, BenchResult, BenchRun
from ..runs import now
from ..reporting import STYLE, facts_html, figure, html_table, pyplot
from ..store import safe_name, write_atomic


def _label(r: BenchResult) -> str:
    return f"{r.model_label} · {r.backend}"


def _charts(results: list[BenchResult]):
    """(id, title, figure) for each chart the results support."""
    plt = pyplot()
    charts = []
    standard = [r for r in results if r.group != BenchGroup.CTX and r.n_depth == 0]
    by_test: dict[str, list[BenchResult]] = defaultdict(list)
    for r in standard:
        by_test[r.test].append(r)
    for test, rows in by_test.items():
        labels = list(dict.fromkeys(_label(r) for r in rows))
        kvs = list(dict.fromkeys(r.kv for r in rows))
        fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(labels) * max(1, len(kvs)) / 2), 4))
        width = 0.8 / len(kvs)
        for i, kv in enumerate(kvs):
            values = {_label(r): r for r in rows if r.kv == kv}
            xs = [j + i * width for j in range(len(labels))]
            ys = [values[l].avg_ts if l in values else 0 for l in labels]
            errs = [values[l].stddev_ts if l in values else 0 for l in labels]
            ax.bar(xs, ys, width, yerr=errs, capsize=3, label=f"kv {kv}")
        ax.set_xticks([j + width * (len(kvs) - 1) / 2 for j in range(len(labels))], labels,
                      rotation=15, ha="right", fontsize=8)
        ax.set_ylabel("tokens / s")
        ax.set_title(f"{test}: t/s by model × backend × KV cache")
        ax.legend(fontsize=8)
        fig.tight_layout()
        charts.append((f"bars-{safe_name(test)}", f"{test} by backend, model and KV cache", fig))
    depth_rows = [r for r in results if r.group == BenchGroup.CTX or r.n_depth]
    for kind, pick in (("pp", lambda r: r.n_prompt and not r.n_gen), ("tg", lambda r: r.n_gen and not r.n_prompt)):
        rows = [r for r in depth_rows if pick(r)]
        depths = {r.n_depth for r in rows}
        if len(depths) < 2:
            continue
        fig, ax = plt.subplots(figsize=(7, 4))
        series: dict[str, list[BenchResult]] = defaultdict(list)
        for r in rows:
            series[f"{_label(r)} · kv {r.kv}"].append(r)
        for name, points in series.items():
            points.sort(key=lambda r: r.n_depth)
            ax.errorbar([p.n_depth for p in points], [p.avg_ts for p in points],
                        yerr=[p.stddev_ts for p in points], marker="o", capsize=3, label=name)
        ax.set_xlabel("context depth (tokens)")
        ax.set_ylabel("tokens / s")
        ax.set_title(f"{kind}: t/s vs context depth")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        charts.append((f"depth-{kind}", f"{kind} t/s vs context depth", fig))
    return charts


def _provenance(run: BenchRun) -> str:
    try:
        system = json.loads((run.path / "system.json").read_text())
    except (OSError, ValueError):
        system = {}
    facts = [("status", run.status), ("cpu", system.get("cpu")), ("kernel", system.get("kernel")),
             ("memory", f"{system['mem_total_bytes'] / 2**30:.1f} GiB" if system.get("mem_total_bytes") else None)]
    for name, backend in (system.get("backends") or {}).items():
        build = backend.get("llama_cpp_build") or backend.get("found_through")
        facts.append((f"backend {name}", build))
    return facts_html(run.path.name, facts)


def _table(results: list[tuple[str, BenchResult]]) -> str:
    columns = [
        ("run", lambda n, r: n), ("model", lambda n, r: r.model_label), ("backend", lambda n, r: r.backend),
        ("group", lambda n, r: r.group), ("kv", lambda n, r: r.kv), ("test", lambda n, r: r.test),
        ("t/s", lambda n, r: f"{r.avg_ts:.2f}"), ("± sd", lambda n, r: f"{r.stddev_ts:.2f}"),
        ("W", lambda n, r: None if r.power_w is None else f"{r.power_w:.1f}"),
        ("t/J", lambda n, r: None if r.tokens_per_joule is None else f"{r.tokens_per_joule:.2f}"),
        ("% BW", lambda n, r: None if r.bandwidth_pct is None else f"{r.bandwidth_pct:.1f}"),
    ]
    return html_table("results", [h for h, _get in columns], [[get(n, r) for _h, get in columns] for n, r in results])


def write_report(runs: list[BenchRun], out_dir: Path) -> Path:
    """Write index.html (self-contained) and one PNG per chart into out_dir; return the page."""
    results = [r for run in runs for r in run.results]
    if not results:
        raise HaloError("nothing to report: the runs hold no results")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = [figure(out_dir, chart_id, title, fig) for chart_id, title, fig in _charts(results)]
    stamp = now()
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>halo bench report</title>"
            f"<style>{STYLE}</style></head><body><h1>halo bench report</h1>"
            f"<p>halo {__version__}, written {stamp}, {len(runs)} run(s), {len(results)} result(s).</p>"
            + "".join(_provenance(run) for run in runs)
            + "<h2>Charts</h2>" + "".join(figures)
            + "<h2>All results</h2>" + _table([(run.path.name, r) for run in runs for r in run.results])
            + "</body></html>")
    write_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
