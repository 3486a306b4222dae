"""`halo bench serve`: the serving benchmark of any OpenAI-compatible endpoint.

Each cell (a context depth at one concurrency, or at one Poisson request rate) sends `reps`
rounds of streamed chat completions. Per request, halo keeps what the client saw (time to the
first response, to the first content token, between tokens, to the end) and what the server
says it did (llama-server's `timings`, the API's `usage`). Prompts come from the corpus shipped
with halo and count exactly depth + pp tokens as the server counts them (llama-server's
/apply-template and /tokenize; elsewhere the API's `usage` is recorded), each behind a unique
prefix and with `cache_prompt: false`: no request is served from the prompt cache unless asked
for, and a cell whose requests were is flagged. `workload="agentic"` (agentic.py) sends
multi-turn coding-agent sessions instead, each on its own slot with the prompt cache on, and
summarizes them turn by turn (TurnSummary: how much of each prompt the cache served).

A run directory, $HALO_HOME/runs/serve/<tag>-<UTC time>/:
  run.json        spec, status, error, endpoint and model, the servers halo started (argv, log)
  system.json     machine provenance, the server's /props and /v1/models, the backend's build
  requests.jsonl  one line per request, appended after each round: the source of truth
  cells.jsonl     one line per finished cell, naming the attempt that counts and its status:
                  ok, errors (failed requests), cut (the endpoint died under it); a resumed
                  run measures a cell again unless it was ok (a capacity search: unless cut,
                  since failed requests are a saturated level's finding)
  results.json    the cell summaries, rewritten atomically after each cell
  server.log      what the server halo started logged during the run (--slots: one
                  server-npN.log per slot count)
"""

from __future__ import annotations

import asyncio
import json
import random
import time
import uuid
from importlib import resources
from pathlib import Path
from typing import Callable

import attrs
import httpx
import numpy as np

from .. import runs
from ..chat import bearer
from ..stats import compare_speed, judge_speed
from ..llama.endpoints import require
from ..errors import HaloError
from ..machine.hostfacts import system_state
from ..machine.metrics import MetricsSampler
from ..plugins import PluginHost, get_host
from ..records import Note, Run, RunStatus, as_tuple
from ..runs import RunState, now, read_jsonl
from ..llama.process import pid_dir
from ..llama.server import ServerSpec, record_slots, start_server
from ..llama.process import free_port
from ..store import append_line, from_dict, to_dict, write_json
from . import agentic, scrape
from .agentic import AgentSession, make_session
from .slo import Slo, cell_verdict, parse_slos, request_is_good, time_split
from .capacity import (
    MODES, Capacity, SlotChoice, SlotResult, choose_slots, conclude, judge_level, next_level, saturation,
)

KIND = "serve"  # runs/serve/

REQUESTS_PER_RATE = 8  # requests per round of a --rate cell unless --requests says otherwise
CTX_MARGIN = 64        # tokens a server's slots get beyond depth + pp + tg (matrix_server)


def _server_spec(value):
    return from_dict(ServerSpec, value) if isinstance(value, dict) else value


@attrs.frozen
class ServeBenchSpec:
    """What `halo bench serve` measures: a depths × (concurrency levels + request rates) matrix of
    streamed chat completions with `pp` prompt tokens after `depth` tokens of context and `tg`
    generated tokens, `reps` rounds per cell.

    The endpoint is `endpoint`, or the server halo starts from `server` (port 0: a free one;
    `matrix_server` gives the slots and context the matrix needs), or else the one `halo eval`
    would detect. `requests` per round defaults to the concurrency (REQUESTS_PER_RATE for a
    rate). `prompt_cache` leaves the server's prompt cache on and sends the same prompt to
    every request of a cell. (An endpoint's API key is no part of the spec: run.json keeps the
    spec, and a key must not land on disk.)
    """

    endpoint: str | None = None
    server: ServerSpec | None = attrs.field(default=None, converter=_server_spec)
    model: str | None = None
    depths: tuple[int, ...] = attrs.field(default=(0,), converter=as_tuple)
    pp: int = 512
    tg: int = 128
    concurrency: tuple[int, ...] = attrs.field(default=(1,), converter=as_tuple)
    rates: tuple[float, ...] = attrs.field(default=(), converter=as_tuple)
    requests: int | None = None
    reps: int = 3
    prompt_cache: bool = False
    tag: str = "serve"
    timeout: float = 600.0
    seed: int = 0
    backend_options: dict[str, str] = attrs.field(factory=dict)  # for the server halo starts
    slo: str = ""  # service-level objectives, as given (slo.parse_slos): goodput and a verdict per cell
    # "concurrency" or "rate": search the largest load meeting `slo` (capacity.py) instead of
    # running the matrix; the largest --concurrency / --rate is the ceiling
    capacity: str = ""
    # "" (requests of one shape) or "agentic" (agentic.py): each concurrency level runs that many
    # coding-agent sessions at once, each of `turns` turns on its own slot, the prompt cache on;
    # `pp` is a session's first prompt, `tg` the median reply, `tool_tokens` a tool output's range
    workload: str = ""
    turns: int = agentic.TURNS
    tool_tokens: tuple[int, int] = attrs.field(default=agentic.TOOL_TOKENS, converter=tuple)
    # with `server` and `capacity`: the search is run once per slot count, the server restarted
    # with -np N and N slots of the context one request (or session) needs; SlotChoice says
    # which -np serves the most
    slots: tuple[int, ...] = attrs.field(default=(), converter=as_tuple)


@attrs.frozen
class Stat:
    """A sample's size, mean, standard deviation, percentiles and range."""

    n: int
    mean: float
    std: float
    p50: float
    p95: float
    p99: float
    min: float
    max: float

    @classmethod
    def of(cls, values, scale: float = 1.0) -> "Stat | None":
        data = np.asarray([v for v in values if v is not None], dtype=float) * scale
        if not data.size:
            return None
        p50, p95, p99 = (float(v) for v in np.percentile(data, [50, 95, 99]))
        std = float(data.std(ddof=1)) if data.size > 1 else 0.0
        return cls(int(data.size), *(round(v, 3) for v in (float(data.mean()), std, p50, p95, p99,
                                                          float(data.min()), float(data.max()))))


@attrs.frozen
class RequestRecord:
    """One streamed request: client-side times (seconds from sending it), the server's counts
    and `timings`, and the speeds derived from them."""

    cell: str
    attempt: str
    rep: int
    index: int
    uid: str  # the unique prefix; "" with the prompt cache on
    start_s: float  # when it was sent, from the start of its round
    ok: bool
    error: str = ""
    http_status: int | None = None
    prompt_counted: int | None = None  # halo's count before sending (/apply-template + /tokenize)
    prompt_tokens: int | None = None  # the server's count (usage)
    completion_tokens: int | None = None
    cached_tokens: int | None = None  # prompt tokens the server took from its cache
    shared_tokens: int = 0  # the chat template's opening, which every request shares (Prompt)
    ttfr_s: float | None = None  # first streamed event
    first_token_s: float | None = None  # first generated token of any kind
    ttft_s: float | None = None  # first content token (not reasoning, not an empty chunk)
    last_token_s: float | None = None
    e2e_s: float | None = None
    itl_s: tuple[float, ...] = attrs.field(default=(), converter=as_tuple)
    pp_ts: float | None = None
    pp_source: str = ""  # "server" (its timings) | "estimated" (prompt tokens / time to first token)
    tg_ts: float | None = None
    finish_reason: str = ""
    timings: dict | None = None  # the server's own, as it sent them
    session: int | None = None  # agentic: the session (of its round) and its turn, from 1
    turn: int | None = None


@attrs.frozen
class TurnSummary:
    """One turn of an agentic cell's sessions, over its requests: the prompt and the tokens the
    server took from its cache (medians), the share of prompt tokens that came from the cache
    (`reuse_pct`: cached / prompt tokens, summed), TTFT (ms), pp t/s (of what was not cached)
    and tg t/s."""

    turn: int
    requests: int
    errors: int
    prompt_tokens: int | None
    cached_tokens: int | None
    reuse_pct: float | None
    ttft_ms: Stat | None
    pp_ts: Stat | None
    tg_ts: Stat | None


@attrs.frozen
class ServeCell:
    """One cell's summary over its requests. Latencies in ms; speeds in tokens/s; `req_per_s`
    and `agg_ts` (generated tokens/s of all requests together) are per round."""

    cell: str
    depth: int
    pp: int
    tg: int
    concurrency: int | None
    rate: float | None
    reps: int
    requests: int
    errors: int
    prompt_tokens: int | None
    pp_source: str
    pp_ts: Stat | None
    tg_ts: Stat | None
    ttfr_ms: Stat | None
    ttft_ms: Stat | None
    itl_ms: Stat | None
    e2e_ms: Stat | None
    req_per_s: Stat | None
    agg_ts: Stat | None
    # requests the server served partly from its prompt cache, beyond the chat template's
    # opening every request shares (RequestRecord.shared_tokens), and the share of all prompt
    # tokens those hits took from the cache
    cache_hits: int
    cached_pct: float
    draft_accepted_pct: float | None = None  # speculative decoding: accepted / drafted tokens
    first_error: str = ""
    # mean power over the cell's rounds (metrics.csv: the GPU's, else the CPU package's) and
    # the generated tokens per joule at that power (agg t/s / W)
    power_w: float | None = None
    tokens_per_joule: float | None = None
    # where a request's time went, from the server's own timings (ms): prefill (prompt_ms),
    # decode (predicted_ms) and the rest of its end-to-end latency — waiting for a slot, the
    # chat template, HTTP — as queue
    queue_ms: Stat | None = None
    prefill_ms: Stat | None = None
    decode_ms: Stat | None = None
    # llama-server's /metrics over the cell's window (scrape.window): its prompt and generation
    # t/s, the most requests processing and deferred, busy slots per decode
    server: scrape.ServerView | None = None
    # halo's own client: its process's CPU seconds per 1,000 generated tokens over the cell
    # (building prompts, streaming, parsing; the sampler threads included): the client is
    # not the bottleneck while this stays small against the machine's cores
    client_cpu_s_per_1k: float | None = None
    # with --slo: requests that met every SLO (slo.request_is_good), those per second of a
    # round (goodput), whether the cell meets the SLOs at their statistics and what it missed
    good: int | None = None
    goodput: Stat | None = None
    slo_met: bool | None = None
    slo_missed: tuple[str, ...] = attrs.field(default=(), converter=as_tuple)
    # --workload agentic: the workload's name and a summary per turn of its sessions
    workload: str = ""
    per_turn: tuple[TurnSummary, ...] = attrs.field(default=(), converter=as_tuple)
    slots: int | None = None  # --slots: the server's -np for this cell

    @property
    def load(self) -> str:
        load = load_label(self.concurrency, self.rate)
        return f"np{self.slots} {load}" if self.slots else load

    @property
    def shape(self) -> str:
        """What its requests were, for people: "depth 4096", or the workload ("agentic")."""
        return self.workload or f"depth {self.depth}"


def load_label(concurrency: int | None, rate: float | None) -> str:
    """A cell's load for people: "c4" (concurrent requests) or "2 r/s" (a request rate)."""
    return f"c{concurrency}" if concurrency else f"{rate:g} r/s"


@attrs.define
class ServeRun(Run):
    """A serve-bench run directory (its spec a ServeBenchSpec) and what it holds so far."""

    endpoint: str = ""
    model: str = ""
    capacity: "Capacity | None" = None  # a capacity search's result
    slot_choice: "SlotChoice | None" = None  # --slots: each slot count's search, and the best
    cells: list[ServeCell] = attrs.field(factory=list)
    requests: list[RequestRecord] = attrs.field(factory=list)


class EndpointDown(HaloError):
    """The endpoint stopped answering during the run."""


# -- the matrix --------------------------------------------------------------------------------

@attrs.frozen
class Cell:
    """One cell of the matrix: a depth at one concurrency level or one request rate."""

    depth: int
    pp: int
    tg: int
    concurrency: int | None
    rate: float | None
    requests: int  # per round (agentic: sessions per round)
    workload: str = ""
    turns: int = 0  # agentic: turns per session
    tool_tokens: tuple[int, int] = (0, 0)  # agentic: a tool output's corpus tokens, lowest and highest
    slots: int = 0  # --slots: the server's -np (0: the server as it was started)

    @property
    def key(self) -> str:
        load = f"c{self.concurrency}" if self.concurrency else f"r{self.rate:g}"
        if self.slots:  # e.g. d0|pp512|tg128|np4|c8
            load = f"np{self.slots}|{load}"
        if self.workload:  # e.g. agentic6|pp4096|tool128-1024|tg128|c4
            lo, hi = self.tool_tokens
            return f"{self.workload}{self.turns}|pp{self.pp}|tool{lo}-{hi}|tg{self.tg}|{load}"
        return f"d{self.depth}|pp{self.pp}|tg{self.tg}|{load}"


def _make_cell(spec: ServeBenchSpec, depth: int, concurrency: int | None, rate: float | None,
               slots: int = 0) -> Cell:
    requests = spec.requests or concurrency or REQUESTS_PER_RATE
    if spec.workload:
        return Cell(depth, spec.pp, spec.tg, concurrency, rate, requests, spec.workload, spec.turns,
                    spec.tool_tokens, slots)
    return Cell(depth, spec.pp, spec.tg, concurrency, rate, requests, slots=slots)


def plan(spec: ServeBenchSpec) -> list[Cell]:
    """Every cell, depth by depth, concurrency levels before rates."""
    cells = []
    for depth in spec.depths:
        cells += [_make_cell(spec, depth, c, None) for c in spec.concurrency]
        cells += [_make_cell(spec, depth, None, r) for r in spec.rates]
    return cells


def check_spec(spec: ServeBenchSpec) -> None:
    """Bad values as one HaloError line (the CLI checks its flags before this)."""
    if spec.endpoint and spec.server:
        raise HaloError("give an endpoint or a server to start, not both")
    if spec.pp < 1 or spec.tg < 2:
        raise HaloError("pp must be >= 1 and tg >= 2 (tg t/s needs two tokens)")
    if any(d < 0 for d in spec.depths) or not spec.depths:
        raise HaloError("depths must be whole numbers >= 0")
    if not spec.concurrency and not spec.rates:
        raise HaloError("give at least one concurrency level or request rate")
    if any(c < 1 for c in spec.concurrency) or any(r <= 0 for r in spec.rates):
        raise HaloError("concurrency levels must be >= 1 and request rates > 0")
    if spec.reps < 1 or (spec.requests is not None and spec.requests < 1):
        raise HaloError("reps and requests must be >= 1")
    if spec.slo:
        parse_slos(spec.slo)
    if spec.workload not in ("", "agentic"):
        raise HaloError(f"unknown workload '{spec.workload}' (known: agentic)")
    if spec.turns < 1:
        raise HaloError("turns must be >= 1")
    if len(spec.tool_tokens) != 2 or not 1 <= spec.tool_tokens[0] <= spec.tool_tokens[1]:
        raise HaloError("tool tokens are a range LO,HI with 1 <= LO <= HI")
    if spec.workload:
        if spec.rates:
            raise HaloError("--rate does not apply to --workload agentic: each --concurrency level is "
                            "that many sessions at once")
        if spec.depths != (0,):
            raise HaloError("--depths does not apply to --workload agentic: a session's context is its "
                            "own turns (--pp, --turns, --tool-tokens)")
    if spec.capacity:
        if spec.capacity not in MODES:
            raise HaloError(f"unknown capacity search '{spec.capacity}' (known: {', '.join(MODES)})")
        if not spec.slo:
            raise HaloError("a capacity search needs SLOs to meet: give --slo, e.g. ttft_p95=2s,tg_min=20")
        if len(spec.depths) != 1:
            raise HaloError("a capacity search runs at one depth: give one --depths value")
        if spec.capacity == "rate" and not spec.rates:
            raise HaloError("--capacity rate searches between the lowest and highest --rate: give --rate")
        if spec.capacity == "concurrency" and spec.rates:
            raise HaloError("--capacity concurrency searches up to the largest --concurrency: leave --rate out")
    if spec.slots:
        if not (spec.capacity and spec.server):
            raise HaloError("--slots needs a server halo starts (MODEL) and a capacity search (--capacity)")
        if any(n < 1 for n in spec.slots) or len(set(spec.slots)) != len(spec.slots):
            raise HaloError("--slots takes distinct slot counts >= 1, e.g. 1,4,16")


def _bounds(spec: ServeBenchSpec) -> tuple[float, float]:
    """(the lowest, the highest) level of a capacity search."""
    if spec.capacity == "rate":
        return min(spec.rates), max(spec.rates)
    return 1, max(spec.concurrency)


def capacity_cell(spec: ServeBenchSpec, level: float, slots: int = 0) -> Cell:
    if spec.capacity == "rate":
        return _make_cell(spec, spec.depths[0], None, level, slots)
    return _make_cell(spec, spec.depths[0], int(level), None, slots)


def cells_for(spec: ServeBenchSpec, keys) -> list[Cell]:
    """The cells of a run in order: the matrix's, or a capacity search's measured levels
    (`keys`: those cells.jsonl holds), by slot count, lowest load first."""
    if not spec.capacity:
        return plan(spec)
    levels = set()
    for key in keys:
        parts = key.split("|")
        load = parts[-1]
        slots = int(parts[-2][2:]) if parts[-2].startswith("np") else 0
        levels.add((slots, float(load[1:]) if load.startswith("r") else int(load[1:])))
    return [capacity_cell(spec, level, slots) for slots, level in sorted(levels)]


def _level(cell: "Cell | ServeCell") -> float:
    """A cell's load as a number: its concurrency, or its request rate."""
    return cell.concurrency if cell.concurrency else cell.rate


def matrix_server(spec: ServeBenchSpec, parallel: int | None = None) -> tuple[int, int]:
    """(parallel, ctx) for a server that runs the matrix: one slot per concurrent request (4
    with rates only; `parallel` when given), each slot holding the longest request (agentic: one
    slot per session in flight, each holding the longest session)."""
    parallel = parallel or max(spec.concurrency or (4,))
    per_slot = max(spec.depths) + spec.pp + spec.tg + CTX_MARGIN
    if spec.workload:
        per_slot = agentic.longest_session(spec.pp, spec.tg, spec.turns, spec.tool_tokens) + CTX_MARGIN
    return parallel, -(-per_slot * parallel // 256) * 256


# -- prompts of an exact token count -------------------------------------------------------------

def corpus_text(min_chars: int, seed: int = 0) -> str:
    """Text from the sentences shipped with halo, shuffled by `seed`, at least `min_chars` long."""
    sentences = resources.files(__package__).joinpath("corpus.txt").read_text().split("\n")
    sentences = [s for s in sentences if s.strip()]
    rng = random.Random(seed)
    out: list[str] = []
    size = 0
    while size < min_chars:
        batch = sentences[:]
        rng.shuffle(batch)
        out += batch
        size += sum(len(s) + 1 for s in batch)
    return " ".join(out)


@attrs.frozen
class Prompt:
    """One request's chat messages, halo's count of their tokens (None where only the server
    can count) and how many of them the chat template puts before the first message's text
    (every request shares those, so a cache holding them is no hit)."""

    messages: list
    uid: str
    counted: int | None
    shared: int = 0


class Prompts:
    """Chat messages of depth + pp tokens. On llama-server the corpus is tokenized once
    (/tokenize with pieces) and every prompt is counted the way the server will count it
    (/apply-template, then /tokenize) and trimmed until it is exact. Elsewhere the size comes
    from tokens per word measured through the API's `usage`, and the server's count is what
    the records keep."""

    def __init__(self, client: httpx.AsyncClient, model: str, exact: bool):
        self.client, self.model, self.exact = client, model, exact
        self.pieces: list[bytes] = []  # the corpus's tokens, each as the bytes of its text
        self.words: list[str] = []
        self.per_word, self.overhead = 1.3, 0.0
        self.heads: dict[bool, int] = {}

    async def prepare(self, longest: int, seed: int) -> None:
        """Tokenize the corpus on llama-server, or measure tokens per word through `usage`
        where it cannot (another server, or a llama-server too old for /apply-template or
        /tokenize with pieces)."""
        need = 2 * longest + 1024  # a context slice and, apart from it, the prompt's
        chars = 6 * need
        while self.exact:
            try:
                await self._post("/apply-template", {"messages": self._messages(None, "x")})
                tokens = (await self._post("/tokenize", {"content": corpus_text(chars, seed),
                                                         "with_pieces": True}))["tokens"]
            except HaloError:
                tokens = []
            if not tokens or not isinstance(tokens[0], dict):  # (older builds send ids alone)
                self.exact = False
            elif len(tokens) >= need:
                # (a piece that is part of a character comes as its bytes: a byte-level
                # vocabulary's, such as a synthetic model's, is all such pieces)
                self.pieces = [t["piece"].encode() if isinstance(t["piece"], str) else bytes(t["piece"])
                               for t in tokens]
                return
            chars *= 2
        self.words = corpus_text(chars, seed).split(" ")
        await self._calibrate()

    def _slice(self, start: int, tokens: int) -> str:
        """The text of `tokens` corpus tokens from `start`: their bytes joined, then decoded (a
        character cut at either end is left out)."""
        return b"".join(self.pieces[start:start + tokens]).decode("utf-8", "ignore")

    async def _post(self, path: str, body: dict) -> dict:
        response = await self.client.post(path, json=body)
        if response.status_code != 200:
            raise HaloError(f"{path} answered HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    async def _usage_tokens(self, text: str) -> int:
        reply = await self._post("/v1/chat/completions", {
            "model": self.model, "messages": [{"role": "user", "content": text}], "max_tokens": 1})
        tokens = (reply.get("usage") or {}).get("prompt_tokens")
        if not isinstance(tokens, int):
            raise HaloError("the endpoint reports no token usage and has no /tokenize: halo cannot "
                            "count prompt tokens there")
        return tokens

    async def _calibrate(self) -> None:
        short, long = self.words[:10], self.words[:400]
        n_short = await self._usage_tokens(" ".join(short))
        n_long = await self._usage_tokens(" ".join(long))
        self.per_word = max(0.1, (n_long - n_short) / (len(long) - len(short)))
        self.overhead = n_short - len(short) * self.per_word

    async def count(self, messages: list[dict]) -> int:
        prompt = (await self._post("/apply-template", {"messages": messages}))["prompt"]
        tokens = await self._post("/tokenize", {"content": prompt, "add_special": True,
                                                "parse_special": True})
        return len(tokens["tokens"])

    @staticmethod
    def _messages(system: str | None, user: str) -> list[dict]:
        turns = [{"role": "system", "content": system}] if system is not None else []
        return turns + [{"role": "user", "content": user}]

    async def head(self, with_system: bool) -> int:
        """Tokens the chat template puts before the first message's text (llama-server)."""
        if with_system not in self.heads:
            mark = "\u27e6halo\u27e7"
            prompt = (await self._post("/apply-template", {"messages": self._messages(
                mark if with_system else None, "x" if with_system else mark)}))["prompt"]
            before = prompt[:prompt.index(mark)] if mark in prompt else ""
            tokens = await self._post("/tokenize", {"content": before, "add_special": True,
                                                    "parse_special": True}) if before else {"tokens": []}
            self.heads[with_system] = len(tokens["tokens"])
        return self.heads[with_system]

    async def build(self, depth: int, pp: int, uid: str, rng: random.Random) -> Prompt:
        """The messages of one request, behind the unique prefix `uid` ("": none)."""
        head = f"[{uid}]" if uid else ""
        if not self.exact:
            n_sys = round(depth / self.per_word)
            n_user = max(1, round((pp - self.overhead) / self.per_word))
            start = rng.randrange(max(1, len(self.words) - n_sys - n_user))
            system = head + " " + " ".join(self.words[start:start + n_sys]) if depth else None
            user = ("" if depth else head + " ") + " ".join(self.words[start + n_sys:start + n_sys + n_user])
            return Prompt(self._messages(system, user), uid, None)
        # slices of the tokenized corpus, joined back, tokenize to the same pieces (a slice's
        # first piece carries its own leading space), so the count moves one for one with them
        target = depth + pp
        start = rng.randrange(max(1, len(self.pieces) - 2 * target - 512))
        user_start = start + depth + 256
        n_sys, n_user = depth, pp
        best: tuple[int, list[dict], int] | None = None
        seen = set()
        while (n_sys, n_user) not in seen and len(seen) < 8:
            seen.add((n_sys, n_user))
            system = head + self._slice(start, n_sys) if depth else None
            user = ("" if depth else head) + self._slice(user_start, n_user)
            messages = self._messages(system, user)
            count = await self.count(messages)
            if best is None or abs(target - count) < best[0]:
                best = (abs(target - count), messages, count)
            delta = target - count
            if delta == 0:
                break
            if depth and n_sys + delta >= 1:  # the context turn absorbs the template's tokens
                n_sys += delta
            elif n_user + delta >= 1:
                n_user += delta
            # else: pp is smaller than the template itself; the loop ends with the closest
        return Prompt(best[1], uid, best[2], await self.head(bool(depth)))

    def text(self, tokens: int, rng: random.Random) -> str:
        """Corpus text from a random place: exactly `tokens` tokens on llama-server (a slice of
        the tokenized corpus), about that many elsewhere."""
        if self.exact:
            start = rng.randrange(max(1, len(self.pieces) - tokens))
            return self._slice(start, tokens)
        n = max(1, round(tokens / self.per_word))
        start = rng.randrange(max(1, len(self.words) - n))
        return " ".join(self.words[start:start + n])


async def agent_session(prompts: Prompts, spec: ServeBenchSpec, index: int, uid: str) -> tuple[AgentSession, int | None]:
    """Session `index` of an agentic cell (agentic.make_session) behind `uid`, its project
    notes sized so that its first prompt is `spec.pp` tokens, and that prompt's count (None
    where only the server can count: the notes then come from tokens per word)."""
    def make(notes: int) -> AgentSession:
        return make_session(spec.seed, index, uid, notes, spec.turns, spec.tg, spec.tool_tokens, prompts.text)

    if not prompts.exact:
        words = sum(len(m["content"].split()) for m in make(0).messages([]))
        return make(max(0, round(spec.pp - prompts.overhead - words * prompts.per_word))), None
    fixed = await prompts.count(make(0).messages([]))
    notes, best, tried = max(0, spec.pp - fixed), None, set()
    while notes not in tried and len(tried) < 8:  # the notes move the count one for one, mostly
        tried.add(notes)
        session = make(notes)
        count = fixed if notes == 0 else await prompts.count(session.messages([]))
        if best is None or abs(spec.pp - count) < abs(spec.pp - best[1]):
            best = (session, count)
        if count == spec.pp or (notes == 0 and count > spec.pp):  # (pp below what the fixed part takes)
            break
        notes = max(0, notes + spec.pp - count)
    return best


# -- one request, one round -------------------------------------------------------------------

def _transport_error(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@attrs.define
class _Observed:
    """What the client saw of one request (seconds from sending it) before it is a record."""

    ok: bool = False
    error: str = ""
    transport: bool = False  # the connection failed (the endpoint may be down)
    http_status: int | None = None
    usage: dict | None = None
    timings: dict | None = None
    finish: str = ""
    ttfr: float | None = None
    first: float | None = None
    content: float | None = None
    tokens: list[float] = attrs.field(factory=list)  # arrival of every chunk carrying a token
    end: float | None = None
    text: list[str] = attrs.field(factory=list)  # the content, chunk by chunk (an agent's reply)


def _chunk(seen: _Observed, chunk, now: float) -> bool:
    """Take one SSE chunk into `seen`; False for a server error or a chunk of another shape
    (that request fails; the run goes on)."""
    if not isinstance(chunk, dict):
        return False
    if chunk.get("error"):
        error = chunk["error"]
        seen.error = f"server error: {error.get('message', error) if isinstance(error, dict) else error}"
        return False
    usage, timings, choices = chunk.get("usage"), chunk.get("timings"), chunk.get("choices")
    choices = [] if choices is None else choices  # (the last chunk: no choices, usage and timings)
    if not (isinstance(usage, (dict, type(None))) and isinstance(timings, (dict, type(None)))
            and isinstance(choices, list) and all(isinstance(c, dict) for c in choices)):
        return False
    seen.usage = usage or seen.usage
    seen.timings = timings or seen.timings
    for choice in choices:
        delta, finish = choice.get("delta") or {}, choice.get("finish_reason")
        if not (isinstance(delta, dict) and isinstance(finish, (str, type(None)))):
            return False
        content = delta.get("content")
        if content or delta.get("reasoning_content") or delta.get("reasoning") or delta.get("tool_calls"):
            seen.tokens.append(now)
            if seen.first is None:
                seen.first = now
            if content and seen.content is None:
                seen.content = now
        if isinstance(content, str):
            seen.text.append(content)
        seen.finish = finish or seen.finish
    return True


async def _stream(client: httpx.AsyncClient, body: bytes) -> _Observed:
    """Send one streamed chat completion and time it."""
    seen, done = _Observed(), False
    t0 = time.perf_counter()
    try:
        async with client.stream("POST", "/v1/chat/completions", content=body,
                                 headers={"Content-Type": "application/json"}) as response:
            seen.http_status = response.status_code
            if response.status_code != 200:
                text = (await response.aread()).decode("utf-8", "replace").strip()
                seen.error = f"HTTP {response.status_code}: {text[:300]}"
                return seen
            async for line in response.aiter_lines():
                now = time.perf_counter() - t0
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    done = True
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    continue
                if seen.ttfr is None:
                    seen.ttfr = now
                if not _chunk(seen, chunk, now):
                    seen.error = seen.error or f"a stream chunk of another shape: {data[:120]}"
                    return seen
    except httpx.HTTPError as exc:
        seen.error, seen.transport = _transport_error(exc), True
        return seen
    finally:
        seen.end = time.perf_counter() - t0
    if not seen.tokens:
        if _server_count(seen) and (done or seen.finish):
            # (tokens whose text is empty: special ones, or a model whose vocabulary decodes to
            # nothing) the server's own count stands; TTFT and ITL cannot be seen from here
            seen.ok = True
        else:
            seen.error = "the stream carried no token"
    elif not (done or seen.finish):
        seen.error = f"the stream ended early (after {len(seen.tokens)} tokens)"
    else:
        seen.ok = True
    return seen


def _server_count(seen: _Observed) -> int | None:
    """The tokens the server says it generated (usage, else llama-server's timings)."""
    for counted in ((seen.usage or {}).get("completion_tokens"), (seen.timings or {}).get("predicted_n")):
        if isinstance(counted, int) and not isinstance(counted, bool) and counted > 0:
            return counted
    return None


def _record(cell: Cell, attempt: str, rep: int, index: int, prompt: Prompt, start: float,
            seen: _Observed, latency: float, session: int | None = None, turn: int | None = None) -> RequestRecord:
    usage, timings, tokens = seen.usage or {}, seen.timings or {}, seen.tokens
    number = lambda v: v if isinstance(v, (int, float)) and not isinstance(v, bool) else None  # noqa: E731
    timings = {k: number(v) for k, v in timings.items()}
    prompt_tokens = usage.get("prompt_tokens") if isinstance(usage.get("prompt_tokens"), int) else prompt.counted
    completion = usage.get("completion_tokens")
    if not isinstance(completion, int):
        completion = timings.get("predicted_n", len(tokens) or None)
    details = usage.get("prompt_tokens_details")
    cached = number((details if isinstance(details, dict) else {}).get("cached_tokens", timings.get("cache_n")))
    pp_ts, pp_source = None, ""
    if seen.ok:
        if timings.get("prompt_ms") and timings.get("prompt_n"):
            pp_ts, pp_source = timings["prompt_n"] * 1000.0 / timings["prompt_ms"], "server"
        elif prompt_tokens and seen.first and seen.first > latency:
            pp_ts, pp_source = prompt_tokens / (seen.first - latency), "estimated"
    span = tokens[-1] - tokens[0] if len(tokens) > 1 else 0
    tg_ts = (completion - 1) / span if seen.ok and completion and completion > 1 and span > 0 else None
    if seen.ok and not tokens:  # no text to time: the server's own generation speed
        tg_ts = timings.get("predicted_per_second")
    r6 = lambda v: None if v is None else round(v, 6)  # noqa: E731
    return RequestRecord(
        cell=cell.key, attempt=attempt, rep=rep, index=index, uid=prompt.uid, start_s=round(start, 6),
        ok=seen.ok, error=seen.error, http_status=seen.http_status, prompt_counted=prompt.counted,
        prompt_tokens=prompt_tokens, completion_tokens=completion, cached_tokens=cached,
        shared_tokens=prompt.shared, ttfr_s=r6(seen.ttfr), first_token_s=r6(seen.first),
        ttft_s=r6(seen.content), last_token_s=r6(tokens[-1] if tokens else None), e2e_s=r6(seen.end),
        itl_s=tuple(round(b - a, 6) for a, b in zip(tokens, tokens[1:])),
        pp_ts=None if pp_ts is None else round(pp_ts, 3), pp_source=pp_source,
        tg_ts=None if tg_ts is None else round(tg_ts, 3), finish_reason=seen.finish, timings=seen.timings,
        session=session, turn=turn)


# -- summaries ---------------------------------------------------------------------------------

def summarize(cell: Cell, records: list[RequestRecord], power_w: float | None = None,
              server: scrape.ServerView | None = None, client_cpu_s: float | None = None,
              slos: tuple[Slo, ...] = ()) -> ServeCell:
    """A cell's summary from its requests (those of one attempt), the mean power sampled
    while they ran, the server's /metrics over that time, the CPU seconds halo's client
    spent on it and, with `slos`, its goodput and verdict."""
    ok = [r for r in records if r.ok]
    good = {id(r) for r in ok if request_is_good(r, slos)} if slos else set()
    rounds: dict[int, list[RequestRecord]] = {}
    for r in ok:
        rounds.setdefault(r.rep, []).append(r)
    per_s, agg, goodput = [], [], []
    for rs in rounds.values():
        window = max(r.start_s + r.e2e_s for r in rs) - min(r.start_s for r in rs)
        if window > 0:
            per_s.append(len(rs) / window)
            agg.append(sum(r.completion_tokens or 0 for r in rs) / window)
            goodput.append(sum(1 for r in rs if id(r) in good) / window)
    met, missed = cell_verdict(records, slos) if slos else (None, ())
    prompts = [r.prompt_tokens for r in ok if r.prompt_tokens is not None]
    beyond = [max(0, (r.cached_tokens or 0) - r.shared_tokens) for r in ok]
    sources = {r.pp_source for r in ok if r.pp_source}
    failed = [r for r in records if not r.ok]
    agg_ts = Stat.of(agg)
    drafted = sum((r.timings or {}).get("draft_n", 0) for r in ok)
    accepted = sum((r.timings or {}).get("draft_n_accepted", 0) for r in ok)
    split = [time_split(r) for r in ok]
    return ServeCell(
        cell=cell.key, depth=cell.depth, pp=cell.pp, tg=cell.tg, concurrency=cell.concurrency,
        rate=cell.rate, reps=len({r.rep for r in records}), requests=len(records),
        errors=len(failed), prompt_tokens=int(np.median(prompts)) if prompts else None,
        pp_source="/".join(sorted(sources)), pp_ts=Stat.of(r.pp_ts for r in ok),
        tg_ts=Stat.of(r.tg_ts for r in ok), ttfr_ms=Stat.of((r.ttfr_s for r in ok), 1000),
        ttft_ms=Stat.of((r.ttft_s for r in ok), 1000),
        itl_ms=Stat.of((g for r in ok for g in r.itl_s), 1000),
        e2e_ms=Stat.of((r.e2e_s for r in ok), 1000), req_per_s=Stat.of(per_s), agg_ts=agg_ts,
        cache_hits=sum(1 for b in beyond if b),
        cached_pct=round(100.0 * sum(beyond) / sum(prompts), 2) if prompts and sum(prompts) else 0.0,
        draft_accepted_pct=round(100.0 * accepted / drafted, 1) if drafted else None,
        first_error=failed[0].error if failed else "", power_w=power_w,
        tokens_per_joule=round(agg_ts.mean / power_w, 3) if power_w and agg_ts else None,
        queue_ms=Stat.of((q for q, _p, _d in split), 1000), prefill_ms=Stat.of((p for _q, p, _d in split), 1000),
        decode_ms=Stat.of((d for _q, _p, d in split), 1000), server=server,
        client_cpu_s_per_1k=_per_1k(client_cpu_s, sum(r.completion_tokens or 0 for r in ok)),
        good=len(good) if slos else None,
        goodput=Stat.of(goodput) if slos else None, slo_met=met, slo_missed=missed,
        workload=cell.workload, per_turn=_per_turn(records), slots=cell.slots or None)


def _per_turn(records: list[RequestRecord]) -> tuple[TurnSummary, ...]:
    """A TurnSummary per turn of an agentic cell's sessions (none for other cells)."""
    turns: dict[int, list[RequestRecord]] = {}
    for r in records:
        if r.turn is not None:
            turns.setdefault(r.turn, []).append(r)
    out = []
    for turn, rs in sorted(turns.items()):
        ok = [r for r in rs if r.ok]
        counted = [r for r in ok if r.prompt_tokens is not None and r.cached_tokens is not None]
        prompts = sum(r.prompt_tokens for r in counted)
        median = lambda values: int(np.median(values)) if values else None  # noqa: E731
        out.append(TurnSummary(
            turn=turn, requests=len(rs), errors=len(rs) - len(ok),
            prompt_tokens=median([r.prompt_tokens for r in ok if r.prompt_tokens is not None]),
            cached_tokens=median([r.cached_tokens for r in ok if r.cached_tokens is not None]),
            reuse_pct=round(100.0 * sum(r.cached_tokens for r in counted) / prompts, 1) if prompts else None,
            ttft_ms=Stat.of((r.ttft_s for r in ok), 1000), pp_ts=Stat.of(r.pp_ts for r in ok),
            tg_ts=Stat.of(r.tg_ts for r in ok)))
    return tuple(out)


def _per_1k(seconds: float | None, tokens: int) -> float | None:
    return round(1000.0 * seconds / tokens, 4) if seconds is not None and tokens else None


# -- run directories ---------------------------------------------------------------------------

def list_serve_runs() -> list[Path]:
    """Every serve-bench run directory, oldest first."""
    return runs.list_runs(KIND)


def resolve_serve_run(ref: str | Path) -> Path:
    """A serve-bench run from a path, a run name or a tag (its latest run)."""
    found = find_serve_run(ref)
    if found is None:
        raise HaloError(f"no serve-bench run '{ref}' (not a run directory, run name or tag; "
                        f"`halo bench serve` writes them under {runs.runs_root(KIND)})")
    return found


def find_serve_run(ref: str | Path) -> Path | None:
    """resolve_serve_run, or None when `ref` names no serve-bench run (a llama-bench run, say)."""
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        try:
            return path if json.loads((path / "run.json").read_text()).get("kind") == KIND else None
        except (OSError, ValueError):
            return None
    try:
        return runs.resolve_run(KIND, ref)
    except HaloError:
        return None


def _attempts(path: Path) -> dict[str, dict]:
    """The last line cells.jsonl holds for each cell."""
    return {row["cell"]: row for row in read_jsonl(path / "cells.jsonl")}


def _saved(path: Path) -> tuple[dict, ServeBenchSpec]:
    """run.json of a serve-bench run and its spec (the requests unread)."""
    state = RunState.load(path, KIND).data
    try:
        return state, from_dict(ServeBenchSpec, state["spec"])
    except (ValueError, TypeError) as exc:
        raise HaloError(f"{path} is not a serve-bench run (its spec does not read: {exc})") from None


def load_serve_run(path: Path) -> ServeRun:
    """A run with the summaries and requests of each cell's counted attempt."""
    state, spec = _saved(path)
    attempts = _attempts(path)
    counted = {(cell, row["attempt"]) for cell, row in attempts.items()}
    requests = [from_dict(RequestRecord, row) for row in read_jsonl(path / "requests.jsonl")
                if (row.get("cell"), row.get("attempt")) in counted]
    views = {key: from_dict(scrape.ServerView, row["server"]) for key, row in attempts.items()
             if isinstance(row.get("server"), dict)}
    cells = [summarize(cell, [r for r in requests if r.cell == cell.key], attempts[cell.key].get("power_w"),
                       views.get(cell.key), attempts[cell.key].get("client_cpu_s"),
                       parse_slos(spec.slo) if spec.slo else ())
             for cell in cells_for(spec, attempts) if cell.key in attempts]
    endpoint = state.get("endpoint") or {}
    capacity = from_dict(Capacity, state["capacity"]) if isinstance(state.get("capacity"), dict) else None
    choice = from_dict(SlotChoice, state["slots"]) if isinstance(state.get("slots"), dict) else None
    return ServeRun(path=path, spec=spec, status=state["status"], error=state.get("error", ""),
                    endpoint=endpoint.get("url", ""), model=endpoint.get("model", ""),
                    cells=cells, requests=requests, capacity=capacity, slot_choice=choice)


# -- the run -----------------------------------------------------------------------------------

class _Session:
    """One sitting of a run against a live endpoint: the async client, prompts, the rounds."""

    def __init__(self, run: ServeRun, state: RunState, base: str, model: str, llama: bool,
                 api_key: str | None, status, on_cell, slots: int | None = None):
        self.run, self.state, self.base, self.model, self.llama = run, state, base, model, llama
        self.slots = slots  # llama-server's total_slots, where it says
        self.api_key, self.status, self.on_cell = api_key, status, on_cell
        self.spec = run.spec
        self.slos = parse_slos(run.spec.slo) if run.spec.slo else ()
        self.latency = 0.0
        self.sampler: MetricsSampler | None = None  # set while the cells run
        self.scraper: scrape.Scraper | None = None  # llama-server's /metrics, where it has them

    def client(self) -> httpx.AsyncClient:
        return _client(self.base, self.api_key, httpx.Timeout(self.spec.timeout, connect=10.0))

    def payload(self, messages: list[dict], max_tokens: int | None = None, slot: int | None = None) -> bytes:
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens or self.spec.tg,
                "stream": True, "stream_options": {"include_usage": True}}
        if self.llama:  # llama-server: exactly tg tokens, and no prompt cache unless asked for
            body["ignore_eos"] = True
            if self.spec.workload:  # an agent's session lives on its prompt cache, in its own slot
                body["cache_prompt"] = True
                if slot is not None:
                    body["id_slot"] = slot
            elif not self.spec.prompt_cache:
                body["cache_prompt"] = False
        return json.dumps(body).encode()

    async def run_cells(self, next_cell: Callable[[], Cell | None], total: int | None = None) -> None:
        """Run cells until `next_cell()` says none is left (a matrix's list, or a capacity
        search deciding level by level); `total` for the progress line when it is known."""
        async with self.client() as client:
            self.latency = await self._latency(client)
            self.state.data["latency_ms"] = round(self.latency * 1000, 3)
            prompts = Prompts(client, self.model, exact=self.llama)
            self.status("preparing prompts from halo's corpus")
            await prompts.prepare(max(max(self.spec.depths) + self.spec.pp,
                                      self.spec.tool_tokens[1] if self.spec.workload else 0), self.spec.seed)
            self.state.data["endpoint"]["token_counts"] = "tokenize" if prompts.exact else "usage"
            self.state.save()
            self.status("warming up")
            warm = await _stream(client, self.payload([{"role": "user", "content": "Hello"}]))
            if not warm.ok:
                raise HaloError(f"the endpoint failed a warm-up chat completion: {warm.error}")
            await self._start_scraper(client)
            try:
                index = 0
                while (cell := next_cell()) is not None:
                    index += 1
                    await self._cell(client, prompts, cell, f"{index}/{total}" if total else
                                     f"{index} ({self.spec.capacity} {_level(cell):g})")
            finally:
                if self.scraper is not None:
                    await self.scraper.stop()

    async def _start_scraper(self, client: httpx.AsyncClient) -> None:
        """Scrape the server's /metrics while the cells run; without them, say why once and go
        on (the run's server_metrics says it too)."""
        try:
            await scrape.fetch(client)
        except (ValueError, httpx.HTTPError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) else _transport_error(exc)
            self.state.data["server_metrics"] = f"none: {reason}"
            self.status(f"no server metrics: {reason}")
        else:
            self.state.data["server_metrics"] = scrape.FILE
            self.scraper = scrape.Scraper(client, self.run.path / scrape.FILE)
            self.scraper.start()
        self.state.save()

    async def _edge(self) -> float:
        """A scrape at a cell's start and end, so that its window has both; the time before it
        (a cell's end)."""
        ended = time.time()
        if self.scraper is not None:
            await self.scraper.scrape()
        return ended

    async def _latency(self, client: httpx.AsyncClient) -> float:
        """The median round trip of GET /v1/models: what the TTFT estimate of pp subtracts."""
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            try:
                await client.get("/v1/models")
            except httpx.HTTPError as exc:
                raise HaloError(f"{self.base} does not answer: {_transport_error(exc)}") from None
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    async def _cell(self, client, prompts: Prompts, cell: Cell, position: str) -> None:
        spec, attempt = self.spec, uuid.uuid4().hex[:8]
        records: list[RequestRecord] = []
        await self._edge()
        started, cpu = time.time(), time.process_time()
        for rep in range(spec.reps):
            shape = (cell.workload or f"depth {cell.depth}") + (f", -np {cell.slots}" if cell.slots else "")
            self.status(f"cell {position}: {shape}, {load_label(cell.concurrency, cell.rate)}, "
                        f"round {rep + 1}/{spec.reps}")
            try:
                if cell.workload:
                    new, seens = await self._sessions(client, prompts, cell, attempt, rep)
                else:
                    batch = []
                    for i in range(cell.requests):
                        uid = "" if spec.prompt_cache else uuid.uuid4().hex[:12]
                        rng = random.Random(cell.key if spec.prompt_cache else f"{spec.seed}|{uid}")
                        batch.append(await prompts.build(cell.depth, spec.pp, uid, rng))
                    rows = await self._round(client, cell, [self.payload(p.messages) for p in batch])
                    new = [_record(cell, attempt, rep, i, batch[i], start, seen, self.latency)
                           for i, (start, seen) in enumerate(rows)]
                    seens = [seen for _start, seen in rows]
            except httpx.HTTPError as exc:  # (building prompts: /apply-template, /tokenize)
                raise EndpointDown(f"the endpoint stopped answering ({_transport_error(exc)})") from None
            records += new
            for r in new:  # after the round: no disk wait while requests are in flight
                append_line(self.run.path / "requests.jsonl", json.dumps(to_dict(r)))
            if any(seen.transport for seen in seens) and not await self._alive(client):
                # "cut": the endpoint died under it, which says nothing of the load (a resumed
                # search measures it again)
                self._finish_cell(cell, attempt, records, "cut", started, await self._edge(),
                                  time.process_time() - cpu)
                first = next(seen.error for seen in seens if seen.transport)
                raise EndpointDown(f"the endpoint stopped answering ({first})")
        ended, cpu = await self._edge(), time.process_time() - cpu
        self._finish_cell(cell, attempt, records, "errors" if any(not r.ok for r in records) else "ok",
                          started, ended, cpu)

    async def _sessions(self, client, prompts: Prompts, cell: Cell, attempt: str,
                        rep: int) -> tuple[list[RequestRecord], list[_Observed]]:
        """One round of an agentic cell: `cell.requests` sessions (agentic.py), `concurrency` of
        them at once, each in flight on its own slot of llama-server (`id_slot`: the worker's,
        modulo the server's slots); a session's turns one after another, each sent when the
        reply to the one before has ended and carrying that reply. A turn that fails ends its
        session. Returns the records, by session and turn, and what was seen of each."""
        shared = await prompts.head(True) if prompts.exact else 0
        sessions = [await agent_session(prompts, self.spec, i, uuid.uuid4().hex[:12]) for i in range(cell.requests)]
        out: list[tuple[RequestRecord, _Observed]] = []
        queue = list(range(len(sessions)))
        t0 = time.perf_counter()

        async def worker(slot: int | None) -> None:
            while queue:
                session, counted = sessions[queue.pop(0)]
                replies: list[str] = []
                for turn in session.turns:
                    messages = session.messages(replies)
                    start = time.perf_counter() - t0
                    seen = await _stream(client, self.payload(messages, turn.max_tokens, slot))
                    prompt = Prompt(messages, session.uid, None if replies else counted, shared)
                    out.append((_record(cell, attempt, rep, session.index * cell.turns + len(replies), prompt,
                                        start, seen, self.latency, session.index, len(replies) + 1), seen))
                    if not seen.ok:
                        break
                    replies.append("".join(seen.text))

        workers = range(min(cell.concurrency, len(sessions)))
        await asyncio.gather(*(worker(w % self.slots if self.slots else None) for w in workers))
        out.sort(key=lambda row: row[0].index)
        return [r for r, _seen in out], [seen for _r, seen in out]

    async def _round(self, client, cell: Cell, bodies: list[bytes]) -> list[tuple[float, _Observed]]:
        """Every request of one round: `concurrency` in flight at once, or sent at Poisson
        arrival times for a rate. Returns (send time from the round's start, what was seen) in
        request order."""
        t0 = time.perf_counter()
        results: list = [None] * len(bodies)

        async def one(i: int) -> None:
            start = time.perf_counter() - t0
            results[i] = (start, await _stream(client, bodies[i]))

        if cell.concurrency:
            queue = list(range(len(bodies)))

            async def worker() -> None:
                while queue:
                    await one(queue.pop(0))

            await asyncio.gather(*(worker() for _ in range(min(cell.concurrency, len(bodies)))))
        else:
            rng = random.Random(f"{self.spec.seed}|{cell.key}|arrivals")
            tasks, at = [], 0.0
            for i in range(len(bodies)):
                await asyncio.sleep(max(0.0, at - (time.perf_counter() - t0)))
                tasks.append(asyncio.create_task(one(i)))
                at += rng.expovariate(cell.rate)
            await asyncio.gather(*tasks)
        return results

    async def _alive(self, client) -> bool:
        try:
            return (await client.get("/v1/models", timeout=5.0)).status_code < 500
        except httpx.HTTPError:
            return False

    def _finish_cell(self, cell: Cell, attempt: str, records: list[RequestRecord], status: str,
                     started: float, ended: float, client_cpu_s: float) -> None:
        sampler = self.sampler
        power = (sampler.average(sampler.power_column, started, ended)
                 if sampler is not None and sampler.power_column else None)
        server = scrape.window(self.scraper.rows, started, ended) if self.scraper is not None else None
        client_cpu_s = round(client_cpu_s, 4)  # (as kept: a run read back summarises the same)
        append_line(self.run.path / "cells.jsonl", json.dumps(
            {"cell": cell.key, "attempt": attempt, "status": status, "at": now(), "power_w": power,
             "server": None if server is None else to_dict(server), "client_cpu_s": client_cpu_s}))
        summary = summarize(cell, records, power, server, client_cpu_s, self.slos)
        keys = {c.cell for c in self.run.cells} | {cell.key}
        order = [c.key for c in cells_for(self.spec, keys)]
        self.run.cells = sorted([c for c in self.run.cells if c.cell != cell.key] + [summary],
                                key=lambda c: order.index(c.cell))
        self.run.requests = [r for r in self.run.requests if r.cell != cell.key] + records
        write_json(self.run.path / "results.json", self.run.cells)
        if self.on_cell:
            self.on_cell(summary)


def _open_run(spec: ServeBenchSpec, resume: Path | None, resume_tag: bool) -> tuple[ServeRun, RunState]:
    """The run (runs.open_run) with the cells and requests it already holds."""
    state = runs.open_run(KIND, spec, resume=resume, resume_tag=resume_tag, endpoint={}, servers=[])
    run = load_serve_run(state.path) if state.resumed else ServeRun(path=state.path, spec=spec)
    return run, state


def run_serve_bench(spec: ServeBenchSpec | None = None, *, resume: str | Path | None = None,
                    resume_tag: bool = False, api_key: str | None = None, host: PluginHost | None = None,
                    root: Path = Path("/"), on_status: Callable[[str], None] | None = None,
                    on_cell: Callable[[ServeCell], None] | None = None) -> ServeRun:
    """Run (or resume) the serving benchmark of `spec` and return the run.

    `resume` names a run directory to continue (its saved spec is used); `resume_tag`
    continues the latest run with the same tag when its spec is the same. `api_key` is sent
    as a bearer token and never saved. Cells whose last
    attempt finished without errors are skipped. When the endpoint stops answering, the run
    ends `partial` (or `failed`) with the requests it recorded. Bad input, a server that does
    not start and an endpoint that does not answer raise a HaloError before a run exists.
    With `spec.slots` the capacity search runs once per slot count, each against a server of
    its own (-np N, N slots of the context a request needs); a count whose server does not
    start is recorded as such and the others go on; `run.slot_choice` says which served most.
    """
    status = on_status or (lambda _msg: None)
    if resume is not None:
        resume = resolve_serve_run(resume)
        spec = _saved(resume)[1]
    if spec is None:
        raise HaloError("nothing to run: give a ServeBenchSpec or a run to resume")
    check_spec(spec)
    if spec.server is not None:
        host = host or get_host()
    run: ServeRun | None = None
    state: RunState | None = None
    tried: list[SlotResult] = []
    profile = ""  # the profile file the servers started with (a --slots search stores its -np there)
    try:
        for slots in spec.slots or (0,):
            server, log_offset, server_spec = None, 0, _server_for(spec, slots)
            try:
                if server_spec is not None:
                    log = pid_dir() / f"server-{server_spec.port}.log"
                    log_offset = log.stat().st_size if log.exists() else 0
                    try:
                        server = start_server(server_spec, host=host, backend_options=spec.backend_options,
                                              on_status=status)
                    except HaloError as exc:
                        if not slots:
                            raise
                        # a slot count the box cannot start (memory, say) is that count's finding
                        status(f"-np {slots}: the server did not start: {exc}")
                        tried.append(SlotResult(slots, server_spec.ctx, None, f"the server did not start: {exc}"))
                        if state is not None:
                            _note_slots(run, state, tried)
                        continue
                    base, profile = server.info.url, server.info.profile or profile
                else:
                    base = spec.endpoint.rstrip("/").removesuffix("/v1") if spec.endpoint else require(api_key=api_key)[0].base_url
                base, model, props, models = asyncio.run(_probe(base, spec, api_key))
                if run is None:
                    run, state = _open_run(spec, Path(resume) if resume is not None else None, resume_tag)
                run.endpoint, run.model = base, model
                llama = bool(props.get("build_info") or props.get("total_slots"))
                state.data["endpoint"] = {"url": base, "model": model, "kind": "llama-server" if llama else "openai"}
                if server is not None:
                    state.data["servers"].append({"argv": list(server.info.argv), "url": base, "pid": server.info.pid,
                                                  "log": server.info.log, "started": server.info.started})
                if not (run.path / "system.json").exists():
                    system = system_state(root)
                    system.update(server_props=props, models=models)
                    if server is not None:
                        [backend] = host.configured_backends([server_spec.backend], spec.backend_options)
                        system["backend"] = backend.provenance()
                    write_json(run.path / "system.json", system)
                state.save()
                total_slots = props.get("total_slots") if isinstance(props.get("total_slots"), int) else None
                session = _Session(run, state, base, model, llama, api_key, status, on_cell, total_slots)
                if not _measure(run, state, session, status, root, slots):
                    return run  # the endpoint stopped answering: the run ended partial, resumable
                if slots:
                    tried.append(SlotResult(slots, server_spec.ctx, judge_capacity(run, slots)))
                    _note_slots(run, state, tried)
            finally:
                if server is not None:
                    server.stop()
                    if run is not None:
                        name = f"server-np{slots}.log" if slots else "server.log"
                        _keep_log(Path(server.info.log), log_offset, run.path / name)
    except BaseException as exc:
        if state is not None and state.status is RunStatus.RUNNING:
            runs.record_exit(exc, lambda status_, error: _finish(run, state, status_, error))
        raise
    if run is None:  # (--slots: not one of the servers started)
        raise HaloError(f"no server started: {tried[-1].error}" if tried else "nothing was run")
    errors = [c for c in run.cells if c.errors]
    if errors and not spec.capacity:  # (a search's failed requests are a saturated level: its finding)
        _finish(run, state, RunStatus.PARTIAL, f"{len(errors)} of {len(run.cells)} cells had failed requests: "
                                               f"{errors[0].first_error}")
    else:
        _finish(run, state, RunStatus.COMPLETE, "")
    choice = run.slot_choice
    if choice is not None and choice.best and spec.server is not None and spec.server.profile:
        # the -np found on the profile's settings goes into that profile, for halo serve
        if not profile:
            status(Note(f"best -np {choice.best} not stored: no profile for {spec.server.model} held here "
                        "(halo optimize writes one)"))
            return run
        try:
            state.data["profile"] = str(record_slots(Path(profile), choice, run.path, spec.server.model, status))
            state.save()
        except HaloError as exc:  # (the run is complete: only the profile is not updated)
            status(Note(f"best -np {choice.best} not stored in a profile: {exc}"))
    return run


def _server_for(spec: ServeBenchSpec, slots: int) -> ServerSpec | None:
    """The server to start for the run (on a free port when none is given); with a slot
    count, with that many slots of the context one request or session needs."""
    if spec.server is None:
        return None
    server = spec.server if spec.server.port else attrs.evolve(spec.server, port=free_port())
    if slots:
        parallel, ctx = matrix_server(spec, slots)
        server = attrs.evolve(server, parallel=parallel, ctx=ctx)
    return server


def _note_slots(run: ServeRun, state: RunState, tried: list[SlotResult]) -> None:
    """The slot counts searched so far, and the best of them, into run.json."""
    run.slot_choice = choose_slots(tried)
    state.data["slots"] = to_dict(run.slot_choice)
    state.save()


def _measure(run: ServeRun, state: RunState, session: "_Session", status, root: Path, slots: int = 0) -> bool:
    """The cells still to do (with `slots`: that slot count's search), with the hardware
    sampled into metrics.csv while they run. False when the endpoint stopped answering (the
    run is then finished `partial` or `failed`; run_serve_bench records any other exit)."""
    done = {cell for cell, row in _attempts(run.path).items() if row["status"] == "ok"}
    if run.spec.capacity:
        next_cell, total = _search(run, slots), None
        mine = [c for c in cells_for(run.spec, done) if c.slots == slots]
        if mine:
            status(f"resuming {run.path.name}: {len(mine)} level(s) already measured"
                   + (f" with -np {slots}" if slots else ""))
    else:
        todo = iter([c for c in plan(run.spec) if c.key not in done])
        next_cell, total = (lambda: next(todo, None)), len(plan(run.spec)) - len(done)
        if done:
            status(f"resuming {run.path.name}: {len(done)} of {len(done) + total} cells already done")
    try:
        with MetricsSampler(run.path / "metrics.csv", root=root) as session.sampler:
            asyncio.run(session.run_cells(next_cell, total))
        if run.spec.capacity and not slots:
            run.capacity = judge_capacity(run)
            state.data["capacity"] = to_dict(run.capacity)
            state.save()
    except EndpointDown as exc:
        _finish(run, state, RunStatus.PARTIAL if any(c.errors == 0 for c in run.cells) else RunStatus.FAILED,
                f"{exc}; resume with: halo bench serve --resume {run.path}")
        return False
    return True


def _searched(run: ServeRun, slots: int) -> list[ServeCell]:
    """The cells of one capacity search: the run's, or one slot count's (--slots); not one the
    endpoint died under ("cut"), which says nothing of the load."""
    cut = {key for key, row in _attempts(run.path).items() if row["status"] == "cut"}
    return [c for c in run.cells if (c.slots or 0) == slots and c.cell not in cut]


def _measured(run: ServeRun, slots: int = 0) -> dict[float, bool]:
    """{level: met, and not saturated} of a capacity search's cells so far."""
    measured = {}
    for c in _searched(run, slots):
        records = [r for r in run.requests if r.cell == c.cell]
        measured[_level(c)] = bool(c.slo_met) and not saturation(records)
    return measured


def _search(run: ServeRun, slots: int = 0) -> Callable[[], Cell | None]:
    """The next level of the run's capacity search (with `slots`: that slot count's), from the
    cells it has measured."""
    low, ceiling = _bounds(run.spec)

    def next_cell() -> Cell | None:
        level = next_level(run.spec.capacity, _measured(run, slots), low, ceiling)
        return None if level is None else capacity_cell(run.spec, level, slots)

    return next_cell


def judge_capacity(run: ServeRun, slots: int = 0) -> Capacity:
    """The search's result from the run's cells (with `slots`: that slot count's): each level
    judged, the boundary, why it stopped."""
    slos = parse_slos(run.spec.slo)
    levels = [judge_level(_level(c), [r for r in run.requests if r.cell == c.cell], slos,
                          c.goodput and c.goodput.mean, seed=run.spec.seed)
              for c in _searched(run, slots)]
    return conclude(run.spec.capacity, run.spec.slo, levels, _bounds(run.spec)[1], bool(run.spec.workload))


def _client(base: str, api_key: str | None, timeout) -> httpx.AsyncClient:
    headers = bearer(api_key)
    return httpx.AsyncClient(base_url=base, headers=headers, timeout=timeout,
                             limits=httpx.Limits(max_connections=None, max_keepalive_connections=256))


async def _probe(base: str, spec: ServeBenchSpec, api_key: str | None) -> tuple[str, str, dict, dict]:
    """(base url, model id, /props or {}, /v1/models) of the endpoint, or a HaloError."""
    async with _client(base, api_key, 10.0) as client:
        try:
            response = await client.get("/v1/models")
        except httpx.HTTPError as exc:
            raise HaloError(f"no OpenAI-compatible server at {base} ({_transport_error(exc)})") from None
        if response.status_code != 200:
            raise HaloError(f"{base}/v1/models answered HTTP {response.status_code}: {response.text[:200]}")
        try:
            models = response.json()
            ids = [m["id"] for m in models.get("data", []) if m.get("id")]
        except (ValueError, AttributeError, TypeError, KeyError):
            raise HaloError(f"{base}/v1/models is not an OpenAI model list") from None
        model = spec.model or (ids[0] if ids else None)
        if not model:
            raise HaloError(f"{base}/v1/models lists no model: name one with --model-id")
        try:
            props_response = await client.get("/props")
            props = props_response.json() if props_response.status_code == 200 else {}
        except (httpx.HTTPError, ValueError):
            props = {}
    return base, model, props if isinstance(props, dict) else {}, models


def _finish(run: ServeRun, state: RunState, status: RunStatus, error: str) -> None:
    run.status, run.error = status, error
    state.finish(status, error)


def _keep_log(log: Path, offset: int, dest: Path) -> None:
    try:
        with open(log, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
    except OSError:
        return
    with open(dest, "ab") as out:
        out.write(data)


# -- compare -----------------------------------------------------------------------------------

@attrs.frozen
class ServeDelta:
    """One metric of one cell, before and after, and whether the change is beyond noise."""

    cell: str
    metric: str
    before: float | None
    after: float | None
    change_pct: float | None
    p_value: float | None
    verdict: str  # faster | slower | within noise | untested | only before | only after


# metric, a request's values, statistic (mean or a percentile), higher is better, scale
COMPARED = (
    ("pp t/s", lambda r: [r.pp_ts], "mean", True, 1),
    ("tg t/s", lambda r: [r.tg_ts], "mean", True, 1),
    ("TTFT p50 ms", lambda r: [r.ttft_s], 50, False, 1000),
    ("TTFT p95 ms", lambda r: [r.ttft_s], 95, False, 1000),
    ("ITL p50 ms", lambda r: r.itl_s, 50, False, 1000),
    ("ITL p95 ms", lambda r: r.itl_s, 95, False, 1000),
    ("e2e p50 ms", lambda r: [r.e2e_s], 50, False, 1000),
)
BOOTSTRAP = 1000
PERCENTILE_TEST = "request bootstrap"  # the test judge_speed is given for a percentile
MIN_REQUESTS = 10  # a side's requests below which a percentile is not tested


def _resampled_percentiles(groups: list[np.ndarray], q: float, rng: np.random.Generator) -> np.ndarray:
    """Percentile q of the pooled values of `groups` resampled BOOTSTRAP times, whole groups
    at a time (a request's inter-token gaps move together)."""
    values = np.concatenate(groups)
    owner = np.repeat(np.arange(len(groups)), [len(g) for g in groups])
    order = np.argsort(values, kind="stable")
    values, owner = values[order], owner[order]
    counts = rng.multinomial(len(groups), np.full(len(groups), 1 / len(groups)), size=BOOTSTRAP)
    out = np.empty(BOOTSTRAP)
    for i, weight in enumerate(counts):
        cumulative = np.cumsum(weight[owner])
        out[i] = values[min(int(np.searchsorted(cumulative, q / 100 * cumulative[-1])), len(values) - 1)]
    return out


def bootstrap_p(before: list[np.ndarray], after: list[np.ndarray], q: float, seed: int = 0) -> float | None:
    """Two-sided p-value that percentile q of the pooled per-request values differs, from a
    bootstrap over requests; None with fewer than MIN_REQUESTS requests a side."""
    before, after = [g for g in before if g.size], [g for g in after if g.size]
    if len(before) < MIN_REQUESTS or len(after) < MIN_REQUESTS:
        return None
    rng = np.random.default_rng(seed)
    diffs = _resampled_percentiles(after, q, rng) - _resampled_percentiles(before, q, rng)
    return float(min(1.0, 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())))


def compare_serve_runs(before: ServeRun, after: ServeRun) -> list[ServeDelta]:
    """Each metric of each cell present in either run, judged by the one speed rule
    (halo_core.stats.judge_speed: p < 0.05 and a change above 1%): Welch's t-test on
    per-request samples for means, a bootstrap over requests for percentiles."""
    keys = list(dict.fromkeys([c.cell for c in before.cells] + [c.cell for c in after.cells]))
    out = []
    for cell in keys:
        sides = [[r for r in run.requests if r.cell == cell and r.ok] for run in (before, after)]
        for metric, values, stat, higher, scale in COMPARED:
            groups = [[np.asarray([v for v in values(r) if v is not None], dtype=float) * scale for r in rs]
                      for rs in sides]
            pooled = [np.concatenate(g) if g else np.empty(0) for g in groups]
            point = [None if not x.size else float(x.mean() if stat == "mean" else np.percentile(x, stat))
                     for x in pooled]
            if point[0] is None or point[1] is None:
                if point != [None, None]:
                    out.append(ServeDelta(cell, metric, point[0], point[1], None, None,
                                          "only after" if point[0] is None else "only before"))
                continue
            c = (compare_speed(pooled[0].tolist(), pooled[1].tolist(), higher) if stat == "mean"
                 else judge_speed(point[0], point[1], bootstrap_p(groups[0], groups[1], stat), higher,
                                  test=PERCENTILE_TEST))
            out.append(ServeDelta(cell, metric, round(point[0], 3), round(point[1], 3),
                                  None if c.change_pct is None else round(c.change_pct, 2),
                                  None if c.p_value is None else round(c.p_value, 4), c.verdict))
    return out
