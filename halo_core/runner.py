"""Runs external tools: argv lists only, output streamed, stderr logged, children cleaned up."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import deque
from pathlib import Path
from typing import Iterator, Mapping

from .errors import ToolFailed


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask Linux to SIGKILL the tool if halo dies, even by SIGKILL (no orphaned benches)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def tail_of(path: Path, lines: int = 20) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines)).rstrip()
    except FileNotFoundError:
        return ""


class Process:
    """A tool started in its own session whose stdout is read line by line.

    Use as a context manager: leaving the block early (an error, Ctrl-C) terminates the tool
    and everything it started.
    """

    def __init__(self, argv: list[str], *, env: Mapping[str, str] | None = None,
                 log_path: Path, cwd: Path | None = None):
        self.argv = list(argv)
        self.log_path = Path(log_path)
        merged = dict(os.environ)
        merged.update(env or {})
        self._log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                self.argv, stdout=subprocess.PIPE, stderr=self._log, stdin=subprocess.DEVNULL,
                env=merged, cwd=cwd, start_new_session=True, text=True, bufsize=1,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except OSError as exc:
            self._log.close()
            raise ToolFailed(f"cannot start {self.argv[0]}: {exc.strerror or exc}") from exc

    def lines(self) -> Iterator[str]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            yield line.rstrip("\n")

    def wait(self, timeout: float | None = None) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, grace: float = 5.0) -> None:
        """Terminate the tool's whole process group, then kill it if it lingers."""
        if self.proc.poll() is None:
            for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=wait)
                    break
                except subprocess.TimeoutExpired:
                    continue

    def __enter__(self) -> "Process":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
        if self.proc.stdout:
            self.proc.stdout.close()
        self._log.close()


def last_line(done: subprocess.CompletedProcess, default: str = "no output") -> str:
    """The last line a finished command printed, stderr first: what its failure is said with."""
    lines = (done.stderr.strip() or done.stdout.strip()).splitlines()
    return lines[-1].strip() if lines else default


def run_capture(argv: list[str], *, env: Mapping[str, str] | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess:
    """Run a short command to completion and capture its output (help text, versions)."""
    merged = dict(os.environ)
    merged.update(env or {})
    try:
        return subprocess.run(argv, capture_output=True, text=True, env=merged,
                              timeout=timeout, stdin=subprocess.DEVNULL, errors="replace")
    except OSError as exc:
        raise ToolFailed(f"cannot start {argv[0]}: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{argv[0]} did not finish within {timeout:.0f}s") from exc
