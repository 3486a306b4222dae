"""Before/after comparison of two bench runs, cell by cell, by the one speed rule.

halo_core.stats.judge_speed on the per-repetition samples (`samples_ts`): faster or slower
when Welch's t-test gives p < 0.05 *and* the means differ by more than 1%, else "within
noise". Cells without at least two samples on each side cannot be tested.
"""

from __future__ import annotations

import attrs

from ..records import BenchGroup, BenchResult, BenchRun
from ..stats import compare_speed


@attrs.frozen
class CellDelta:
    model: str
    backend: str
    group: BenchGroup | None
    kv: str
    test: str
    before_ts: float | None
    after_ts: float | None
    change_pct: float | None
    p_value: float | None
    verdict: str  # faster | slower | within noise | untested | only before | only after


def _key(r: BenchResult) -> tuple:
    return (r.model, r.backend, r.group, r.kv, r.test, r.n_batch, r.n_ubatch)


def speed_change(before: BenchResult, after: BenchResult) -> tuple[float | None, float | None, str]:
    """(change in %, p-value, verdict) of one test measured before and after a change:
    faster | slower | within noise | untested (fewer than two samples a side)."""
    c = compare_speed(list(before.samples_ts), list(after.samples_ts))
    change = c.change_pct
    if c.before is None or c.after is None:  # no samples recorded: the change of the averages
        change = 100.0 * (after.avg_ts - before.avg_ts) / before.avg_ts if before.avg_ts else None
    return (None if change is None else round(change, 2),
            None if c.p_value is None else round(c.p_value, 4), c.verdict)


def compare_runs(before: BenchRun, after: BenchRun) -> list[CellDelta]:
    """One CellDelta per cell present in either run, in the before run's order."""
    a = {_key(r): r for r in before.results}
    b = {_key(r): r for r in after.results}
    keys = list(a) + [k for k in b if k not in a]
    out = []
    for key in keys:
        ra, rb = a.get(key), b.get(key)
        model, backend, group, kv, test = key[:5]
        if ra is None or rb is None:
            out.append(CellDelta(model, backend, group, kv, test, ra and ra.avg_ts, rb and rb.avg_ts,
                                 None, None, "only after" if ra is None else "only before"))
            continue
        out.append(CellDelta(model, backend, group, kv, test, ra.avg_ts, rb.avg_ts,
                             *speed_change(ra, rb)))
    return out
