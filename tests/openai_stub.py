"""An OpenAI-compatible chat server that is not llama.cpp (vLLM, ollama, a cloud API cannot run
here): /v1/models and streamed /v1/chat/completions with `usage`, no /props, no /tokenize,
no `timings`. It answers instantly (or `--token-delay` seconds per token), so it also measures
how much a client can take. Tokens are whitespace-separated words, plus TEMPLATE for the chat
template. With `--reasoning K` it streams the first K tokens of each answer as
`reasoning_content` (a thinking model), after an empty content chunk, as vLLM and llama-server
do.

    python tests/openai_stub.py --port 8765 [--token-delay 0] [--reasoning 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

TEMPLATE = 7  # tokens the stub's "chat template" adds per request


def prompt_tokens(messages: list[dict]) -> int:
    return TEMPLATE + sum(len(str(m.get("content", "")).split()) for m in messages)


def _chunk(delta: dict | None = None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body = {"object": "chat.completion.chunk", "model": "stub",
            "choices": [] if usage else [{"index": 0, "delta": delta or {}, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    data = f"data: {json.dumps(body)}\n\n".encode()
    return b"%x\r\n%s\r\n" % (len(data), data)


async def _handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, delay: float,
                  reasoning: int) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            method, path, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            length = 0
            for line in head.decode("latin-1").split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = json.loads(await reader.readexactly(length)) if length else {}
            if method == "GET" and path == "/v1/models":
                await _json(writer, 200, {"object": "list", "data": [{"id": "stub", "object": "model"}]})
            elif method == "POST" and path == "/v1/chat/completions":
                await _chat(writer, body, delay, reasoning)
            else:
                await _json(writer, 404, {"error": {"message": "not found", "code": 404}})
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _json(writer: asyncio.StreamWriter, status: int, value: dict) -> None:
    data = json.dumps(value).encode()
    writer.write(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                 % (status, len(data), data))
    await writer.drain()


async def _chat(writer: asyncio.StreamWriter, body: dict, delay: float, reasoning: int) -> None:
    n = int(body.get("max_tokens") or 16)
    usage = {"prompt_tokens": prompt_tokens(body.get("messages", [])), "completion_tokens": n,
             "total_tokens": 0}
    usage["total_tokens"] = usage["prompt_tokens"] + n
    if not body.get("stream"):
        await _json(writer, 200, {"object": "chat.completion", "model": "stub", "usage": usage,
                                  "choices": [{"index": 0, "finish_reason": "length",
                                               "message": {"role": "assistant", "content": " tok" * n}}]})
        return
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
    writer.write(_chunk({"role": "assistant", "content": None}) + _chunk({"content": ""}))
    for i in range(n):
        if delay:
            await asyncio.sleep(delay)
        writer.write(_chunk({"reasoning_content": " hmm"} if i < reasoning else {"content": " tok"}))
        await writer.drain()
    writer.write(_chunk({}, "length") + _chunk(usage=usage))
    data = b"data: [DONE]\n\n"
    writer.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data))
    await writer.drain()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--token-delay", type=float, default=0.0)
    parser.add_argument("--reasoning", type=int, default=0)
    args = parser.parse_args()

    async def serve() -> None:
        server = await asyncio.start_server(lambda r, w: _handle(r, w, args.token_delay, args.reasoning),
                                            "127.0.0.1", args.port, backlog=1024)
        async with server:
            await server.serve_forever()

    asyncio.run(serve())


class StubServer:
    """The stub in a child process on a free loopback port: `with StubServer() as url: ...`."""

    def __init__(self, token_delay: float = 0.0, reasoning: int = 0):
        from halo_core.llama.process import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__)), "--port", str(self.port),
                                      "--token-delay", str(token_delay), "--reasoning", str(reasoning)])

    def __enter__(self) -> str:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self.url
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError("the OpenAI stub did not start")

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


if __name__ == "__main__":
    main()
