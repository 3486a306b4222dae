"""halo's OpenAI chat client for evals: parallel requests, retries with back-off, a journal.

Requests run in a thread pool of `concurrency` workers. A connection error, a timeout or an
HTTP 5xx is retried with exponential back-off; a request that still fails becomes a reply
with `error` set, never a missing one. Every reply is appended to a JSONL journal as it
arrives, so an interrupted run resumes with only the missing (or failed) requests.

A suite sees only the replies that ran (EvalContext.chat): a request that could not run is
not a wrong answer, so no suite can score it as one; the runner counts it as failed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx  # imported where a request is sent: plugins import this module for ChatRequest

import json
import threading
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any, Callable, Mapping

import attrs

from .errors import HaloError
from .records import Endpoint
from .runs import read_jsonl
from .store import append_line, from_dict, to_dict


def _httpx():
    import httpx

    return httpx


def bearer(api_key: str | None) -> dict[str, str]:
    """The Authorization header for `api_key` ("none" and None send none)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "none" else {}


@attrs.frozen
class ChatRequest:
    """One chat completion to make; `id` is unique within its suite."""

    id: str
    messages: tuple = attrs.field(converter=tuple)
    max_tokens: int | None = None
    temperature: float = 0.0
    extra: Mapping[str, Any] = attrs.field(factory=dict)  # e.g. tools, stop


@attrs.frozen
class ChatReply:
    """The answer to one ChatRequest: the message text, or `error` after the last attempt."""

    id: str
    content: str = ""
    error: str = ""
    attempts: int = 0
    seconds: float = 0.0
    message: Mapping[str, Any] = attrs.field(factory=dict)  # the raw assistant message
    finish_reason: str = ""
    timings: Mapping[str, Any] = attrs.field(factory=dict)  # llama-server's: t/s, draft acceptance


class _Retryable(Exception):
    pass


class RequestsFailed(HaloError):
    """Every request a suite asked for failed: there is nothing to score."""


def describe_failures(failed: Mapping[str, str], total: int) -> str:
    """"1 of 4 requests failed: HumanEval/3: ConnectError: ..." (the first failure shown)."""
    first = next(iter(failed.items()), None)
    shown = f": {first[0]}: {first[1]}" if first else ""
    return f"{len(failed)} of {total} requests failed{shown}"


class ChatClient:
    """Sends ChatRequests to one endpoint; `journal` (a JSONL path) makes runs resumable."""

    def __init__(self, endpoint: Endpoint, *, concurrency: int = 1, timeout: float = 120.0,
                 retries: int = 3, backoff: float = 0.5, journal: Path | None = None,
                 progress: Callable[[str, int, int], None] | None = None):
        self.endpoint, self.concurrency = endpoint, max(1, concurrency)
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.journal, self.progress = journal, progress
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.wall: dict[str, float] = {}  # suite -> seconds spent waiting on replies

    # -- the journal ---------------------------------------------------------------------

    def done(self, suite: str) -> dict[str, ChatReply]:
        """Successful replies already in the journal for `suite` (failed ones are redone)."""
        replies: dict[str, ChatReply] = {}
        if self.journal is None:
            return replies
        for row in read_jsonl(self.journal):
            if row.get("suite") == suite and not row.get("error"):
                replies[row["id"]] = from_dict(ChatReply, row)
        return replies

    def _record(self, suite: str, reply: ChatReply) -> None:
        if self.journal is not None:
            line = json.dumps({"suite": suite, **to_dict(reply)})
            with self._lock:
                append_line(self.journal, line)

    # -- one request ---------------------------------------------------------------------

    def _once(self, http: httpx.Client, request: ChatRequest) -> dict:
        body = {"model": self.endpoint.model, "messages": list(request.messages),
                "temperature": request.temperature, "stream": False, **request.extra}
        if request.max_tokens:
            body["max_tokens"] = request.max_tokens
        headers = bearer(self.endpoint.api_key)
        try:
            response = http.post(f"{self.endpoint.base_url}/v1/chat/completions", json=body,
                                 headers=headers, timeout=self.timeout)
        except (_httpx().TransportError, _httpx().TimeoutException) as exc:
            raise _Retryable(f"{type(exc).__name__}: {exc}".rstrip(": ")) from exc
        if response.status_code >= 500:
            raise _Retryable(f"HTTP {response.status_code}: {response.text[:200]}")
        if response.status_code != 200:
            raise ValueError(f"HTTP {response.status_code}: {response.text[:200]}")
        return response.json()

    def send(self, http: httpx.Client, request: ChatRequest) -> ChatReply:
        """One request with retries; never raises for a server or network failure."""
        start, error = time.monotonic(), ""
        for attempt in range(1, self.retries + 2):
            try:
                body = self._once(http, request)
                choice = body["choices"][0]
                message = choice.get("message") or {}
                content, finish, timings = message.get("content") or "", choice.get("finish_reason") or "", \
                    body.get("timings") or {}
                if not (isinstance(message, dict) and isinstance(content, str)
                        and isinstance(finish, str) and isinstance(timings, dict)):
                    raise TypeError(f"not a chat completion: {json.dumps(body)[:200]}")
                return ChatReply(request.id, content, "", attempt, round(time.monotonic() - start, 3),
                                 message, finish, timings)
            except _Retryable as exc:
                error = str(exc)
                if attempt <= self.retries and not self._stop.is_set():
                    self._stop.wait(self.backoff * 2 ** (attempt - 1))
                    continue
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                error = f"bad reply: {exc}"  # any JSON shape fails this request, not the run
            return ChatReply(request.id, error=error, attempts=attempt,
                             seconds=round(time.monotonic() - start, 3))
        raise AssertionError("unreachable")

    # -- many ----------------------------------------------------------------------------

    def complete(self, suite: str, requests: list[ChatRequest]) -> dict[str, ChatReply]:
        """A reply for every request (from the journal where done), in request order.

        KeyboardInterrupt stops new requests, keeps every reply already journalled, and is
        re-raised once the requests in flight have ended.
        """
        replies = {r.id: reply for r in requests if (reply := self.done(suite).get(r.id))}
        todo = [r for r in requests if r.id not in replies]
        total, finished = len(requests), len(replies)
        if self.progress:
            self.progress(suite, finished, total)
        if not todo:
            return {r.id: replies[r.id] for r in requests}
        started = time.monotonic()
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="halo-chat")
        httpx = _httpx()
        limits = httpx.Limits(max_connections=self.concurrency,
                              max_keepalive_connections=self.concurrency)
        with httpx.Client(limits=limits) as http:
            pending: set[Future] = {pool.submit(self.send, http, r) for r in todo}
            try:
                while pending:
                    finished_now, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in finished_now:
                        reply = future.result()
                        self._record(suite, reply)
                        replies[reply.id] = reply
                        finished += 1
                        if self.progress:
                            self.progress(suite, finished, total)
            except BaseException:
                self._stop.set()
                pool.shutdown(wait=True, cancel_futures=True)
                for future in pending:
                    if future.done() and not future.cancelled() and future.exception() is None:
                        self._record(suite, future.result())
                raise
            pool.shutdown(wait=True)
        self.wall[suite] = self.wall.get(suite, 0.0) + time.monotonic() - started
        return {r.id: replies[r.id] for r in requests}


class EvalContext:
    """What the runner hands an EvalSuite: halo's concurrent client and the user's options.

    `chat(requests)` sends the requests (parallel, retried, journalled for --resume) and
    returns the replies of those that ran; `dataset` is the user's --dataset for this suite
    (a path or a suite-defined word), or None. `failed` holds the requests that could not run
    (id -> error), which the runner records as failed samples; `asked` every request id.
    `concurrency` is how many requests halo keeps in flight (--concurrency, else the server's
    slots) and `timeout` the seconds per request: a suite that runs its own client
    (inspect-ai's BFCL) uses as many connections and the same timeout. `unsafe_local_exec`
    is the user's --unsafe-local-exec: pass it on to `score_in_child`.
    """

    def __init__(self, suite: str, client: ChatClient, *, dataset: str | None = None,
                 max_tokens: int | None = None, log: Callable[[str], None] | None = None,
                 unsafe_local_exec: bool = False):
        self.suite, self.client, self.dataset = suite, client, dataset
        self.unsafe_local_exec = unsafe_local_exec
        self.max_tokens, self._log = max_tokens, log
        self.failed: dict[str, str] = {}
        self.asked: set[str] = set()

    @property
    def concurrency(self) -> int:
        return self.client.concurrency

    @property
    def timeout(self) -> float:
        return self.client.timeout

    def chat(self, requests: list[ChatRequest]) -> dict[str, ChatReply]:
        """The replies of the requests that ran, by id, in request order. A request that still
        failed after its retries is left out (and remembered in `failed`); RequestsFailed
        when none ran."""
        self.asked.update(r.id for r in requests)
        ran = {}
        for key, reply in self.client.complete(self.suite, requests).items():
            if reply.error:
                self.failed[key] = reply.error
            else:
                self.failed.pop(key, None)
                ran[key] = reply
        if requests and not ran:
            raise RequestsFailed(self.failures())
        return ran

    def failures(self) -> str:
        return describe_failures(self.failed, len(self.asked))

    def log(self, message: str) -> None:
        if self._log:
            self._log(f"{self.suite}: {message}")
