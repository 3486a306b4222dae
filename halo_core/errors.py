"""Errors a user can cause. Each message is one line fit to print as it is."""

from __future__ import annotations


class HaloError(Exception):
    """Base class: the CLI prints the message and exits 1, with no traceback."""


class UnknownName(HaloError):
    """A backend, model, source or suite name that no plugin registered."""

    def __init__(self, kind: str, name: str, known: list[str] | tuple[str, ...]):
        self.kind, self.name, self.known = kind, name, list(known)
        listing = ", ".join(sorted(self.known)) or "none registered"
        super().__init__(f"unknown {kind} '{name}' (known: {listing})")


class UnknownState(HaloError, ValueError):
    """A record made with a state outside its enum (a Change kind, a Check status, a run
    status): it fails where the record is made, naming the values it could have been."""


class Unavailable(HaloError):
    """A registered part that cannot run on this machine; the message says why and what to do."""


class ModelError(HaloError):
    """A model reference that cannot be resolved or fetched."""


class ToolFailed(HaloError):
    """An external tool (llama-bench, llama-server, pip) exited badly or printed garbage."""

    def __init__(self, message: str, *, returncode: int | None = None, log_tail: str = ""):
        self.returncode, self.log_tail = returncode, log_tail
        super().__init__(message)


class PluginError(HaloError):
    """A plugin registered something malformed (a duplicate or missing name)."""


class TuneError(HaloError):
    """A tuning plan that must not be applied (bad value, malformed file, wrong host), or a
    journal that cannot be applied or rolled back as asked."""
