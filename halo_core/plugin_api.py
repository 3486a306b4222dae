"""The plugin API: everything a halo plugin may import, from this one module.

    from halo_core.plugin_api import Availability, Backend, ToolCommand, hookimpl

A plugin (halo's built-ins included) imports nothing else from halo_core: what is here is
kept stable for plugin authors; the rest of halo_core may change. docs/plugins.md describes
each name.
"""

from __future__ import annotations

from . import __version__
from .chat import ChatReply, ChatRequest, EvalContext
from .errors import HaloError, ModelError, PluginError, ToolFailed, TuneError, Unavailable, UnknownName
from .evalkit import INSTALL, child_main, dist_version, needs, read_records, score_in_child, write_records
from .gguf import SYNTH_FROM_KEY, read_header, synth_dir, synth_name
from .hookspecs import hookimpl
from .hostfacts import (
    GIB,
    PAGE_SIZE,
    THP_DEFRAG,
    THP_ENABLED,
    TUNED_PROFILE,
    firmware_version,
    host_path,
    is_live,
    kernel_version,
    power_limits,
    read_facts,
    read_text,
    selected,
    sysctl_path,
    which,
)
from .interfaces import Backend, EvalSuite, ModelSource, Progress, Tuner
from .plugins import PluginHost
from .records import (
    Availability,
    BackendDefaults,
    CatalogEntry,
    Change,
    Check,
    Endpoint,
    EvalResult,
    EvalSample,
    GpuFacts,
    HostFacts,
    LocalModel,
    ToolCommand,
)
from .runner import run_capture
from .store import halo_home, human_size, sha256_file, write_atomic, write_json

__all__ = [
    # registering
    "__version__", "hookimpl", "PluginHost",
    # the four interfaces
    "Backend", "EvalSuite", "ModelSource", "Tuner", "Progress",
    # records
    "Availability", "BackendDefaults", "CatalogEntry", "Change", "Check", "Endpoint",
    "EvalResult", "EvalSample", "GpuFacts", "HostFacts", "LocalModel", "ToolCommand",
    # errors
    "HaloError", "ModelError", "PluginError", "ToolFailed", "TuneError", "Unavailable",
    "UnknownName",
    # eval suites
    "ChatReply", "ChatRequest", "EvalContext", "INSTALL", "child_main", "dist_version", "needs",
    "read_records", "score_in_child", "write_records",
    # GGUF headers, and the synthetic models `halo models synth` writes
    "read_header", "synth_dir", "synth_name", "SYNTH_FROM_KEY",
    # files and processes
    "halo_home", "human_size", "run_capture", "sha256_file", "write_atomic", "write_json",
    # host facts, read through a sysroot (tuners)
    "GIB", "PAGE_SIZE", "THP_DEFRAG", "THP_ENABLED", "TUNED_PROFILE", "firmware_version",
    "host_path", "is_live", "kernel_version", "power_limits", "read_facts", "read_text",
    "selected", "sysctl_path", "which",
]
