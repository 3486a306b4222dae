"""halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp.

The public API: the records and errors, the plugin interfaces and `hookimpl`, and one library
call per CLI command (`run_bench`, `start_server`, `run_eval`, `plan_tuning`, ...; the table is
in docs/architecture.md). The calls are imported on first use (PEP 562), so `import halo_core`
stays cheap. Plugins import from `halo_core.plugin_api` instead.
"""

from __future__ import annotations

from importlib import metadata

try:
    __version__ = metadata.version("halo-llm")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+unknown"

from ._lazy import lazy_attributes
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

# public name -> (submodule, its name there), imported when first asked for
_LAZY: dict[str, tuple[str, str]] = {
    # plugins, backends: the host and the defaults
    "PluginHost": ("plugins", "PluginHost"),
    "get_host": ("plugins", "get_host"),
    "set_host": ("plugins", "set_host"),
    "defaults": ("config", "defaults"),
    # bench
    "run_bench": ("bench", "run_bench"),
    "bench_setup": ("setup", "bench_setup"),
    "list_bench_runs": ("bench", "list_bench_runs"),
    "resolve_bench_run": ("bench", "resolve_bench_run"),
    "load_bench_run": ("bench", "load_run"),
    "compare_runs": ("compare", "compare_runs"),
    "write_report": ("report", "write_report"),
    # serving benchmark (bench serve)
    "ServeBenchSpec": ("servebench", "ServeBenchSpec"),
    "run_serve_bench": ("servebench", "run_serve_bench"),
    "list_serve_runs": ("servebench", "list_serve_runs"),
    "resolve_serve_run": ("servebench", "resolve_serve_run"),
    "load_serve_run": ("servebench", "load_serve_run"),
    "compare_serve_runs": ("servebench", "compare_serve_runs"),
    "write_serve_report": ("servereport", "write_serve_report"),
    # models
    "list_models": ("models", "list_models"),
    "fetch_model": ("models", "fetch_model"),
    "local_model": ("models", "local_model"),
    "remove_model": ("models", "remove_model"),
    "fit_model": ("fit", "fit_model"),
    "synth_model": ("synth", "synth_model"),
    # serve, flush
    "ServerSpec": ("serve", "ServerSpec"),
    "start_server": ("serve", "serve"),
    "servers": ("serve", "servers"),
    "stop_servers": ("serve", "stop_servers"),
    "load_presets": ("serve", "load_presets"),
    "flush_memory": ("flush", "flush"),
    # RPC workers
    "WorkerSpec": ("rpc", "WorkerSpec"),
    "start_worker": ("rpc", "start_worker"),
    "probe_workers": ("rpc", "probe_all"),
    "rpc_workers": ("rpc", "workers"),
    "stop_workers": ("rpc", "stop_workers"),
    # quality beside speed
    "SweepSpec": ("sweep", "SweepSpec"),
    "run_sweep": ("sweep", "run_sweep"),
    # eval
    "EvalSpec": ("evals", "EvalSpec"),
    "run_eval": ("evals", "run_eval"),
    "describe_suites": ("evals", "describe_suites"),
    "list_eval_runs": ("evals", "list_eval_runs"),
    "resolve_eval_run": ("evals", "resolve_eval_run"),
    "load_eval_run": ("evals", "load_run"),
    "compare_eval_runs": ("evals", "compare"),
    # tuning
    "audit": ("tune", "audit"),
    "verify": ("tune", "verify"),
    "plan_tuning": ("tune", "plan"),
    "apply_tuning": ("tune", "apply"),
    "resume_tuning": ("tune", "resume"),
    "rollback": ("tune", "rollback"),
    "list_journals": ("tune", "journals"),
    # machine figures
    "measure_bandwidth": ("hw", "measure_bandwidth"),
    "MetricsSampler": ("metrics", "MetricsSampler"),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "__version__", "hookimpl",
    "Backend", "EvalSuite", "ModelSource", "Tuner",
    "Availability", "BackendDefaults", "BenchResult", "BenchRun", "BenchSpec", "CatalogEntry",
    "Change", "Check", "Endpoint", "EvalResult", "EvalSample", "FitReport", "GpuProcess",
    "LocalModel", "ModelListing", "PluginInfo", "ToolCommand",
    "AuditReport", "GpuFacts", "HostFacts", "JournalInfo", "MeasureSpec", "TunePlan", "TuneStep",
    "Verdict",
    "HaloError", "ModelError", "PluginError", "ToolFailed", "TuneError", "Unavailable", "UnknownName",
    *_LAZY,
]
