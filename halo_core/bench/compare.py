"""Before/after comparison of two bench runs, cell by cell, with a noise test.

A change is called significant when Welch's t-test on the per-repetition samples
(`samples_ts`) gives p < 0.05 *and* the means differ by more than 1%; otherwise it is
"within noise". Cells without at least two samples on each side cannot be tested.
"""

from __future__ import annotations

import attrs

from ..records import BenchGroup, BenchResult, BenchRun
from ..stats import verdict, welch_p


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
    """(change in %, Welch p-value, verdict) of one test measured before and after a change:
    faster | slower | within noise | untested (fewer than two samples a side)."""
    change = 100.0 * (after.avg_ts - before.avg_ts) / before.avg_ts if before.avg_ts else None
    p = welch_p(list(before.samples_ts), list(after.samples_ts))
    return (None if change is None else round(change, 2), None if p is None else round(p, 4), verdict(change, p))


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
