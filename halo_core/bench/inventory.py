"""`halo bench setup`: which backends are ready to bench, what is missing and how to create
it, the llama.cpp build each one runs, and which catalog models are downloaded."""

from __future__ import annotations

import re

import attrs

from ..errors import HaloError
from ..llama.flags import remembered
from ..models.resolve import list_models
from ..plugins import PluginHost, get_host
from ..records import ModelListing
from ..runner import last_line, run_capture

_VERSION = re.compile(r"^version:\s*(.+)$", re.MULTILINE)


@attrs.frozen
class BackendSetup:
    name: str
    need: str  # "required" | "optional" | ""
    available: bool
    reason: str
    hint: str
    llama_cpp: str  # `llama-server --version` inside the backend; "" when not available


@attrs.frozen
class SetupReport:
    backends: tuple[BackendSetup, ...] = attrs.field(converter=tuple)
    models: tuple[ModelListing, ...] = attrs.field(converter=tuple)

    @property
    def ready(self) -> bool:
        return all(b.available for b in self.backends if b.need == "required")


def llama_cpp_version(backend) -> str:
    """What `llama-server --version` says on `backend`: "b11434 (abc123)" style, or why not;
    asked once per binary (its cache_key: a toolbox's container is not started again for it)."""
    try:
        cmd = backend.command("llama-server")
    except HaloError as exc:
        return f"unknown ({exc})"

    def ask() -> str:
        try:
            done = run_capture([*cmd.argv, "--version"], env=cmd.env, timeout=120)
        except HaloError as exc:
            return f"unknown ({exc})"
        match = _VERSION.search(done.stdout + "\n" + done.stderr)
        if match:
            return match.group(1).strip()
        last = last_line(done, "")
        return f"unknown (exit {done.returncode}{': ' + last if last else ''})"

    key = f"version|{cmd.cache_key}" if cmd.cache_key else None
    return remembered(key, ask, keep=lambda version: not version.startswith("unknown ("))


def bench_setup(host: PluginHost | None = None) -> SetupReport:
    host = host or get_host()
    rows = []
    for name, backend in sorted(host.backends().items()):
        availability = backend.availability()
        rows.append(BackendSetup(name, backend.need, availability.available, availability.reason,
                                 availability.hint,
                                 llama_cpp_version(backend) if availability.available else ""))
    return SetupReport(rows, [m for m in list_models(host=host) if m.shadowed_by is None])
