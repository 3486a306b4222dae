"""The llama.cpp processes halo starts and finds again: spawned in their own process group,
recorded in a pid file in $HALO_HOME/run/ (pid, its start time, argv, port, log), listed,
stopped. A process is only ever signalled when its pid still has the recorded start time:
never by name. Servers (server.py), RPC workers (rpc.py) and benches (the bench's own halo
process) all go through here.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import attrs

from ..errors import HaloError, ToolFailed
from ..records import ProcessInfo, ProcessKind, ServerInfo
from ..runner import _die_with_parent, describe_exit, tail_of
from ..runs import now
from ..store import from_dict, halo_home, write_json


def pid_dir() -> Path:
    return halo_home() / "run"


def write_pid_file(info: ProcessInfo) -> None:
    write_json(Path(info.pid_file), info)


def read_pid_files() -> list[ProcessInfo]:
    """Every pid file in $HALO_HOME/run/ (servers and RPC workers as ServerInfo), oldest first;
    unreadable ones are skipped."""
    infos = []
    for path in sorted(pid_dir().glob("*.json")):
        try:
            data = json.loads(path.read_text())
            kind = data.get("kind", ProcessKind.SERVER)
            cls = ServerInfo if kind in (ProcessKind.SERVER, ProcessKind.RPC) else ProcessInfo
            infos.append(from_dict(cls, data))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
    return sorted(infos, key=lambda i: i.started)


class UnsafeBind(HaloError):
    """A non-loopback --host without --api-key or --insecure."""


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


# what halo itself sets, checks and records about where a server listens and who may talk to it:
# the same flag after `--` would win (llama.cpp keeps the last) and walk around check_bind
SERVER_FLAGS = {"--host": "--host", "--port": "--port", "--api-key": "--api-key",
                "--api-key-file": "--api-key"}  # llama-server's; rpc.py has the worker's


def check_passthrough(extra: tuple[str, ...] | list[str], owned: dict[str, str] = SERVER_FLAGS) -> None:
    """Refuse pass-through arguments that set what halo owns (host, port, API key): give them
    to halo, which checks and records them."""
    for arg in extra:
        flag = arg.split("=", 1)[0]
        if flag in owned:
            raise UnsafeBind(f"{flag} after -- would override what halo checks and records: "
                             f"give {owned[flag]} to halo instead")


def key_file(port: int) -> Path:
    return pid_dir() / f"server-{port}.key"


def write_key_file(port: int, key: str) -> Path:
    """The API key in a file only its owner reads (0600, created so, never through a link),
    for llama-server's --api-key-file: a key in argv is on show to every user (`ps`)."""
    path = key_file(port)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return path


def forget(info: ProcessInfo) -> None:
    """Remove a stopped process's pid file, and its key file when it had one."""
    Path(info.pid_file).unlink(missing_ok=True)
    Path(info.pid_file).with_suffix(".key").unlink(missing_ok=True)


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


def url(host: str, port: int) -> str:
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
        forget(self.info)


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


def servers(kind: ProcessKind | str = ProcessKind.SERVER) -> list[tuple[ServerInfo, bool]]:
    """Every pid file of this kind (servers, RPC workers) with whether its process still runs."""
    return [(info, is_running(info)) for info in read_pid_files()
            if isinstance(info, ServerInfo) and info.kind == kind]


def record_bench(run_path: Path, backends: list) -> Path:
    """A pid file for this halo process while it runs llama-bench (`halo flush` stops it).
    Those of bench processes that are gone (killed before they could remove theirs) go."""
    for old in read_pid_files():
        if old.kind == ProcessKind.BENCH and not is_running(old):
            forget(old)
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
        forget(info)
    return stopped
