"""halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp.

The public API: the plugin interfaces and records, `hookimpl` for plugin authors, and one
library call per CLI command (e.g. `run_bench`).
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("halo-llm")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

from .errors import HaloError, ModelError, PluginError, ToolFailed, TuneError, Unavailable, UnknownName
from .hookspecs import hookimpl
from .interfaces import Backend, EvalSuite, ModelSource, Tuner
from .records import (
    AuditReport,
    Availability,
    BackendDefaults,
    BenchResult,
    BenchRun,
    BenchSpec,
    CatalogEntry,
    Change,
    Check,
    Endpoint,
    EvalResult,
    EvalSample,
    FitReport,
    GpuFacts,
    GpuProcess,
    HostFacts,
    JournalInfo,
    LocalModel,
    MeasureSpec,
    ModelListing,
    PluginInfo,
    ToolCommand,
    TunePlan,
    TuneStep,
    Verdict,
)
from .plugins import PluginHost, get_host, set_host
from .models import fetch_model, list_models, local_model, remove_model
from .fit import fit_model
from .bench import run_bench

__all__ = [
    "__version__", "hookimpl",
    "Backend", "EvalSuite", "ModelSource", "Tuner",
    "Availability", "BackendDefaults", "BenchResult", "BenchRun", "BenchSpec", "CatalogEntry",
    "Change", "Check", "Endpoint", "EvalResult", "EvalSample", "FitReport", "GpuProcess",
    "LocalModel", "ModelListing", "PluginInfo", "ToolCommand",
    "AuditReport", "GpuFacts", "HostFacts", "JournalInfo", "MeasureSpec", "TunePlan", "TuneStep",
    "Verdict",
    "HaloError", "ModelError", "PluginError", "ToolFailed", "TuneError", "Unavailable", "UnknownName",
    "PluginHost", "get_host", "set_host", "fetch_model", "fit_model", "list_models",
    "local_model", "remove_model", "run_bench",
]
