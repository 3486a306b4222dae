"""Where halo keeps what it ran, and how it finds it again: run directories, their run.json,
JSON Lines files, timestamps and pid files. bench.py, evals.py, journal.py and serve.py all
go through here.

  $HALO_HOME/runs/<kind>/<tag>-<UTC stamp>/   one `halo bench` (kind "bench") or `halo eval`
                                              (kind "eval") run; what else it holds: bench.py,
                                              evals.py
  $HALO_HOME/journal/<UTC stamp>/             one tuning transaction (tune/journal.py)

Every run directory has a run.json (RunState): the spec, the status (a RunStatus), the error,
started_at / finished_at / resumed_at, and what its kind adds. A run is found by its path,
its directory name, or its tag (the latest run with that tag).
"""

from __future__ import annotations

import fcntl
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import attrs

from .errors import HaloError
from .records import RunStatus
from .store import from_dict, halo_home, safe_name, to_dict, write_json

RUN_NAME = re.compile(r"^(?P<tag>.+)-(?P<stamp>\d{8}T\d{6}Z)(?:\.\d+)?$")


def now() -> str:
    """The current UTC time as halo records it: ISO 8601 to the second, "2026-11-25T14:52:50+00:00"."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def stamp() -> str:
    """The current UTC time for a file name: "20261125T145250Z"."""
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def new_dir(parent: Path, name: str) -> Path:
    """Create parent/name, or parent/name.1, .2, ... when it exists."""
    parent.mkdir(parents=True, exist_ok=True)
    for n in range(1000):
        path = parent / (name if n == 0 else f"{name}.{n}")
        try:
            path.mkdir()
            return path
        except FileExistsError:
            continue
    raise HaloError(f"cannot create a directory {name} under {parent}")


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of a JSONL file, read only: a line torn by a kill is skipped (the
    next append_line cuts it)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    if data and not data.endswith(b"\n"):
        data = data[:data.rfind(b"\n") + 1]
    rows = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


# -- run directories -------------------------------------------------------------------------

def runs_root(kind: str) -> Path:
    return halo_home() / "runs" / kind


def new_run_dir(kind: str, tag: str) -> Path:
    """Create $HALO_HOME/runs/<kind>/<tag>-<UTC stamp>/ (unique)."""
    return new_dir(runs_root(kind), f"{safe_name(tag)}-{stamp()}")


def list_runs(kind: str) -> list[Path]:
    """Every run directory of `kind`, oldest first."""
    root = runs_root(kind)
    if not root.is_dir():
        return []
    runs = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return sorted(runs, key=lambda p: (m["stamp"] if (m := RUN_NAME.match(p.name)) else "", p.name))


def latest_with_tag(kind: str, tag: str) -> Path | None:
    matches = [p for p in list_runs(kind) if (m := RUN_NAME.match(p.name)) and m["tag"] == tag]
    return matches[-1] if matches else None


def resolve_run(kind: str, ref: str | Path) -> Path:
    """A run from a path, a run directory name, or a tag (its latest run)."""
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        return path
    named = runs_root(kind) / str(ref)
    if (named / "run.json").is_file():
        return named
    tagged = latest_with_tag(kind, str(ref))
    if tagged is not None:
        return tagged
    raise HaloError(f"no {kind} run '{ref}' (not a run directory, run name or tag; "
                    f"see `halo {kind} list`)")


def _recorded_kind(path: Path) -> str | None:
    try:
        return json.loads((path / "run.json").read_text()).get("kind")
    except (OSError, ValueError, AttributeError):
        return None


def kind_of(path: Path) -> str:
    """A run directory's kind: run.json's `kind`, else the runs/<kind>/ folder it is in (runs
    written before every run recorded its kind)."""
    return _recorded_kind(path) or path.parent.name


def resolve_kind(ref: str | Path, kinds: tuple[str, ...]) -> tuple[str, Path]:
    """(kind, run directory) for a ref that may name a run of any of `kinds`: a path or run name
    is its own run; a tag matching runs of two kinds is refused, naming both."""
    path = Path(ref).expanduser()
    if (path / "run.json").is_file():
        recorded = _recorded_kind(path)
        kind = recorded or path.parent.name
        if kind not in kinds:
            if recorded:
                raise HaloError(f"{path} is a {kind} run, not a {' or '.join(kinds)} run")
            kind = kinds[0]  # an older run copied out of runs/<kind>/: the first kind, as before
        return kind, path
    named = [(k, runs_root(k) / str(ref)) for k in kinds if (runs_root(k) / str(ref) / "run.json").is_file()]
    tagged = [(k, p) for k in kinds if (p := latest_with_tag(k, str(ref))) is not None]
    found = named or tagged
    if len(found) > 1:
        both = " and ".join(f"a {k} run ({p})" for k, p in found)
        raise HaloError(f"{'run name' if named else 'tag'} '{ref}' names {both}: give the run's "
                        f"{'path' if named else 'directory name or path'}")
    if found:
        return found[0]
    return kinds[0], resolve_run(kinds[0], ref)  # raises, naming the first kind


@attrs.define
class RunState:
    """A run's run.json as it changes: written atomically on every save."""

    path: Path  # the run directory
    data: dict
    resumed: bool = False  # continued from an earlier invocation (open_run, resume)
    lock: int | None = attrs.field(default=None, repr=False)  # the run's .lock, while it is written

    @classmethod
    def new(cls, path: Path, spec: Any, kind: str | None = None, **fields) -> "RunState":
        """A new run.json; `kind` defaults to the runs/<kind>/ folder the run is in."""
        state = cls(path, {"kind": kind or path.parent.name, "spec": to_dict(spec),
                           "status": RunStatus.RUNNING.value, "error": "",
                           **to_dict(fields), "started_at": now(), "finished_at": None,
                           "resumed_at": []})
        state.save()
        return state

    @classmethod
    def load(cls, path: Path, kind: str) -> "RunState":
        try:
            data = json.loads((path / "run.json").read_text())
            RunStatus(data.get("status", RunStatus.RUNNING))
            data["spec"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise HaloError(f"{path} is not a {kind} run (no readable run.json)") from exc
        return cls(path, data)

    @classmethod
    def resume(cls, path: Path, kind: str) -> "RunState":
        """The run.json of a run being continued: running again, the resume noted."""
        state = cls.load(path, kind)
        state.data.update(status=RunStatus.RUNNING.value, error="", finished_at=None)
        state.data.setdefault("resumed_at", []).append(now())
        state.resumed = True
        state.save()
        return state

    @property
    def status(self) -> RunStatus:
        return RunStatus(self.data.get("status", RunStatus.RUNNING))

    @property
    def error(self) -> str:
        return self.data.get("error", "")

    def save(self) -> None:
        write_json(self.path / "run.json", self.data)

    def finish(self, status: RunStatus | str, error: str = "") -> None:
        self.data.update(status=RunStatus(status).value, error=error, finished_at=now())
        self.save()
        if self.lock is not None:
            os.close(self.lock)
            self.lock = None


def lock_run(path: Path) -> int | None:
    """An exclusive lock on the run directory `path` (its .lock, opened without following a
    link), held until the run finishes or halo exits; None when another process holds it."""
    fd = os.open(path / ".lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def same_spec_run(kind: str, spec: Any) -> Path | None:
    """The latest `kind` run tagged `spec.tag` when its saved spec is `spec` (what a rerun
    with resume_tag continues), else None."""
    latest = latest_with_tag(kind, spec.tag)
    if latest is None:
        return None
    try:
        saved = from_dict(type(spec), RunState.load(latest, kind).data["spec"])
    except (HaloError, ValueError, TypeError, KeyError):
        return None
    return latest if saved == spec else None


def open_run(kind: str, spec: Any, *, resume: str | Path | None = None, resume_tag: bool = False,
             path: Path | None = None, tag: str | None = None, **fields) -> RunState:
    """The run.json of the run every kind writes to, one way for all: `resume` (a path, run name
    or tag of `kind`) continued; else with `resume_tag`, the latest run tagged like `spec`
    continued when its spec is the same; else a new run in `path` (an empty directory) or in
    runs/<kind>/<tag or spec.tag>-<stamp>/, its run.json holding `kind`, `spec` and `fields`.
    `state.resumed` says which it was. The run stays locked while it is written (runs.lock_run):
    a run another process writes is not continued (`resume` refuses; `resume_tag` opens a new
    run)."""
    target = resolve_run(kind, resume) if resume is not None else (
        same_spec_run(kind, spec) if resume_tag else None)
    if target is not None:
        lock = lock_run(target)
        if lock is not None:
            state = RunState.resume(target, kind)
            state.lock = lock
            return state
        if resume is not None:
            raise HaloError(f"run {target.name} is being written by another halo process: wait "
                            f"for it to finish (or start a new run)")
        # resume_tag: two runs started together with one tag each write a directory of their own
    path = path or new_run_dir(kind, tag or spec.tag)
    lock = lock_run(path)
    state = RunState.new(path, spec, kind=kind, **fields)
    state.lock = lock
    return state


INTERRUPTED = "interrupted by the user"


def record_exit(exc: BaseException, finish: Callable[[RunStatus, str], object],
                interrupted: str = INTERRUPTED) -> None:
    """The one interrupt/error ladder of every run kind, called from `except BaseException`
    before re-raising: Ctrl-C -> interrupted, a HaloError -> failed with its message,
    anything else -> failed "Type: message"."""
    if isinstance(exc, KeyboardInterrupt):
        finish(RunStatus.INTERRUPTED, interrupted)
    else:
        finish(RunStatus.FAILED, str(exc) if isinstance(exc, HaloError) else f"{type(exc).__name__}: {exc}")
