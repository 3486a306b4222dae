"""Finding the OpenAI-compatible server to evaluate: --endpoint, else llama-server, else ollama.

Every probe is reported as a `Probe` record, so `halo eval` can say what it tried.
The default places can be moved with HALO_LLAMA_SERVER_URL and HALO_OLLAMA_URL.
"""

from __future__ import annotations

import os

import attrs
import httpx

from ..chat import bearer
from ..errors import HaloError
from ..records import Endpoint

LLAMA_SERVER_URL = "http://127.0.0.1:8080"
OLLAMA_URL = "http://127.0.0.1:11434"


class NoServer(HaloError):
    """No OpenAI-compatible server answered."""


@attrs.frozen
class Probe:
    """One detection attempt: where, what kind, whether it answered, and what came back."""

    kind: str
    url: str
    ok: bool
    detail: str


def _get(client: httpx.Client, url: str) -> tuple[httpx.Response | None, str]:
    try:
        response = client.get(url)
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return response, f"HTTP {response.status_code}"


def _model_ids(client: httpx.Client, base_url: str) -> list[str]:
    response, _ = _get(client, f"{base_url}/v1/models")
    if response is None or response.status_code != 200:
        return []
    try:
        return [m["id"] for m in response.json().get("data", []) if m.get("id")]
    except (ValueError, AttributeError, TypeError):
        return []


def server_props(base_url: str, timeout: float = 5.0, api_key: str | None = None) -> dict:
    """llama-server's /props (slots, context, build), or {} where the server has none (or
    answers something that is not a JSON object)."""
    try:
        response = httpx.get(f"{base_url.rstrip('/')}/props", timeout=timeout, headers=bearer(api_key))
        props = response.json() if response.status_code == 200 else {}
    except (httpx.HTTPError, ValueError):
        return {}
    return props if isinstance(props, dict) else {}


def slot_count(props: dict) -> int | None:
    """How many requests the server runs at once (llama-server's total_slots)."""
    value = props.get("total_slots")
    return value if isinstance(value, int) and value > 0 else None


def detect(endpoint: str | None = None, model: str | None = None, *, api_key: str | None = None,
           timeout: float = 3.0) -> tuple[Endpoint | None, list[Probe]]:
    """The endpoint to evaluate and every probe made on the way.

    `endpoint` wins when given (it must answer /v1/models); else llama-server's /health on
    localhost:8080, else ollama's /api/tags on localhost:11434. The model is `model`, else the
    first id the server lists under /v1/models. `api_key` goes with every request as a bearer
    token (llama-server answers /health and /v1/models without one).
    """
    candidates: list[tuple[str, str, str]] = []  # kind, base url, probe path
    if endpoint:
        base = endpoint.rstrip("/").removesuffix("/v1")
        candidates.append(("openai", base, "/v1/models"))
    else:
        llama = os.environ.get("HALO_LLAMA_SERVER_URL", LLAMA_SERVER_URL).rstrip("/")
        ollama = os.environ.get("HALO_OLLAMA_URL", OLLAMA_URL).rstrip("/")
        candidates += [("llama-server", llama, "/health"), ("ollama", ollama, "/api/tags")]
    probes: list[Probe] = []
    with httpx.Client(timeout=timeout, headers=bearer(api_key)) as client:
        for kind, base, path in candidates:
            response, detail = _get(client, base + path)
            ok = response is not None and response.status_code == 200
            if ok and kind == "openai" and ("llamacpp" in response.text or "llama.cpp" in response.text):
                kind = "llama-server"
            ids = _model_ids(client, base) if ok else []
            if ok and not (model or ids):
                ok, detail = False, f"{detail}, but /v1/models lists no model (pass --model)"
            probes.append(Probe(kind, base + path, ok, detail))
            if ok:
                return Endpoint(base, model or ids[0], kind=kind, api_key=api_key or "none"), probes
    return None, probes


def require(endpoint: str | None = None, model: str | None = None, *,
            api_key: str | None = None) -> tuple[Endpoint, list[Probe]]:
    """`detect`, or NoServer naming every place tried and how to start a server."""
    found, probes = detect(endpoint, model, api_key=api_key)
    if found is None:
        tried = "; ".join(f"{p.url} ({p.detail})" for p in probes)
        raise NoServer(f"no OpenAI-compatible server found (tried {tried}); start one with "
                       f"`halo serve MODEL` or `ollama serve`, or pass --endpoint URL")
    return found, probes
