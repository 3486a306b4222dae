"""`halo serve`: llama-server with the measured best flags, on any backend.

A server is started from a ServerSpec (or a preset of configs/serve-presets.ini), /health is
awaited, and a pid file in $HALO_HOME/run/ records it (pid, its start time, argv, port, log)
so `halo serve status`, `halo serve stop` and `halo flush` find it again. A process is only
ever signalled when its pid still has the recorded start time: never by name.
"""

from __future__ import annotations

import configparser
import ipaddress
import os
import signal
import socket
import subprocess
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Mapping

import attrs
import httpx

from .config import defaults
from .errors import HaloError, ToolFailed
from .fit import KV_TYPES
from .llamacpp import ServerParams, probe_flags, server_argv
from .models import fetch_model
from .plugins import PluginHost, get_host
from .records import ProcessInfo, ProcessKind, ServerInfo
from .runner import _die_with_parent, describe_exit, tail_of
from .runs import now, pid_dir, read_pid_files, write_pid_file
from .store import halo_home


class UnsafeBind(HaloError):
    """A non-loopback --host without --api-key or --insecure."""


@attrs.frozen
class ServerSpec:
    """What `halo serve` starts: model, backend and llama-server options in halo's terms."""

    model: str
    backend: str = attrs.field(factory=lambda: defaults().backend)
    host: str = "127.0.0.1"
    port: int = 8080
    ctx: int = 131072
    parallel: int = 1
    cache_type: str = "q4_0"
    ngram: bool = False
    no_think: bool = False
    api_key: str | None = None
    insecure: bool = False
    threads: int | None = None
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    ready_timeout: float = 600.0
    preset: str | None = None
    rpc: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # RPC workers, HOST:PORT
    tensor_split: tuple[float, ...] = attrs.field(default=(), converter=tuple)


@attrs.frozen
class Preset:
    """A named serving setup from configs/serve-presets.ini."""

    name: str
    description: str
    model: str
    ctx: int = 131072
    parallel: int = 1
    ngram: bool = False
    no_think: bool = False
    backend: str | None = None
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)


# -- presets ---------------------------------------------------------------------------------

def _parse_presets(text: str, origin: str) -> dict[str, Preset]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=origin)
    except configparser.Error as exc:
        raise HaloError(f"{origin}: {str(exc).splitlines()[0]}") from None
    presets = {}
    for name in parser.sections():
        section = parser[name]
        try:
            presets[name] = Preset(
                name=name, description=section.get("description", ""),
                model=section["model"], ctx=section.getint("ctx", 131072),
                parallel=section.getint("parallel", 1), ngram=section.getboolean("ngram", False),
                no_think=section.getboolean("no_think", False),
                backend=section.get("backend") or None,
                extra=tuple(section.get("extra", "").split()))
        except (KeyError, ValueError) as exc:
            raise HaloError(f"{origin}: preset [{name}]: bad or missing {exc}") from None
    return presets


def load_presets() -> dict[str, Preset]:
    """configs/serve-presets.ini, then $HALO_HOME/serve-presets.ini (same name: yours wins)."""
    shipped = resources.files("halo_core").joinpath("serve-presets.ini").read_text()
    presets = _parse_presets(shipped, "serve-presets.ini")
    user = halo_home() / "serve-presets.ini"
    if user.is_file():
        presets.update(_parse_presets(user.read_text(), str(user)))
    return presets


def preset_spec(name: str, **overrides) -> ServerSpec:
    """A ServerSpec from the preset `name`, with explicit options (not None) on top."""
    presets = load_presets()
    if name not in presets:
        raise HaloError(f"unknown preset '{name}' (known: {', '.join(sorted(presets))})")
    p = presets[name]
    fields = dict(model=p.model, ctx=p.ctx, parallel=p.parallel, ngram=p.ngram,
                  no_think=p.no_think, extra=p.extra, preset=name)
    if p.backend:
        fields["backend"] = p.backend
    extra = overrides.pop("extra", ())
    fields.update({k: v for k, v in overrides.items() if v is not None})
    fields["extra"] = tuple(fields["extra"]) + tuple(extra)
    return ServerSpec(**fields)


# -- binding ---------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_bind(host: str, api_key: str | None, insecure: bool) -> None:
    """Refuse to serve beyond this machine without an API key, unless told --insecure."""
    if not is_loopback(host) and not api_key and not insecure:
        raise UnsafeBind(f"--host {host} serves beyond this machine: give --api-key KEY "
                         f"(or --insecure to serve without one)")


# -- processes -------------------------------------------------------------------------------

def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot; None when it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def is_running(info: ProcessInfo) -> bool:
    """Whether the recorded process still runs (same pid and start time)."""
    return start_ticks(info.pid) == info.start_ticks


def stop_process(info: ProcessInfo, grace: float = 10.0) -> bool:
    """SIGTERM the recorded process group, SIGKILL after `grace`; False if it was not running."""
    if not is_running(info):
        return False
    try:  # a server leads its own process group; a bench's halo process may not
        group = os.getpgid(info.pid) == info.pid
    except ProcessLookupError:
        return False
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            (os.killpg if group else os.kill)(info.pid, sig)
        except ProcessLookupError:
            break
        except PermissionError as exc:
            raise HaloError(f"cannot stop pid {info.pid}: {exc.strerror}") from None
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and is_running(info):
            time.sleep(0.1)
        if not is_running(info):
            break
    return True


def free_port() -> int:
    """A free TCP port on the loopback interface (for a server halo starts for itself)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def connect_host(host: str) -> str:
    """The address to reach a server listening on `host` from this machine (a wildcard bind
    answers on loopback)."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@attrs.define
class Server:
    """A started llama-server: its record and, while halo is its parent, its Popen."""

    info: ServerInfo
    proc: subprocess.Popen | None = None

    def wait(self) -> int:
        assert self.proc is not None
        return self.proc.wait()

    def check_started(self, tool: str) -> None:
        """ToolFailed with the log's last line when the process exited before it was ready."""
        code = self.proc.poll()
        if code is not None:
            tail = tail_of(Path(self.info.log), 15)
            last = next((ln for ln in reversed(tail.splitlines()) if ln.strip()), "no output")
            raise ToolFailed(f"{tool} {describe_exit(code)} before it was ready: {last.strip()} "
                             f"(log: {self.info.log})", returncode=code, log_tail=tail)

    def stop(self) -> None:
        stop_process(self.info)
        if self.proc is not None:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        Path(self.info.pid_file).unlink(missing_ok=True)


def spawn(argv: list[str], env, log_path: Path, detach: bool) -> subprocess.Popen:
    """Start a long-running tool in its own process group, its output appended to `log_path`
    after a header line; unless detached it dies with halo."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    full_env = dict(os.environ)
    full_env.update(env)
    with open(log_path, "ab") as log:
        log.write(f"=== {now()} {' '.join(argv)}\n".encode())
        log.flush()
        try:
            return subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=full_env,
                start_new_session=True,
                preexec_fn=None if detach or sys.platform != "linux" else _die_with_parent)
        except OSError as exc:
            raise ToolFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc


def check_port_free(port: int) -> None:
    """HaloError when a server or RPC worker halo started already listens on `port`."""
    for info in read_pid_files():
        if isinstance(info, ServerInfo) and info.port == port and is_running(info):
            what, command = (("an RPC worker", "halo rpc stop") if info.kind == ProcessKind.RPC
                             else ("a server", "halo serve stop"))
            raise HaloError(f"{what} halo started (pid {info.pid}) already uses port {port}: "
                            f"{command} --port {port}")


def serve(spec: ServerSpec, *, detach: bool = False, host: PluginHost | None = None,
          backend_options: Mapping[str, str] | None = None, on_status=None) -> Server:
    """Start llama-server for `spec`, wait until /health answers 200, and return it.

    `backend_options` configure the backend (`Backend.configure`). Raises UnsafeBind for a
    non-loopback host without a key, ToolFailed (with the log tail) when the server dies or
    does not become ready within spec.ready_timeout.
    """
    status = on_status or (lambda _msg: None)
    check_bind(spec.host, spec.api_key, spec.insecure)
    if spec.cache_type not in KV_TYPES:
        raise HaloError(f"unknown KV cache type '{spec.cache_type}' (known: {', '.join(KV_TYPES)})")
    check_port_free(spec.port)
    host = host or get_host()
    [backend] = host.available_backends([spec.backend], backend_options)
    status(f"resolving model {spec.model}")
    model = fetch_model(spec.model, host=host)
    if model.synthetic:
        status(f"{model.name} is synthetic (random weights): its replies are noise"
               + ("; n-gram speculation's acceptance on it means nothing" if spec.ngram else ""))
    cmd = backend.command("llama-server")
    flags = probe_flags(cmd, "llama-server")
    workers = ()
    if spec.rpc:
        from .rpc import check_workers

        status(f"checking RPC workers {','.join(spec.rpc)}")
        workers = check_workers(spec.rpc, [(cmd, "llama-server")])
    defaults = backend.defaults()
    extra = list(spec.extra)
    if defaults.ubatch and not {"-ub", "--ubatch-size"} & set(extra):
        extra = ["-ub", str(defaults.ubatch), *extra]
    params = ServerParams(backend.map_path(model.path), host=spec.host, port=spec.port,
                          ctx=spec.ctx, parallel=spec.parallel, cache_type_k=spec.cache_type,
                          cache_type_v=spec.cache_type, ngram=spec.ngram, no_think=spec.no_think,
                          api_key=spec.api_key, threads=spec.threads, rpc=spec.rpc,
                          tensor_split=spec.tensor_split, extra=tuple(extra))
    argv = server_argv(cmd, flags, params, defaults)
    log_path = pid_dir() / f"server-{spec.port}.log"
    proc = spawn(argv, cmd.env, log_path, detach)
    info = ServerInfo(
        pid=proc.pid, start_ticks=start_ticks(proc.pid) or 0, argv=argv, host=spec.host,
        port=spec.port, url=_url(spec.host, spec.port), model=str(model.path),
        backend=backend.name, log=str(log_path), started=now(),
        pid_file=str(pid_dir() / f"server-{spec.port}.json"), detached=detach, rpc=workers)
    write_pid_file(info)
    server = Server(info, proc)
    try:
        _wait_ready(server, spec, status)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_ready(server: Server, spec: ServerSpec, status) -> None:
    url = _url(connect_host(spec.host), spec.port) + "/health"
    deadline = time.monotonic() + spec.ready_timeout
    status(f"waiting for {url}")
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            server.check_started("llama-server")
            try:
                if client.get(url).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ToolFailed(f"llama-server did not answer {url} within {spec.ready_timeout:.0f}s "
                                 f"(log: {server.info.log})", log_tail=tail_of(Path(server.info.log), 15))
            time.sleep(0.25)


def servers(kind: ProcessKind | str = ProcessKind.SERVER) -> list[tuple[ServerInfo, bool]]:
    """Every pid file of this kind (servers, RPC workers) with whether its process still runs."""
    return [(info, is_running(info)) for info in read_pid_files()
            if isinstance(info, ServerInfo) and info.kind == kind]


def record_bench(run_path: Path, backends: list) -> Path:
    """A pid file for this halo process while it runs llama-bench (`halo flush` stops it)."""
    pid = os.getpid()
    info = ProcessInfo(kind=ProcessKind.BENCH, pid=pid, start_ticks=start_ticks(pid) or 0,
                       argv=sys.argv, backend=",".join(b.name for b in backends),
                       log=str(run_path / "bench.log"), started=now(),
                       pid_file=str(pid_dir() / f"bench-{pid}.json"))
    write_pid_file(info)
    return Path(info.pid_file)


def stop_servers(port: int | None = None,
                 kind: ProcessKind | str = ProcessKind.SERVER) -> list[ServerInfo]:
    """Stop the servers (or RPC workers) halo recorded (one port, or all) and remove their
    pid files."""
    stopped = []
    for info, _alive in servers(kind):
        if port is not None and info.port != port:
            continue
        if stop_process(info):
            stopped.append(info)
        Path(info.pid_file).unlink(missing_ok=True)
    return stopped
