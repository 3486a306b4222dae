"""Helpers for EvalSuite plugins that wrap an eval framework (evalplus, inspect, bigcodebench).

A framework suite usually: checks its modules are importable (`needs`), reads task files
(`read_records`), asks halo's client for the completions (EvalContext.chat), then has the
framework score them in a child Python (`score_in_child`), so model-generated code never runs
in halo's process.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Callable, NoReturn

from ..errors import HaloError
from ..records import Availability
from ..store import write_atomic
from .sandbox import run_scorer

INSTALL = "pip install 'halo-llm[eval]'"


def dist_version(dist: str) -> str:
    """The installed version of distribution `dist`, or "" when it is not installed."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return ""


def needs(*modules: tuple[str, str], hint: str = INSTALL) -> Availability:
    """Available when every (module, distribution) pair imports; else names the first missing."""
    for module, dist in modules:
        if importlib.util.find_spec(module) is None:
            return Availability(False, f"{dist} is not installed", hint)
    return Availability(True)


def read_records(path: Path | str, what: str = "dataset") -> list[dict]:
    """The JSON objects of a .jsonl or .jsonl.gz file; a missing or malformed file is a HaloError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise HaloError(f"{what} not found: {path}")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]
    except (OSError, ValueError) as exc:
        raise HaloError(f"{what} {path} is not JSON Lines: {exc}") from exc


def write_records(path: Path, rows: list[dict]) -> None:
    """`rows` as JSON Lines, written atomically."""
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows))


def score_in_child(module: str, args: list[str], *, env: dict[str, str], log: Path,
                   timeout: float, what: str, unsafe_local_exec: bool = False) -> None:
    """`python -m MODULE ARGS` scoring model-written code, in halo's sandbox (sandbox.py): the
    folder of `log` is its work dir and only writable folder, `env` its whole environment
    beside PATH/HOME/LANG, its output goes to `log`, stdin is closed.

    A non-zero exit (or the timeout) is a HaloError naming `what` and the log's last line; no
    sandbox here is one too, unless `unsafe_local_exec` (the user's --unsafe-local-exec).
    """
    code = run_scorer([sys.executable, "-m", module, *args], workdir=log.parent, env=env, log=log,
                      timeout=timeout, what=what, unsafe_local_exec=unsafe_local_exec)
    if code != 0:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        raise HaloError(f"{what} failed (exit {code}): {(lines or ['no output'])[-1]} (log: {log})")


def child_main(main: Callable[[], None]) -> NoReturn:
    """The body of a scoring child (`score_in_child`): run `main`, print what went wrong on
    stderr, and leave with os._exit, so the frameworks' watchdog threads and process pools
    cannot hold the exit (evalplus's keeps an unfinished child alive for 20 s)."""
    try:
        main()
    except BaseException as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        code = 1
    else:
        code = 0
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
