"""Service-level objectives for `halo bench serve --slo`: what a request must meet to count
as good, and whether a cell meets them as a whole.

    --slo ttft_p95=2s,itl_p95=100ms,tg_min=20

Each SLO is METRIC_STAT=LIMIT. Latencies (ttft, ttfr, itl, e2e) are upper bounds, in s or ms
(a bare number is seconds); tg (a request's generation t/s) is a lower bound. The statistic
says how the cell is judged: over its requests (ttft, ttfr, e2e, tg) or its pooled
inter-token gaps (itl): p50, p90, p95, p99, max or mean for latencies, min, p1, p5, p10, p50 or
mean for tg. A request is *good* when it finished and each of its own values meets the limit
(for itl, its own gaps at that statistic); **goodput** is good requests per second of a
round, the figure AIPerf and vLLM call by that name.
"""

from __future__ import annotations

import re
from typing import Iterable

import attrs
import numpy as np

from ..errors import HaloError

LATENCIES = {"ttft": "ttft_s", "ttfr": "ttfr_s", "e2e": "e2e_s", "itl": "itl_s"}
SPEEDS = {"tg": "tg_ts"}
LATENCY_STATS = ("p50", "p90", "p95", "p99", "max", "mean")
SPEED_STATS = ("min", "p1", "p5", "p10", "p50", "mean")


@attrs.frozen
class Slo:
    """One objective: `metric` (ttft, ttfr, itl, e2e: seconds, at most `limit`; tg: t/s, at
    least `limit`) at `stat` over a cell."""

    metric: str
    stat: str
    limit: float

    @property
    def upper(self) -> bool:
        return self.metric in LATENCIES

    def __str__(self) -> str:
        limit = f"{self.limit * 1000:g}ms" if self.upper else f"{self.limit:g}"
        return f"{self.metric}_{self.stat}={limit}"


def parse_slos(text: str) -> tuple[Slo, ...]:
    """`ttft_p95=2s,itl_p95=100ms,tg_min=20` as Slo records; HaloError naming what is wrong."""
    slos = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, value = part.partition("=")
        metric, _, stat = name.strip().partition("_")
        if not sep or not stat:
            raise HaloError(f"bad SLO '{part}': write METRIC_STAT=LIMIT, e.g. ttft_p95=2s, tg_min=20")
        if metric not in LATENCIES and metric not in SPEEDS:
            raise HaloError(f"unknown SLO metric '{metric}' in '{part}' (known: "
                            f"{', '.join([*LATENCIES, *SPEEDS])})")
        stats = LATENCY_STATS if metric in LATENCIES else SPEED_STATS
        if stat not in stats:
            raise HaloError(f"unknown statistic '{stat}' for {metric} in '{part}' (known: {', '.join(stats)})")
        slos.append(Slo(metric, stat, _limit(value.strip(), metric in LATENCIES, part)))
    if not slos:
        raise HaloError("--slo is empty: give at least one METRIC_STAT=LIMIT")
    if len({(s.metric, s.stat) for s in slos}) < len(slos):
        raise HaloError(f"an SLO is given twice in '{text}'")
    return tuple(slos)


def _limit(value: str, latency: bool, part: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d*)?|\.\d+)\s*(ms|s)?", value)
    if not match or (match.group(2) and not latency):
        unit = "a time such as 2s or 150ms" if latency else "tokens per second, a number"
        raise HaloError(f"bad SLO limit '{value}' in '{part}': {unit}")
    number = float(match.group(1))
    if number <= 0:
        raise HaloError(f"bad SLO limit '{value}' in '{part}': it must be > 0")
    return number / 1000.0 if match.group(2) == "ms" else number


def time_split(record) -> tuple[float | None, float | None, float | None]:
    """(queue, prefill, decode) seconds of one request from the server's timings; queue is what
    the server's prompt and generation times leave of the end-to-end latency (None, None, None
    without timings)."""
    timings = record.timings or {}
    prefill, decode = timings.get("prompt_ms"), timings.get("predicted_ms")
    if not (isinstance(prefill, (int, float)) and isinstance(decode, (int, float)) and record.e2e_s is not None):
        return None, None, None
    prefill, decode = prefill / 1000.0, decode / 1000.0
    return max(0.0, record.e2e_s - prefill - decode), prefill, decode


def _at(values: Iterable[float], stat: str) -> float | None:
    data = np.asarray([v for v in values if v is not None], dtype=float)
    if not data.size:
        return None
    if stat == "mean":
        return float(data.mean())
    if stat in ("max", "min"):
        return float(data.max() if stat == "max" else data.min())
    return float(np.percentile(data, float(stat[1:])))


def _meets(value: float | None, slo: Slo) -> bool:
    return value is not None and (value <= slo.limit if slo.upper else value >= slo.limit)


def request_is_good(record, slos: tuple[Slo, ...]) -> bool:
    """Whether one finished request meets every SLO with its own values (its ITL: its gaps at
    the SLO's statistic). An unknown value (a reply with no text has no TTFT) does not meet."""
    if not record.ok:
        return False
    for slo in slos:
        field = getattr(record, LATENCIES.get(slo.metric) or SPEEDS[slo.metric])
        value = _at(field, slo.stat) if slo.metric == "itl" else field
        if slo.metric == "itl" and not field:
            value = 0.0 if (record.completion_tokens or 0) <= 1 else None  # one token: no gap
        if not _meets(value, slo):
            return False
    return True


def cell_verdict(records, slos: tuple[Slo, ...]) -> tuple[bool, tuple[str, ...]]:
    """(whether the cell meets every SLO at its statistic over its finished requests, the SLOs
    it misses with the value it had). Failed requests count against it: a cell with any is
    not met ("errors" among the misses)."""
    ok = [r for r in records if r.ok]
    missed = []
    if len(ok) < len(records):
        missed.append(f"errors: {len(records) - len(ok)} of {len(records)} requests failed")
    for slo in slos:
        if slo.metric == "itl":
            value = _at((g for r in ok for g in r.itl_s), slo.stat)
        else:
            value = _at((getattr(r, LATENCIES.get(slo.metric) or SPEEDS[slo.metric]) for r in ok), slo.stat)
        if not _meets(value, slo):
            shown = "unknown" if value is None else (f"{value * 1000:.1f}ms" if slo.upper else f"{value:.1f}")
            missed.append(f"{slo}: {shown}")
    return not missed and bool(ok), tuple(missed)
