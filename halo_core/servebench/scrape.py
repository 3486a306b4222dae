"""llama-server's own view of a serve-bench run: its Prometheus `/metrics` (llama-server
started with `--metrics`; halo starts it so), scraped while the cells run, kept in
`server-metrics.jsonl` and summarised per cell over the cell's time window.

The text format is parsed by prometheus_client's parser. Counters (`..._total`) are read as the
change over a cell's window: the server's prompt and generation t/s are Δtokens ÷ Δseconds of
the time it spent on them; gauges (requests processing and deferred, busy slots per decode) as
their maximum in the window.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import attrs
import httpx

from ..store import append_line

FILE = "server-metrics.jsonl"
PREFIX = "llamacpp:"
INTERVAL = 0.5  # seconds between scrapes: a cell of a few seconds gets several

# counter pairs whose ratio over a window is a speed: (tokens, seconds)
SPEEDS = {
    "prompt_ts": ("prompt_tokens_total", "prompt_seconds_total"),
    "predicted_ts": ("tokens_predicted_total", "tokens_predicted_seconds_total"),
}
PEAKS = {  # gauges: their largest value in the window
    "processing_max": "requests_processing",
    "deferred_max": "requests_deferred",
    "busy_slots_max": "n_busy_slots_per_decode",
}


def parse_metrics(text: str) -> dict[str, float]:
    """{name: value} of the llama.cpp samples in a /metrics page (`llamacpp:` dropped; a
    labelled sample keyed `name{label="value",...}`). ValueError when it is not the format."""
    from prometheus_client.parser import text_string_to_metric_families

    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(PREFIX):
                continue
            name = sample.name.removeprefix(PREFIX)
            if sample.labels:
                name += "{" + ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items())) + "}"
            values[name] = float(sample.value)
    return values


async def fetch(client: httpx.AsyncClient) -> dict[str, float]:
    """One scrape of GET /metrics; raises ValueError saying why there is none (HTTP status, not
    the Prometheus format, no llama.cpp samples) or httpx.HTTPError."""
    response = await client.get("/metrics", timeout=5.0)
    if response.status_code != 200:
        hint = " (llama-server serves it with --metrics)" if response.status_code in (404, 501) else ""
        raise ValueError(f"GET /metrics: HTTP {response.status_code}{hint}")
    try:
        values = parse_metrics(response.text)
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on other text
        raise ValueError(f"GET /metrics is not Prometheus text ({type(exc).__name__})") from None
    if not values:
        raise ValueError("GET /metrics has no llama.cpp samples (llamacpp:*)")
    return values


class Scraper:
    """Scrapes /metrics every `interval` seconds into `path` (one JSON line a scrape:
    {"time": epoch seconds, "metrics": {...}}) until stopped. A failed scrape is skipped: the
    server's view has a gap, the run goes on."""

    def __init__(self, client: httpx.AsyncClient, path: Path, interval: float = INTERVAL):
        self.client, self.path, self.interval = client, Path(path), interval
        self.rows: list[dict] = []
        self._task: asyncio.Task | None = None

    async def scrape(self) -> None:
        try:
            values = await fetch(self.client)
        except (ValueError, httpx.HTTPError):
            return
        row = {"time": round(time.time(), 3), "metrics": values}
        self.rows.append(row)
        append_line(self.path, json.dumps(row))

    async def _loop(self) -> None:
        while True:
            await self.scrape()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
        await self.scrape()  # the end of the last cell


@attrs.frozen
class ServerView:
    """llama-server's /metrics over one cell's window: its prompt and generation t/s (counters'
    change), the most requests processing and deferred and busy slots per decode (gauges)."""

    scrapes: int
    prompt_ts: float | None = None
    predicted_ts: float | None = None
    processing_max: float | None = None
    deferred_max: float | None = None
    busy_slots_max: float | None = None


def window(rows: list[dict], start: float, end: float) -> ServerView | None:
    """The server's view of [start, end] (epoch seconds): speeds from the counters' change
    between the last scrape at or before `start` and the first at or after `end`, the gauges'
    peaks in between; None without two scrapes around the window."""
    rows = sorted(rows, key=lambda r: r["time"])
    start += 0.001  # (times are kept to the millisecond)
    before = [r for r in rows if r["time"] <= start]
    after = [r for r in rows if r["time"] >= end - 0.001]
    if not before or not after:
        return None
    first, last = before[-1], after[0]
    inside = [r for r in rows if first["time"] <= r["time"] <= last["time"]]
    view: dict = {"scrapes": len(inside)}
    for key, (tokens, seconds) in SPEEDS.items():
        d_tokens = last["metrics"].get(tokens, 0.0) - first["metrics"].get(tokens, 0.0)
        d_seconds = last["metrics"].get(seconds, 0.0) - first["metrics"].get(seconds, 0.0)
        view[key] = round(d_tokens / d_seconds, 3) if d_seconds > 0 and d_tokens >= 0 else None
    for key, gauge in PEAKS.items():
        seen = [r["metrics"][gauge] for r in inside if gauge in r["metrics"]]
        view[key] = max(seen) if seen else None
    return ServerView(**view)
