"""`halo bench serve --slo ... --capacity concurrency|rate`: the largest load that meets the
SLOs, searched level by level on the live server.

The search is a pure function of the levels already measured (`next_level`), so a resumed run
replays its recorded cells and continues where it stopped:

1. coarse: the first level (concurrency 1, or the lowest `--rate`), then double the highest
   level that met the SLOs, up to the ceiling (the largest `--concurrency` / `--rate`);
2. bisection between the highest level that met and the lowest above it that did not, down to
   one request (concurrency) or 10% (rate).

A level that cannot be held — failed requests, or queueing that grows every round (three or
more) — is
*saturated*: it counts as a miss, and nothing above it is tried, so an overloaded server ends
the search early instead of hanging it. When it ends, each measured level gets a bootstrap
probability of meeting the SLOs (its requests resampled, the cell's verdict recomputed); the
boundary is the highest level that met, and its interval runs from the highest level that met in
97.5% of the resamples to the highest that met in 2.5% of them.
"""

from __future__ import annotations

import attrs
import numpy as np

from ..store import from_dict
from .slo import Slo, cell_verdict, time_split

MODES = ("concurrency", "rate")
RESAMPLES = 400
# queueing that rose every round, over at least 3 rounds, to this many times the first round's
# (+ QUEUE_SLACK_S) is load the server cannot hold; fewer rounds are no evidence either way
QUEUE_GROWTH = 2.0
QUEUE_SLACK_S = 0.25


@attrs.frozen
class Level:
    """One measured level of a capacity search."""

    level: float
    met: bool
    saturated: str = ""  # why the server could not hold it ("" when it could)
    p_meet: float | None = None  # bootstrap probability of meeting the SLOs
    goodput: float | None = None  # good requests per second (the cell's mean over rounds)
    missed: tuple[str, ...] = attrs.field(default=(), converter=tuple)


def _levels(value) -> tuple[Level, ...]:
    return tuple(lv if isinstance(lv, Level) else Level(**lv) for lv in value)


def _interval(value):
    return None if value is None else tuple(value)


@attrs.frozen
class Capacity:
    """What a capacity search found: every level it measured, the boundary (the highest level
    that met the SLOs; None when none did), its bootstrap interval and why it stopped."""

    mode: str
    slo: str
    levels: tuple[Level, ...] = attrs.field(converter=_levels)  # (from run.json's dicts too)
    boundary: float | None
    interval: tuple[float | None, float | None] | None = attrs.field(converter=_interval)
    stopped: str
    unit: str = ""  # what a level counts: "concurrent requests", "requests/s", "concurrent sessions"


def next_level(mode: str, measured: dict[float, bool], low: float, ceiling: float) -> float | None:
    """The next level to measure given {level: met} so far; None when the search is done."""
    if not measured:
        return 1 if mode == "concurrency" else low
    met = [level for level, ok in measured.items() if ok]
    if not met:
        return None  # the first level already misses
    best = max(met)
    above = [level for level, ok in measured.items() if not ok and level > best]
    if not above:
        if best >= ceiling:
            return None
        step = min(best * 2, ceiling)
        return int(step) if mode == "concurrency" else round(step, 3)
    worst = min(above)
    if mode == "concurrency":
        return None if worst - best <= 1 else (int(best) + int(worst)) // 2
    return None if worst <= best * 1.1 else round((best + worst) / 2, 3)


def saturation(records) -> str:
    """Why a level's requests show a server that cannot hold it; "" when they do not."""
    failed = [r for r in records if not r.ok]
    if failed:
        return f"{len(failed)} of {len(records)} requests failed ({failed[0].error})"
    rounds: dict[int, list[float]] = {}
    for r in records:
        queue = time_split(r)[0]
        if queue is not None:
            rounds.setdefault(r.rep, []).append(queue)
    means = [float(np.mean(rounds[k])) for k in sorted(rounds)]
    if len(means) >= 3 and all(a < b for a, b in zip(means, means[1:])) \
            and means[-1] > QUEUE_GROWTH * means[0] + QUEUE_SLACK_S:
        return f"queueing grew round over round ({means[0] * 1000:.0f} ms -> {means[-1] * 1000:.0f} ms)"
    return ""


def judge_level(level: float, records, slos: tuple[Slo, ...], goodput: float | None,
                seed: int = 0) -> Level:
    """A measured level: met (and not saturated), and its bootstrap probability of meeting."""
    met, missed = cell_verdict(records, slos)
    saturated = saturation(records)
    rng = np.random.default_rng(seed)
    records = list(records)
    hits = 0
    for _ in range(RESAMPLES):
        sample = [records[i] for i in rng.integers(0, len(records), len(records))]
        hits += cell_verdict(sample, slos)[0]
    return Level(level, met and not saturated, saturated, round(hits / RESAMPLES, 3), goodput, missed)


def conclude(mode: str, slo: str, levels: list[Level], ceiling: float, sessions: bool = False) -> Capacity:
    """The boundary, its interval and the reason the search stopped, from its levels (`sessions`:
    a level is that many agentic sessions at once)."""
    levels = sorted(levels, key=lambda lv: lv.level)
    met = [lv.level for lv in levels if lv.met]
    boundary = max(met) if met else None
    sure = [lv.level for lv in levels if (lv.p_meet or 0) >= 0.975 and not lv.saturated]
    maybe = [lv.level for lv in levels if (lv.p_meet or 0) >= 0.025 and not lv.saturated]
    interval = (max(sure) if sure else None, max(maybe) if maybe else None) if levels else None
    unit = ("concurrent sessions" if sessions else "concurrent requests") if mode == "concurrency" else "requests/s"
    if boundary is None:
        first = levels[0] if levels else None
        why = (first.saturated or "; ".join(first.missed)) if first else "nothing measured"
        stopped = f"no level meets the SLOs: {first.level:g} {unit} already misses ({why})" if first else why
    elif boundary >= ceiling:
        stopped = f"the ceiling meets the SLOs: capacity is at least {boundary:g} {unit} (raise it to search further)"
    else:
        above = min((lv for lv in levels if lv.level > boundary and not lv.met), key=lambda lv: lv.level)
        why = above.saturated or "; ".join(above.missed)
        stopped = (f"boundary found: {boundary:g} {unit} meet the SLOs, {above.level:g} "
                   f"{'saturate' if above.saturated else 'do not'} ({why})")
    return Capacity(mode, slo, tuple(levels), boundary, interval, stopped, unit)


# -- the slot count (-np) by measurement: one search per slot count (`--slots`) ---------------

def _capacity(value):
    return from_dict(Capacity, value) if isinstance(value, dict) else value


@attrs.frozen
class SlotResult:
    """One slot count of a `--slots` search: the server's -np and -c, and the capacity search
    run against it (None when that server did not start; `error` says why)."""

    slots: int
    ctx: int
    capacity: Capacity | None = attrs.field(default=None, converter=_capacity)
    error: str = ""

    @property
    def goodput(self) -> float | None:
        """Good requests per second at the boundary (the cell's mean over rounds)."""
        cap = self.capacity
        if cap is None or cap.boundary is None:
            return None
        return next((lv.goodput for lv in cap.levels if lv.level == cap.boundary), None)


def _results(value) -> tuple[SlotResult, ...]:
    return tuple(r if isinstance(r, SlotResult) else from_dict(SlotResult, r) for r in value)


@attrs.frozen
class SlotChoice:
    """Which -np serves the most: the slot count whose capacity (the largest concurrency
    meeting the SLOs) is highest, then the one with more goodput there, then fewer slots (less
    memory for the same service)."""

    results: tuple[SlotResult, ...] = attrs.field(converter=_results)
    best: int | None
    why: str


def choose_slots(results) -> SlotChoice:
    """The SlotChoice of the slot counts measured so far."""
    results = tuple(sorted(results, key=lambda r: r.slots))
    ranked = sorted((r for r in results if r.capacity is not None and r.capacity.boundary is not None),
                    key=lambda r: (r.capacity.boundary, r.goodput or 0.0, -r.slots), reverse=True)
    if not ranked:
        why = "no slot count meets the SLOs" if results else "nothing measured"
        return SlotChoice(results, None, why)

    def said(r: SlotResult) -> str:
        good = f", goodput {r.goodput:.2f} req/s there" if r.goodput is not None else ""
        return f"-np {r.slots}: {r.capacity.boundary:g} {r.capacity.unit or 'concurrent requests'} meet the SLOs{good}"

    why = said(ranked[0]) + (f" (next best {said(ranked[1])})" if len(ranked) > 1 else "")
    return SlotChoice(results, ranked[0].slots, why)
