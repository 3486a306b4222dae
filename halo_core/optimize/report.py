"""An optimize run as a page: what the seed's optimization log kept by hand, written from the run.

report/index.html (self-contained, charts inline as SVG, each also a PNG):
  - the facts: model, backend, workload, objective, budget, the recommendation and why
  - the trajectory: each trial's objective in the order it ran, the best so far as a line
    (pruned and failed trials marked)
  - the Pareto front of pp against tg over the trials that measured both at depth 0
  - the journey: the defaults against the recommended setting per test (every depth), re-measured
    in the confirmation, with the change, p and verdict
  - the answers gate of a lossy setting (--allow-lossy), when there was one
  - every trial, and the exact llama-server command `halo serve MODEL` runs with the profile
"""

from __future__ import annotations

import html
from pathlib import Path

from .. import __version__
from ..llama.profile import Settings
from ..reporting import STYLE, facts_html, figure, html_table, pyplot
from ..store import from_dict, write_atomic
from .run import CONFIRM_REPS


def _fmt(value, spec: str = ".2f") -> str | None:
    return None if value is None else f"{value:{spec}}"


def _depth0(tests: dict, prefix: str) -> float | None:
    """The depth-0 pp (or tg) figure of a trial's tests ({'pp512': t/s, 'tg128 @ d16384': t/s})."""
    return next((v for k, v in tests.items() if k.startswith(prefix) and "@" not in k and "+" not in k), None)


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the points no other point beats on both coordinates (larger is better)."""
    return [i for i, (x, y) in enumerate(points)
            if not any((a >= x and b >= y) and (a > x or b > y) for a, b in points)]


def _trajectory(run):
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    best, line = None, []
    for t in run.trials:
        if t.state == "complete" and t.value is not None:
            best = max(best or t.value, t.value)
            ax.plot([t.number], [t.value], "o", color="#1f77b4")
        elif t.depth0 is not None:  # pruned (or failed after depth 0): its depth-0 figure
            ax.plot([t.number], [t.depth0], "x", color="#ff7f0e")
        else:
            ax.axvline(t.number, color="#d62728", alpha=0.3)
        line.append(best)
    ax.step([t.number for t in run.trials], line, where="post", color="#2ca02c", label="best so far")
    ax.set_xlabel("trial")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(f"{run.spec.objective}: geometric mean t/s")
    ax.set_title("trajectory (o complete, x pruned at depth 0, red line failed)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _front(run):
    done = [(t, _depth0(t.tests, "pp"), _depth0(t.tests, "tg")) for t in run.trials]
    done = [(t, pp, tg) for t, pp, tg in done if pp and tg]
    if not done:
        return None
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    front = set(pareto([(pp, tg) for _t, pp, tg in done]))
    for i, (t, pp, tg) in enumerate(done):
        ax.plot([pp], [tg], "o" if i in front else ".", color="#d62728" if i in front else "#7f7f7f")
        ax.annotate(str(t.number), (pp, tg), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ordered = sorted((done[i][1], done[i][2]) for i in front)
    ax.plot([p for p, _ in ordered], [g for _, g in ordered], "-", color="#d62728", alpha=0.5, label="Pareto front")
    ax.set_xlabel("prompt processing t/s (depth 0)")
    ax.set_ylabel("generation t/s (depth 0)")
    ax.set_title("pp against tg per trial (numbers: trials)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def write_optimize_report(run, out_dir: Path | None = None) -> Path:
    """index.html and its PNGs under `out_dir` (default: the run's report/); returns the page."""
    out_dir = out_dir or run.path / "report"
    out_dir.mkdir(parents=True, exist_ok=True)
    spec, result = run.spec, run.result or {}
    figures = [figure(out_dir, "trajectory", "trajectory", _trajectory(run))] if run.trials else []
    if (fig := _front(run)) is not None:
        figures.append(figure(out_dir, "pareto", "Pareto front of pp vs tg", fig))
    chosen = from_dict(Settings, result["recommended"]).describe() if result else None
    facts = facts_html(run.path.name, [
        ("status", run.status), ("halo", __version__), ("model", spec.model), ("backend", spec.backend),
        ("workload", spec.workload), ("objective", spec.objective), ("budget", f"{spec.budget} trials"),
        ("trials run", len(run.trials)), ("lossy settings", "searched, gated by " + spec.eval if spec.allow_lossy else ""),
        ("recommended", chosen), ("why", result.get("why")), ("profile", run.profile), ("error", run.error)])
    journey = html_table("journey", ["test", "defaults t/s", "setting t/s", "change", "p", "verdict"], [
        [name, _fmt(v["defaults"]), _fmt(v["setting"]), (_fmt(v["change_pct"], "+.1f") or "-") + "%",
         _fmt(v["p_value"], ".3f"), v["verdict"]] for name, v in (result.get("tests") or {}).items()])
    gate = result.get("gate")
    gate_html = ""
    if gate:
        gate_html = ("<h2>Answers: the lossy setting against f16</h2>"
                     f"<p>{html.escape(gate['why'])} · sweep <code>{html.escape(gate['sweep'])}</code></p>"
                     + html_table("gate", ["suite", "samples", "Δ score", "95% interval", "test", "p", "verdict"], [
                         [name, str(v["n"]), _fmt(v["delta"], "+.3f"),
                          f"{_fmt(v['low'], '+.3f')} – {_fmt(v['high'], '+.3f')}", v["test"],
                          _fmt(v["p_value"], ".3g"), v["verdict"]] for name, v in gate["suites"].items()]))
    trials = html_table("trials", ["trial", "settings", "state", "objective t/s", "tests", "error"], [
        [str(t.number), t.settings.describe() if t.number else "defaults", t.state, _fmt(t.value),
         ", ".join(f"{k} {v:.1f}" for k, v in t.tests.items()), t.error or None] for t in run.trials])
    command = (f"<h2>Serving</h2><p><code>halo serve {html.escape(spec.model)}</code> runs:</p>"
               f"<pre id='command'>{html.escape(run.server_command)}</pre>") if run.server_command else ""
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>halo optimize report</title>"
            f"<style>{STYLE}</style></head><body><h1>halo optimize report</h1>{facts}"
            + "<h2>Charts</h2>" + "".join(figures)
            + "<h2>Journey: the defaults against "
            + ("the recommended setting" if result.get("trial") else "the best candidate (the defaults stand)")
            + f", re-measured ({CONFIRM_REPS} repetitions a side)</h2>" + journey
            + gate_html + "<h2>Trials</h2>" + trials + command + "</body></html>")
    write_atomic(out_dir / "index.html", page)
    return out_dir / "index.html"
