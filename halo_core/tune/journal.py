"""Applies Change records as a transaction that can always be undone, even after a crash.

One directory per transaction, $HALO_HOME/journal/<id>/:

  journal.json   header: sysroot, live or not, status, boot id, every planned change with
                 the step (tuner) it belongs to; rewritten atomically at each status change
  events.jsonl   append-only, one fsynced line per event:
                   begin   {i, backups}     the change's files are backed up; it may now be
                                            half-done, so rollback must undo it
                   done    {i, ran}         the change is complete (ran: a command ran)
                   undone  {i}              rollback restored it
                   measure / verdict        `halo tune --measure` numbers and decisions
  backup/<i>-<k> the exact bytes of each file a change touches, taken before touching it

Write-ahead order for each change: back up every file it touches (fsynced), append `begin`,
make the change, append `done`. A process killed anywhere leaves a journal in status
"applying" whose begun changes rollback undoes newest first; restoring a backup is
idempotent, so a change that was begun but never written is undone just as well.
"""

from __future__ import annotations

import difflib
import fcntl
import json
import os
import signal
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from ..errors import HaloError, ToolFailed, TuneError
from ..machine.hostfacts import host_path, selected, sysctl_path
from ..records import Change, ChangeKind, JournalInfo, JournalStatus, TunePlan, Verdict
from ..runner import last_line, run_capture
from ..runs import new_dir, now, stamp
from ..store import append_line, from_dict, halo_home, sha256_file, to_dict, write_atomic, write_json

# For crash tests: SIGKILL this process once N changes are done ("3"), or half-way through the
# next one, after its backup and `begin` are journaled but before it is made ("2.5").
CRASH_ENV = "HALO_TEST_CRASH_AFTER"
COMMAND_TIMEOUT = 600

OPEN = (JournalStatus.APPLYING, JournalStatus.ROLLING_BACK)
FILES = (ChangeKind.FILE, ChangeKind.LINK)  # a path on the host
KERNEL_VALUES = (ChangeKind.SYSFS, ChangeKind.SYSCTL)  # a value in a kernel file


ROOT_STATE = Path("/var/lib/halo")
STATE_ENV = "HALO_STATE_DIR"  # root's state folder instead of /var/lib/halo (it must be root's too)
ROOT_LOCK = Path("/run/lock/halo-tune.lock")


def journal_root() -> Path:
    """Where the journals are: $HALO_HOME/journal for a normal user. As root, a folder only root
    can change ($HALO_STATE_DIR, default /var/lib/halo; checked, never through a link): with
    `sudo -E` root would otherwise trust a user's $HALO_HOME, whose backups and modes it writes
    back on rollback."""
    if os.geteuid() != 0:
        return halo_home() / "journal"
    return _root_owned(Path(os.environ.get(STATE_ENV) or ROOT_STATE) / "journal")


def _root_owned(path: Path) -> Path:
    for folder in (path.parent, path):
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        except FileExistsError:
            pass
        st = os.lstat(folder)
        if (not stat.S_ISDIR(st.st_mode) or st.st_uid != 0 or st.st_mode & 0o022):
            raise TuneError(f"{folder} is not a folder only root can change (a link, or owner uid "
                            f"{st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): root keeps its tuning "
                            f"journals there; fix it or set ${STATE_ENV} to one")
    return path


def _sequence(name: str) -> int:
    """A journal's place in order: its id's leading sequence number ("000012-20261202T…"), 0
    for the wall-clock ids of older journals (which keep their order among themselves)."""
    head, sep, _rest = name.partition("-")
    return int(head) if sep and head.isdigit() and len(head) == 6 else 0


def _next_sequence() -> int:
    """One more than any journal's: the order stays right when the clock jumps (called under
    the journal lock)."""
    base = journal_root()
    return 1 + max((_sequence(p.name) for p in base.iterdir()), default=0) if base.is_dir() else 1


@contextmanager
def locked() -> Iterator[None]:
    """One apply or rollback at a time, across processes."""
    base = journal_root()
    base.mkdir(parents=True, exist_ok=True)
    # one lock for every root on the machine (whatever its HOME); never truncating, never
    # through a link
    lock = ROOT_LOCK if os.geteuid() == 0 and ROOT_LOCK.parent.is_dir() else base / ".lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise TuneError("another halo tune or rollback is running; wait for it to finish") from None
        yield
    finally:
        os.close(fd)


def change_paths(change: Change, live: bool) -> list[str]:
    """The host paths a change writes, which the journal backs up first."""
    if change.kind in FILES:
        return [change.target]
    if change.kind == ChangeKind.COMMAND:
        return list(change.writes)
    if change.kind in KERNEL_VALUES and not live:
        return [kernel_file(change)]  # in a sysroot a kernel file is an ordinary file
    return []


def kernel_file(change: Change) -> str:
    return sysctl_path(change.target) if change.kind == ChangeKind.SYSCTL else change.target


def current_value(root: Path, change: Change) -> str | None:
    """What a change's target holds now, in the terms of Change.before."""
    path = host_path(root, kernel_file(change) if change.kind in KERNEL_VALUES else change.target)
    if change.kind == ChangeKind.LINK:
        return os.readlink(path) if path.is_symlink() else None
    try:
        if change.kind == ChangeKind.FILE:  # through a symlink, as tuners read it; applying replaces the link
            return path.read_bytes().decode()
        if change.kind in KERNEL_VALUES:
            return selected(path.read_text())
    except (FileNotFoundError, NotADirectoryError):
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise TuneError(f"cannot read {change.target}: {exc}") from exc
    return None


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()


def _missing_dirs(path: Path) -> list[str]:
    """Parent folders of `path` that do not exist yet, outermost first."""
    missing = []
    parent = path.parent
    while not parent.exists():
        missing.append(str(parent))
        parent = parent.parent
    return list(reversed(missing))


class Journal:
    """One transaction directory (see the module docstring)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        try:
            self.header = json.loads((self.path / "journal.json").read_text())
        except (OSError, ValueError) as exc:
            raise TuneError(f"journal {self.path.name} is unreadable: {exc}") from exc
        self.changes = [from_dict(Change, c) for c in self.header["changes"]]
        self.root = Path(self.header["root"])
        self.live = bool(self.header["live"])
        self._done_here = 0

    # -- creating and finding ------------------------------------------------------------

    @classmethod
    def create(cls, plan: TunePlan, *, boot_id: str = "", measure: dict | None = None) -> "Journal":
        path = new_dir(journal_root(), f"{_next_sequence():06d}-{stamp()}")
        (path / "backup").mkdir()
        changes, steps = [], []
        for step in plan.steps:
            first = len(changes)
            changes += to_dict(list(step.changes))
            steps.append({"tuner": step.tuner, "changes": list(range(first, len(changes))),
                          "needs_reboot": step.needs_reboot})
        write_json(path / "journal.json", {
            "id": path.name, "created_at": now(), "root": str(plan.root.resolve()),
            "live": plan.live, "status": JournalStatus.APPLYING, "error": "", "boot_id": boot_id,
            "measure": measure, "pending_measure": [], "steps": steps, "changes": changes,
        })
        (path / "events.jsonl").touch()
        return cls(path)

    @classmethod
    def all(cls, root: Path | None = None) -> list["Journal"]:
        """Every journal (of one sysroot when given), newest first."""
        base = journal_root()
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.iterdir(), key=lambda p: (_sequence(p.name), p.name), reverse=True):
            if (path / "journal.json").is_file():
                journal = cls(path)
                if root is None or journal.root == Path(root).resolve():
                    found.append(journal)
        return found

    # -- events --------------------------------------------------------------------------

    def event(self, name: str, **fields) -> None:
        append_line(self.path / "events.jsonl", json.dumps({"event": name, "at": now(), **fields}))

    def events(self, name: str | None = None) -> list[dict]:
        out = []
        for line in (self.path / "events.jsonl").read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:  # a line cut short by a crash
                continue
            if name is None or record.get("event") == name:
                out.append(record)
        return out

    def update(self, **fields) -> None:
        self.header.update(fields)
        write_json(self.path / "journal.json", self.header)

    @property
    def status(self) -> JournalStatus:
        return JournalStatus(self.header["status"])

    def begun(self) -> dict[int, dict]:
        return {e["i"]: e for e in self.events("begin")}

    def undone(self) -> set[int]:
        return {e["i"] for e in self.events("undone")}

    def info(self) -> JournalInfo:
        begun, undone = self.begun(), self.undone()
        verdicts = [Verdict(v["step"], v["worse"], v["deltas"], v["detail"], v.get("rule", ""),
                            v.get("speed", {})) for v in self.events("verdict")]
        return JournalInfo(
            id=self.path.name, path=self.path, root=self.root, status=self.status,
            created_at=self.header["created_at"], changes=len(self.changes),
            applied=len(set(begun) - undone), undone=len(undone),
            pending_measure=self.header.get("pending_measure", []), error=self.header.get("error", ""),
            verdicts=verdicts,
        )

    def step_changes(self, tuner: str) -> list[int]:
        return next((s["changes"] for s in self.header["steps"] if s["tuner"] == tuner), [])

    # -- applying ------------------------------------------------------------------------

    def _backup(self, i: int, paths: list[str]) -> list[dict]:
        records = []
        for k, host in enumerate(paths):
            path = host_path(self.root, host)
            record: dict = {"path": host, "dirs": _missing_dirs(path)}
            if path.is_symlink():
                record["link"] = os.readlink(path)
            elif path.is_file():
                name = f"{i}-{k}"
                write_atomic(self.path / "backup" / name, path.read_bytes())
                st = path.stat()
                record.update(file=name, mode=st.st_mode & 0o7777, owner=[st.st_uid, st.st_gid])
            elif path.exists():
                raise TuneError(f"{host} is not a file; halo changes files only")
            else:
                record["absent"] = True
            records.append(record)
        return records

    def apply(self, i: int) -> None:
        """Make change i, journaled write-ahead. A failing command raises ToolFailed."""
        change = self.changes[i]
        if change.kind in FILES and current_value(self.root, change) != change.before:
            raise TuneError(f"{change.target} changed since the plan was made; run halo tune again")
        before = current_value(self.root, change) if change.kind in KERNEL_VALUES else None
        self.event("begin", i=i, backups=self._backup(i, change_paths(change, self.live)),
                   value=before)
        self._crash_point(self._done_here + 0.5)
        ran = self._do(change)
        self.event("done", i=i, ran=ran, wrote=self._state(change_paths(change, self.live)))
        self._done_here += 1
        self._crash_point(self._done_here)

    def _crash_point(self, where: float) -> None:
        crash_after = os.environ.get(CRASH_ENV)
        if crash_after and float(crash_after) == where:
            os.kill(os.getpid(), signal.SIGKILL)

    def _do(self, change: Change) -> bool:
        path = host_path(self.root, change.target)
        if change.kind == ChangeKind.FILE:
            if change.after is None:
                _remove(path)
            else:
                st = path.stat() if path.is_file() else None
                mode = st.st_mode & 0o7777 if st else (change.mode if change.mode is not None else 0o644)
                write_atomic(path, change.after.encode(), mode=mode,
                             owner=(st.st_uid, st.st_gid) if st else None)
        elif change.kind == ChangeKind.LINK:
            _remove(path)
            if change.after is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(change.after, path)
        elif change.kind in KERNEL_VALUES:
            self._write_kernel_value(change, change.after or "")
        elif change.kind == ChangeKind.COMMAND:
            if not self.live or not change.argv:
                return False
            _run(change.argv)
            return True
        return False

    def _write_kernel_value(self, change: Change, value: str) -> None:
        path = host_path(self.root, kernel_file(change))
        if self.live:
            with open(path, "w") as fh:  # sysfs: one write of the bare value
                fh.write(value)
        else:
            st = path.stat() if path.exists() else None
            write_atomic(path, (value + "\n").encode(), mode=st.st_mode & 0o7777 if st else 0o644)

    def _state(self, paths: list[str]) -> dict[str, str | None]:
        """What each host path holds now: "sha256:…" of a file, "link:…" of a link, None: absent."""
        out = {}
        for host in paths:
            path = host_path(self.root, host)
            if path.is_symlink():
                out[host] = f"link:{os.readlink(path)}"
            elif path.is_file():
                out[host] = f"sha256:{sha256_file(path)}"
            else:
                out[host] = None
        return out

    def _edited(self, i: int, change: Change, wrote: dict) -> list[str]:
        """One line (and a diff, where halo knows what it wrote) per file edited since halo
        wrote it: rollback would throw that edit away."""
        lines = []
        for host, now in self._state(list(wrote)).items():
            if now == wrote[host]:
                continue
            line = f"{host} changed since halo wrote it (journal {self.path.name}, change {i})"
            if change.kind == ChangeKind.FILE and change.after is not None and now and now.startswith("sha256:"):
                current = host_path(self.root, host).read_bytes().decode(errors="replace")
                diff = "".join(difflib.unified_diff(change.after.splitlines(True), current.splitlines(True),
                                                    "what halo wrote", "what is there now"))
                line += ":\n" + diff.rstrip("\n")
            lines.append(line)
        return lines

    def undo(self, indexes: list[int] | None = None, *, force: bool = False) -> list[str]:
        """Undo begun changes (all, or those listed), newest first; returns error lines. A file
        edited since halo wrote it is left as it is (an error line with the diff), unless
        `force`. Files a `regenerate` command wrote are made again from the restored sources
        (live system), after everything else."""
        begun, undone = self.begun(), self.undone()
        done = {e["i"]: e for e in self.events("done")}
        errors, regenerate = [], []
        for i in sorted(set(begun) - undone, reverse=True):
            if indexes is not None and i not in indexes:
                continue
            change = self.changes[i]
            regenerated = change.kind == ChangeKind.COMMAND and change.regenerate and self.live
            edited = [] if force or regenerated else self._edited(i, change, done.get(i, {}).get("wrote") or {})
            if edited:
                errors += [f"{line}; `halo rollback --force` restores halo's backup over it" for line in edited]
                continue
            try:
                if change.kind == ChangeKind.COMMAND and self.live and change.undo and (
                        done.get(i, {}).get("ran", True)):
                    _run(change.undo)
                if change.kind in KERNEL_VALUES and self.live:
                    if begun[i].get("value") is not None:
                        self._write_kernel_value(change, begun[i]["value"])
                if regenerated:
                    regenerate.append(i)
                    continue
                for record in reversed(begun[i]["backups"]):
                    self._restore(record)
            except (HaloError, OSError) as exc:
                errors.append(f"{change.target}: {exc}")
                continue
            self.event("undone", i=i)
        for i in sorted(regenerate):  # the sources are back: make the generated files from them
            try:
                _run(self.changes[i].argv)
            except (HaloError, OSError) as exc:
                errors.append(f"{self.changes[i].target}: {exc}")
                continue
            self.event("undone", i=i, regenerated=True)
        return errors

    def _restore(self, record: dict) -> None:
        path = host_path(self.root, record["path"])
        if "link" in record:
            _remove(path)
            os.symlink(record["link"], path)
        elif record.get("absent"):
            _remove(path)
            for folder in reversed(record.get("dirs", [])):
                try:
                    os.rmdir(folder)
                except OSError:  # not empty: something else lives there now
                    break
        else:
            data = (self.path / "backup" / record["file"]).read_bytes()
            if path.is_symlink():
                path.unlink()
            write_atomic(path, data, mode=record["mode"], owner=tuple(record["owner"]))


def _run(argv) -> None:
    done = run_capture(list(argv), timeout=COMMAND_TIMEOUT)
    if done.returncode != 0:
        raise ToolFailed(f"{' '.join(argv)} exited with code {done.returncode}: {last_line(done, '')}".rstrip(": "),
                         returncode=done.returncode)
