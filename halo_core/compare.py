"""Before/after comparison of two bench runs, cell by cell, with a noise test.

A change is called significant when Welch's t-test on the per-repetition samples
(`samples_ts`) gives p < 0.05 *and* the means differ by more than 1%; otherwise it is
"within noise". Cells without at least two samples on each side cannot be tested.
"""

from __future__ import annotations

import math
from statistics import mean, variance

import attrs

from .records import BenchGroup, BenchResult, BenchRun

ALPHA = 0.05
MIN_CHANGE_PCT = 1.0


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


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def welch_p(before: list[float], after: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test, or None with fewer than two samples a side."""
    if len(before) < 2 or len(after) < 2:
        return None
    va, vb = variance(before) / len(before), variance(after) / len(after)
    diff = mean(after) - mean(before)
    if va + vb == 0:
        return 0.0 if diff else 1.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(before) - 1) + vb ** 2 / (len(after) - 1))
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def _key(r: BenchResult) -> tuple:
    return (r.model, r.backend, r.group, r.kv, r.test, r.n_batch, r.n_ubatch)


def verdict(change_pct: float | None, p: float | None, higher_is_better: bool = True) -> str:
    """faster | slower (p < ALPHA and the change exceeds MIN_CHANGE_PCT) | within noise |
    untested (no p-value)."""
    if p is None:
        return "untested"
    if p < ALPHA and change_pct is not None and abs(change_pct) > MIN_CHANGE_PCT:
        return "faster" if (change_pct > 0) == higher_is_better else "slower"
    return "within noise"


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
