"""llama.cpp's RPC backend, driven by halo: workers started and stopped, probed, and checked
before a bench or a server uses them.

A worker is llama.cpp's own `ggml-rpc-server` (called `rpc-server` before it was renamed),
built with -DGGML_RPC=ON. halo never carries tensors or computes anything itself: llama-bench
and llama-server talk to the workers. What halo speaks over a worker's socket is limited to
the protocol's query commands (ggml/src/ggml-rpc/ggml-rpc.cpp, protocol 7.x):

  request  | command (1 byte) | payload size (u64 LE) | payload |
  response | payload size (u64 LE) | payload |            (commands that answer)

  HELLO (14)              24 bytes of transport caps (zero: plain TCP) -> major, minor, patch,
                          pad, 24 bytes of caps. Every connection starts with it.
  DEVICE_COUNT (15)       -> u32
  GET_DEVICE_MEMORY (11)  u32 device -> u64 free, u64 total
  GET_ALIGNMENT (1)       u32 device -> u64 (the round-trip probe: no work on the worker)
  GET_MAX_SIZE (2)        u32 device -> u64

and, for the bandwidth figure, a scratch buffer of its own session: ALLOC_BUFFER (0),
BUFFER_GET_BASE (3), SET_TENSOR (6) of N bytes into it, FREE_BUFFER (4). The worker frees a
session's buffers when it ends, so nothing is left behind; nothing else is touched.

A worker serves one client at a time: while a llama-server or llama-bench is connected, a
probe's HELLO waits, and halo reports the worker "busy" instead of waiting.
"""

from __future__ import annotations

import socket
import statistics
import struct
import time
from pathlib import Path
from typing import Mapping

import attrs

from ..config import defaults
from ..errors import HaloError, ToolFailed, Unavailable
from .flags import Flags, probe_flags, rpc_args
from ..plugins import PluginHost, get_host
from ..records import ProcessKind, RpcDevice, RpcWorker, ServerInfo, ToolCommand
from ..runner import run_capture, tail_of
from ..runs import now
from .process import (
    Server, check_passthrough, check_port_free, connect_host, is_loopback, pid_dir, servers, spawn, start_ticks,
    stop_servers, write_pid_file,
)

WORKER_TOOLS = ("ggml-rpc-server", "rpc-server")  # the new name first
DEFAULT_PORT = 50052
PROTOCOL_MAJOR = 7  # the message layouts below are protocol 7's

_HELLO, _DEVICE_COUNT, _DEVICE_MEMORY, _ALIGNMENT, _MAX_SIZE = 14, 15, 11, 1, 2
_ALLOC, _GET_BASE, _FREE, _SET_TENSOR = 0, 3, 4, 6
_CAPS = 24
_GGML_TYPE_I8 = 24
# struct rpc_tensor (packed): id, type, buffer, ne[4] (u32), nb[4] (u32), op, op_params[16],
# flags, src[10], view_src, view_offs, data, name[64], use_count
_RPC_TENSOR = struct.Struct("<QIQ4I4II16ii10QQQQ64si")
assert _RPC_TENSOR.size == 296

BANDWIDTH_BYTES = 64 << 20

NO_AUTH = ("llama.cpp's RPC has no authentication: anyone who can reach the port can use the "
           "worker's memory and devices")


def limit_advice(port: int) -> str:
    return ("keep it on a private link (a direct cable or USB4 between the boxes) or let only the "
            "controller through the firewall, e.g. `firewall-cmd --add-rich-rule 'rule family=ipv4 "
            f"source address=CONTROLLER_IP port port={port} protocol=tcp accept'`")


class UnsafeWorkerBind(HaloError):
    """A non-loopback worker --host without --insecure."""


class RpcProtocolError(Exception):
    """The worker answered something protocol 7 does not."""


# -- endpoints -------------------------------------------------------------------------------

def parse_endpoints(text: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """"a:1,b:2" (or a list of such) -> ("a:1", "b:2"); a HaloError names a malformed one."""
    items = [text] if isinstance(text, str) else list(text)
    endpoints = [e.strip() for item in items for e in item.split(",") if e.strip()]
    for endpoint in endpoints:
        host, sep, port = endpoint.rpartition(":")
        if not sep or not host or ":" in host or not port.isdigit() or not 0 < int(port) < 65536:
            raise HaloError(f"bad RPC worker '{endpoint}': give HOST:PORT, e.g. 192.168.1.20:{DEFAULT_PORT} "
                            "(llama.cpp's RPC takes IPv4 addresses and host names)")
    dupes = sorted({e for e in endpoints if endpoints.count(e) > 1})
    if dupes:
        raise HaloError(f"RPC worker {dupes[0]} is named twice")
    return tuple(endpoints)


def parse_tensor_split(text: str | None) -> tuple[float, ...]:
    """"3,1" or "3/1" -> (3.0, 1.0): proportions per device, RPC devices first."""
    if not text:
        return ()
    try:
        parts = tuple(float(p) for p in text.replace("/", ",").split(",") if p.strip())
    except ValueError:
        raise HaloError(f"--tensor-split takes proportions such as 3,1, not {text!r}") from None
    if not parts or any(p < 0 for p in parts) or not any(parts):
        raise HaloError(f"--tensor-split takes proportions >= 0, not all 0, such as 3,1 (got {text!r})")
    return parts


# -- the protocol's query commands -----------------------------------------------------------

class _Session:
    """One connection to a worker, HELLO done."""

    def __init__(self, endpoint: str, timeout: float):
        host, _, port = endpoint.rpartition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def hello(self) -> tuple[int, int, int]:
        reply = self.call(_HELLO, bytes(_CAPS), 4 + _CAPS)
        return reply[0], reply[1], reply[2]

    def send(self, cmd: int, payload: bytes = b"") -> None:
        self.sock.sendall(struct.pack("<BQ", cmd, len(payload)))
        if payload:
            self.sock.sendall(payload)

    def call(self, cmd: int, payload: bytes, reply_size: int) -> bytes:
        self.send(cmd, payload)
        (size,) = struct.unpack("<Q", self._recv(8))
        if size != reply_size:
            raise RpcProtocolError(f"command {cmd}: a {size}-byte answer, not {reply_size}")
        return self._recv(size)

    def _recv(self, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the worker closed the connection")
            data += chunk
        return bytes(data)

    def u64(self, cmd: int, device: int) -> int:
        return struct.unpack("<Q", self.call(cmd, struct.pack("<I", device), 8))[0]

    def device_count(self) -> int:
        return struct.unpack("<I", self.call(_DEVICE_COUNT, b"", 4))[0]

    def memory(self, device: int) -> tuple[int, int]:
        return struct.unpack("<QQ", self.call(_DEVICE_MEMORY, struct.pack("<I", device), 16))

    def round_trip(self) -> float:
        start = time.perf_counter()
        self.u64(_ALIGNMENT, 0)
        return time.perf_counter() - start

    def upload_rate(self, device: int, size: int) -> float:
        """Bytes/s of SET_TENSOR into a scratch buffer of this session (best of 3)."""
        ptr, got = struct.unpack("<QQ", self.call(_ALLOC, struct.pack("<IQ", device, size), 16))
        if not ptr or got < size:
            raise RpcProtocolError(f"the worker could not allocate {size >> 20} MiB")
        try:
            (base,) = struct.unpack("<Q", self.call(_GET_BASE, struct.pack("<Q", ptr), 8))
            tensor = _RPC_TENSOR.pack(1, _GGML_TYPE_I8, ptr, size, 1, 1, 1, 1, size, size, size,
                                      0, *([0] * 16), 0, *([0] * 10), 0, 0, base, b"halo-bandwidth", 0)
            header = tensor + struct.pack("<BQ", 0, 0)  # no cache flag, offset 0
            data = bytes(size)
            self.sock.settimeout(max(self.sock.gettimeout() or 0, 120.0))  # a slow link
            best = None
            for _ in range(3):
                start = time.perf_counter()
                self.sock.sendall(struct.pack("<BQ", _SET_TENSOR, len(header) + size) + header)
                self.sock.sendall(data)
                self.u64(_ALIGNMENT, device)  # answered once the tensor has been stored
                took = time.perf_counter() - start
                best = took if best is None else min(best, took)
            return size / best
        finally:
            self.send(_FREE, struct.pack("<Q", ptr))

    def close(self) -> None:
        self.sock.close()


def probe(endpoint: str, *, timeout: float = 5.0, bandwidth: bool = False,
          first_device: int = 0) -> RpcWorker:
    """What the worker at `endpoint` says about itself: version, devices and their memory,
    round-trip time, and with `bandwidth` the upload rate of a 64 MiB SET_TENSOR.
    `first_device` numbers its devices the way the controller will (RPC<n>)."""
    try:
        session = _Session(endpoint, timeout)
    except socket.timeout:
        return RpcWorker(endpoint, "down", f"no answer to connect within {timeout:g}s")
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused: no worker listens there"
        elif isinstance(exc, socket.gaierror):
            reason = f"cannot resolve {endpoint.rpartition(':')[0]}: {reason}"
        return RpcWorker(endpoint, "down", reason)
    try:
        try:
            major, minor, patch = session.hello()
        except socket.timeout:
            return RpcWorker(endpoint, "busy", f"connected, but no answer to HELLO within {timeout:g}s: "
                                               "a worker serves one client at a time (is a llama-server "
                                               "or llama-bench using it?)")
        except (ConnectionError, RpcProtocolError) as exc:
            return RpcWorker(endpoint, "incompatible",
                             f"closed the connection at HELLO ({exc}): it speaks another RPC protocol "
                             f"than {PROTOCOL_MAJOR}.x; run the same llama.cpp build on every box")
        version = f"{major}.{minor}.{patch}"
        if major != PROTOCOL_MAJOR:
            return RpcWorker(endpoint, "up", version=version,
                             error=f"devices not queried: halo reads RPC protocol {PROTOCOL_MAJOR}.x")
        devices = []
        for index in range(session.device_count()):
            free, total = session.memory(index)
            devices.append(RpcDevice(f"RPC{first_device + index}", index, free, total))
        rtt = statistics.median(session.round_trip() for _ in range(5)) * 1000
        rate, note = None, "not measured"
        if bandwidth and devices:
            try:
                size = min(BANDWIDTH_BYTES, session.u64(_MAX_SIZE, 0), devices[0].free // 4)
                rate, note = session.upload_rate(0, size), ""
            except (OSError, RpcProtocolError) as exc:
                note = f"not measured: {exc or type(exc).__name__}"
        return RpcWorker(endpoint, "up", version=version, devices=tuple(devices),
                         rtt_ms=round(rtt, 3), bandwidth=rate, bandwidth_note=note)
    except socket.timeout:
        return RpcWorker(endpoint, "busy", f"stopped answering for {timeout:g}s")
    except (OSError, RpcProtocolError) as exc:
        return RpcWorker(endpoint, "down", f"lost the connection: {exc}")
    finally:
        session.close()


def probe_workers(endpoints, *, timeout: float = 5.0, bandwidth: bool = False) -> list[RpcWorker]:
    """probe() each endpoint, numbering devices across them as the controller does."""
    workers: list[RpcWorker] = []
    for endpoint in endpoints:
        first = sum(len(w.devices) for w in workers)
        workers.append(probe(endpoint, timeout=timeout, bandwidth=bandwidth, first_device=first))
    return workers


def describe(worker: RpcWorker) -> str:
    return f"RPC worker {worker.endpoint} is {worker.state}: {worker.error}"


def check_workers(endpoints, controllers: list[tuple[ToolCommand, str]]) -> list[RpcWorker]:
    """Before a run: every worker up, and each controller binary (llama-bench, llama-server)
    able to use them all — its own HELLO, so a protocol mismatch shows here, not mid-run.
    Raises a HaloError naming the first worker that is not."""
    workers = probe_workers(endpoints)
    for worker in workers:
        if worker.state != "up":
            raise HaloError(describe(worker))
    for cmd, tool in controllers:
        flags = probe_flags(cmd, tool)
        rpc_args(flags, tool, tuple(endpoints), ())  # Unavailable for a build without RPC
        if not flags.has("--list-devices"):
            continue  # an older build: the run itself will tell
        for worker in workers:
            argv = [*cmd.argv, *rpc_args(flags, tool, (worker.endpoint,), ()), "--list-devices"]
            done = run_capture(argv, env=cmd.env, timeout=60)
            if done.returncode != 0:
                output = (done.stderr + done.stdout).strip().splitlines()
                said = next((ln.strip() for ln in output if "mismatch" in ln or "failed" in ln.lower()),
                            output[-1].strip() if output else "no output")
                raise HaloError(f"RPC worker {worker.endpoint} (protocol {worker.version}) cannot be "
                                f"used by this {tool}: {said}; run the same llama.cpp build on "
                                "every box")
    return workers


def down_workers(endpoints) -> list[RpcWorker]:
    """The workers that do not answer HELLO now (a quick check between llama-bench runs)."""
    return [w for w in (probe(e, timeout=3.0) for e in endpoints) if w.state != "up"]


# -- workers halo starts ---------------------------------------------------------------------

@attrs.frozen
class WorkerSpec:
    """What `halo rpc serve` starts: one rpc-server on a backend."""

    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    devices: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # e.g. ("CUDA0",)
    mem: int | None = None  # MiB to expose (only older rpc-server builds have -m/--mem)
    threads: int | None = None
    cache: bool = False  # the worker's local tensor cache (-c)
    backend: str = attrs.field(factory=lambda: defaults().backend)
    insecure: bool = False
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    ready_timeout: float = 60.0


WORKER_FLAGS = {"--host": "--host", "-H": "--host", "--port": "--port", "-p": "--port"}  # rpc-server's


def check_worker_bind(host: str, port: int, insecure: bool) -> None:
    """Refuse a non-loopback worker unless told --insecure: RPC has no authentication."""
    if not is_loopback(host) and not insecure:
        raise UnsafeWorkerBind(f"--host {host} exposes the worker beyond this machine, and {NO_AUTH}: "
                               f"give --insecure to bind anyway, and {limit_advice(port)}")


def worker_tool(backend) -> tuple[ToolCommand, str, Flags]:
    """The backend's RPC worker binary under either name: (command, name, its flags)."""
    for tool in WORKER_TOOLS:
        try:
            cmd = backend.command(tool)
            return cmd, tool, probe_flags(cmd, tool)
        except (Unavailable, ToolFailed):
            continue
    raise Unavailable(f"backend '{backend.name}' has no llama.cpp RPC worker ({' / '.join(WORKER_TOOLS)}): "
                      "build llama.cpp with -DGGML_RPC=ON (scripts/ensure-llama-cpp PYTHON --accel cpu,rpc)")


def worker_argv(cmd: ToolCommand, tool: str, flags: Flags, spec: WorkerSpec) -> list[str]:
    def need(*names: str) -> str:
        found = flags.first(*names)
        if found is None:
            raise Unavailable(f"this {tool} has no {names[0]} option")
        return found

    argv = [*cmd.argv, need("--host", "-H"), spec.host, need("--port", "-p"), str(spec.port)]
    if spec.devices:
        argv += [need("--device", "-d"), ",".join(spec.devices)]
    if spec.mem is not None:
        if flags.first("--mem", "-m") is None:
            raise Unavailable(f"this {tool} has no --mem: newer llama.cpp builds expose each device's "
                              "own memory (choose devices with --device instead)")
        argv += [flags.first("--mem", "-m"), str(spec.mem)]
    if spec.threads:
        argv += [need("--threads", "-t"), str(spec.threads)]
    if spec.cache:
        argv += [need("--cache", "-c")]
    return argv + list(spec.extra)


def rpc_workers() -> list[tuple[ServerInfo, bool]]:
    """The workers halo started (pid files) with whether each still runs."""
    return servers(kind=ProcessKind.RPC)


def stop_workers(port: int | None = None) -> list[ServerInfo]:
    return stop_servers(port, kind=ProcessKind.RPC)


def start_worker(spec: WorkerSpec, *, detach: bool = False, host: PluginHost | None = None,
                 backend_options: Mapping[str, str] | None = None) -> Server:
    """Start an RPC worker, wait until it answers HELLO, and return it (pid file written).
    `backend_options` configure the backend (`Backend.configure`).

    Raises UnsafeWorkerBind for a non-loopback host without `insecure`, ToolFailed (with the
    log tail) when the worker dies or does not answer within spec.ready_timeout."""
    check_worker_bind(spec.host, spec.port, spec.insecure)
    check_passthrough(spec.extra, WORKER_FLAGS)
    check_port_free(spec.port)
    [backend] = (host or get_host()).available_backends([spec.backend], backend_options)
    cmd, tool, flags = worker_tool(backend)
    argv = worker_argv(cmd, tool, flags, spec)
    log_path = pid_dir() / f"rpc-{spec.port}.log"
    proc = spawn(argv, cmd.env, log_path, detach)
    endpoint = f"{spec.host}:{spec.port}"
    info = ServerInfo(pid=proc.pid, start_ticks=start_ticks(proc.pid) or 0, argv=argv, host=spec.host,
                      port=spec.port, url=endpoint, model="", backend=backend.name,
                      log=str(log_path), started=now(),
                      pid_file=str(pid_dir() / f"rpc-{spec.port}.json"), detached=detach,
                      kind=ProcessKind.RPC)
    write_pid_file(info)
    worker = Server(info, proc)
    try:
        _wait_ready(worker, f"{connect_host(spec.host)}:{spec.port}", spec.ready_timeout, tool)
    except BaseException:
        worker.stop()
        raise
    return worker


def _wait_ready(worker: Server, endpoint: str, timeout: float, tool: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        worker.check_started(tool)
        if probe(endpoint, timeout=2.0).state == "up":
            return
        if time.monotonic() > deadline:
            raise ToolFailed(f"{tool} did not answer on {endpoint} within {timeout:.0f}s "
                             f"(log: {worker.info.log})", log_tail=tail_of(Path(worker.info.log), 15))
        time.sleep(0.1)
