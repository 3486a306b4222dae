"""Reading a host's files through a sysroot (default "/"): the ground floor of the facts modules.

hostfacts (machine facts) and gpu (GPU facts) both read through these; a folder holding a copy
of /proc, /sys and /etc is a complete stand-in for a machine.
"""

from __future__ import annotations

from pathlib import Path


def is_live(root: Path) -> bool:
    """Whether the sysroot is the running system."""
    return Path(root).resolve() == Path("/")


def host_path(root: Path, path: str) -> Path:
    """Where the host path `path` ("/etc/default/grub") lies under the sysroot."""
    return Path(root) / path.lstrip("/")


def read_text(root: Path, path: str) -> str | None:
    """A host file's text, or None when it is absent or unreadable."""
    try:
        return host_path(root, path).read_text(errors="replace")
    except OSError:
        return None


def read_int(root: Path, path: str) -> int | None:
    """The number a host file starts with (sysfs, procfs), or None when absent or not a number."""
    try:
        return int((read_text(root, path) or "").split()[0])
    except (ValueError, IndexError):
        return None


def read_scaled(root: Path, path: str, factor: float) -> float | None:
    """`read_int` times `factor` (millidegrees -> degrees, microwatts -> watts), 3 decimals."""
    value = read_int(root, path)
    return None if value is None else round(value * factor, 3)
