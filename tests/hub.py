"""A local stand-in for the Hugging Face Hub's resolve endpoint, on 127.0.0.1, and a tiny GGUF
writer: the only fakes the hf tests use (the real Hub cannot be reached from tests).

It answers HEAD and GET on /{owner}/{repo}/resolve/{revision}/{file} (and on
/datasets/{owner}/{repo}/... for dataset repos) the way the Hub does:
X-Repo-Commit, ETag (the sha256 for LFS files, the git blob sha1 otherwise), X-Linked-Etag and
X-Linked-Size for LFS files, Content-Length, Accept-Ranges and 206 answers to Range requests
(`bytes=START-` and `bytes=START-END`),
X-Error-Code on 404/401. With `redirect=True` an LFS file is served like the Hub does it: the
resolve URL answers 302 to a "CDN" on another host name (localhost instead of 127.0.0.1).
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import attrs

COMMIT = "4f1c3a2b9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a"


@attrs.define
class HubFile:
    body: bytes  # what is sent
    etag: str  # what the Hub says the file hashes to
    size: int  # what the Hub says its size is
    lfs: bool = True
    token: str | None = None  # the Bearer token the repo requires
    redirect: bool = False
    drop_after: int | None = None  # the first GET sends this many bytes and hangs up
    then_status: list[int] = attrs.field(factory=list)  # answers for the GETs after that
    ranges: bool = True  # False: Range headers are ignored (the whole body, 200)
    gets: int = 0


@attrs.frozen
class Seen:
    method: str
    path: str
    headers: dict[str, str]


class FakeHub:
    """`hub.add(repo, file, data)`, then point HF_ENDPOINT at `hub.url`."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], HubFile] = {}
        self.requests: list[Seen] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep pytest output clean
                pass

            def do_HEAD(self):
                hub._handle(self, head=True)

            def do_GET(self):
                hub._handle(self, head=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def add(self, repo: str, file: str, data: bytes, *, body: bytes | None = None,
            size: int | None = None, lfs: bool = True, **options) -> HubFile:
        etag = (hashlib.sha256(data).hexdigest() if lfs else
                hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest())
        entry = HubFile(body=data if body is None else body, etag=etag,
                        size=len(data) if size is None else size, lfs=lfs, **options)
        self.files[(repo, file)] = entry
        return entry

    def seen(self, method: str, file: str | None = None) -> list[Seen]:
        return [r for r in self.requests
                if r.method == method and (file is None or r.path.endswith("/" + file))]

    # -- serving -------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, head: bool) -> None:
        self.requests.append(Seen("HEAD" if head else "GET", unquote(req.path),
                                  {k.lower(): v for k, v in req.headers.items()}))
        path = unquote(req.path.split("?", 1)[0])
        cdn = re.fullmatch(r"/cdn/([^/]+/[^/]+)/(.+)", path)
        if cdn:
            entry = self.files.get((cdn[1], cdn[2]))
            return self._body(req, entry, head) if entry else self._error(req, 404, "EntryNotFound")
        match = re.fullmatch(r"/(?:datasets/)?([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if not match:
            return self._error(req, 404, None)
        repo, file = match[1], match[3]
        if not any(r == repo for r, _ in self.files):
            return self._error(req, 404, "RepoNotFound")
        entry = self.files.get((repo, file))
        if entry is None:
            return self._error(req, 404, "EntryNotFound")
        if entry.token and req.headers.get("Authorization") != f"Bearer {entry.token}":
            return self._error(req, 401, "RepoNotFound")
        meta = {"X-Repo-Commit": COMMIT, "ETag": f'"{entry.etag}"', "Accept-Ranges": "bytes"}
        if entry.lfs:
            meta.update({"X-Linked-Etag": f'"{entry.etag}"', "X-Linked-Size": str(entry.size)})
        if entry.redirect:
            req.send_response(302)
            req.send_header("Location", f"http://localhost:{self.port}/cdn/{repo}/{file}")
            for key, value in meta.items():
                req.send_header(key, value)
            req.send_header("Content-Length", "0")
            req.end_headers()
            return
        self._body(req, entry, head, meta)

    def _error(self, req, status: int, code: str | None) -> None:
        req.send_response(status)
        if code:
            req.send_header("X-Error-Code", code)
        req.send_header("X-Repo-Commit", COMMIT)
        req.send_header("Content-Length", "0")
        req.end_headers()

    def _body(self, req, entry: HubFile, head: bool, meta: dict | None = None) -> None:
        if not head:
            entry.gets += 1
            if entry.gets > 1 and entry.then_status:
                return self._error(req, entry.then_status.pop(0), None)
        start, end = 0, len(entry.body)
        ranged = re.fullmatch(r"bytes=(\d+)-(\d*)", req.headers.get("Range", "") or "")
        if not entry.ranges:
            ranged = None
        if ranged and not head:
            start = int(ranged[1])
            end = min(end, int(ranged[2]) + 1) if ranged[2] else end
        body = entry.body[start:end]
        partial = ranged is not None and not head
        req.send_response(206 if partial else 200)
        for key, value in (meta or {}).items():
            req.send_header(key, value)
        if partial:
            req.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(entry.body)}")
        req.send_header("Content-Length", str(entry.size if head else len(body)))
        req.send_header("Accept-Ranges", "bytes")
        req.end_headers()
        if head:
            return
        if entry.gets == 1 and entry.drop_after is not None:
            req.wfile.write(body[:entry.drop_after])
            req.wfile.flush()
            req.connection.shutdown(socket.SHUT_RDWR)
            req.close_connection = True
            return
        req.wfile.write(body)


# -- a GGUF with chosen metadata ---------------------------------------------------------

def _value(v) -> tuple[int, bytes]:
    if isinstance(v, bool):
        return 7, struct.pack("<?", v)
    if isinstance(v, int):
        return (4, struct.pack("<I", v)) if 0 <= v < 2**32 else (11, struct.pack("<q", v))
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        raw = v.encode()
        return 8, struct.pack("<Q", len(raw)) + raw
    if isinstance(v, list):
        item_type = _value(v[0])[0] if v else 4
        return 9, struct.pack("<IQ", item_type, len(v)) + b"".join(_value(x)[1] for x in v)
    raise TypeError(v)


def gguf_bytes(metadata: dict, payload: bytes = b"") -> bytes:
    """A version-3 GGUF with these key/values, no tensors, and `payload` after the header."""
    out = [b"GGUF", struct.pack("<IQQ", 3, 0, len(metadata))]
    for key, value in metadata.items():
        vtype, raw = _value(value)
        out += [_value(key)[1], struct.pack("<I", vtype), raw]
    return b"".join(out) + payload


def write_gguf(path: Path, metadata: dict, payload: bytes = b"") -> Path:
    path.write_bytes(gguf_bytes(metadata, payload))
    return path
