"""Where halo keeps its data, and atomic writes into it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from enum import Enum
from pathlib import Path
from typing import Any, Iterator, Mapping, TypeVar

import attrs


def halo_home() -> Path:
    """$HALO_HOME, else the XDG data dir (~/.local/share/halo)."""
    if os.environ.get("HALO_HOME"):
        return Path(os.environ["HALO_HOME"]).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "halo"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def fsync_dir(folder: Path) -> None:
    """Flush a folder's entries (a rename or a new file in it) to disk."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def replacing(path: Path, *, mode: int | None = None,
              owner: tuple[int, int] | None = None) -> Iterator[Path]:
    """A temporary file beside `path` to write; it replaces `path` when the block ends well and
    is deleted when it does not, so readers see the old file or the new one, never a mix.

    `mode` (permission bits) defaults to the usual 0666 & ~umask; `owner` is (uid, gid).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode if mode is not None else 0o666 & ~_umask())  # mkstemp makes 0600
        if owner is not None and (os.fstat(fd).st_uid, os.fstat(fd).st_gid) != owner:
            os.fchown(fd, *owner)
        os.close(fd)
        yield Path(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the rename itself survives a power cut
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: str | bytes, *, mode: int | None = None,
                 owner: tuple[int, int] | None = None) -> None:
    """Write a whole file so readers see the old content or the new one, never a mix.

    `mode` (permission bits) defaults to the usual 0666 & ~umask; `owner` is (uid, gid).
    """
    with replacing(path, mode=mode, owner=owner) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


SECRET = "secret"


def secret():
    """An attrs field that holds a secret (an API key): left out of every record halo writes
    (to_dict, to_json: run.json, pid files, --json), of repr, and of equality (a rerun that
    gives the key again is the same spec)."""
    return attrs.field(default=None, repr=False, eq=False, metadata={SECRET: True})


def to_dict(value: Any) -> Any:
    """Records (attrs), paths and enums as plain JSON data: what to_json writes, as objects."""
    if attrs.has(type(value)):  # a field marked secret (an API key) is never written
        return attrs.asdict(value, filter=lambda a, _v: not a.metadata.get(SECRET),
                            value_serializer=lambda _i, _a, v: to_dict(v))
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [to_dict(v) for v in value]
    if isinstance(value, dict):
        return {k: to_dict(v) for k, v in value.items()}
    return value


R = TypeVar("R")


def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
    """The record `cls` from JSON data, ignoring keys it does not know (files written by
    another halo version); a missing or bad field raises TypeError / ValueError."""
    names = {a.name for a in attrs.fields(cls)}
    return cls(**{k: v for k, v in data.items() if k in names})


def to_json(value: Any) -> str:
    return json.dumps(to_dict(value), indent=2, sort_keys=False) + "\n"


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, to_json(value))


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to disk; a crash loses at most the line being written.
    A line a crash tore is cut off first, so the new one is not glued to it (the writer cuts;
    readers only skip it)."""
    with open(path, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end:
            fh.seek(end - 1)
            if fh.read(1) != b"\n":
                fh.seek(0)
                fh.truncate(fh.read().rfind(b"\n") + 1)
        fh.write((line.rstrip("\n") + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


def human_size(n: int) -> str:
    """Bytes for people: "188.7 MB", "21.03 GB" (decimal units, as disks and the Hub count)."""
    return f"{n / 1e9:.2f} GB" if abs(n) >= 1e9 else f"{n / 1e6:.1f} MB"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def safe_name(text: str) -> str:
    """A string usable as one path component."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "run"
