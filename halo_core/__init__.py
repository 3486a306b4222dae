"""halo: tune, benchmark, serve and evaluate local LLMs on llama.cpp.

The public API: the records and errors, the plugin interfaces and `hookimpl`, and one library
call per CLI command (`run_bench`, `start_server`, `run_eval`, `plan_tuning`, ...; the table is
in docs/architecture.md). The calls are imported on first use (PEP 562), so `import halo_core`
stays cheap. Plugins import from `halo_core.plugin_api` instead.
"""

from __future__ import annotations

from ._lazy import lazy_attributes
from ._version import __version__
from .errors import HaloError, ModelError, PluginError, ToolFailed, TuneError, Unavailable, UnknownName

# public name -> (submodule, its name there), imported when first asked for
_LAZY: dict[str, tuple[str, str]] = {
    # the records and the plugin interfaces (`halo --version` imports neither)
    "hookimpl": ("hookspecs", "hookimpl"),
    "Backend": ("interfaces", "Backend"),
    "EvalSuite": ("interfaces", "EvalSuite"),
    "ModelSource": ("interfaces", "ModelSource"),
    "Tuner": ("interfaces", "Tuner"),
    "AuditReport": ("records", "AuditReport"),
    "Availability": ("records", "Availability"),
    "BackendDefaults": ("records", "BackendDefaults"),
    "BenchResult": ("records", "BenchResult"),
    "BenchRun": ("records", "BenchRun"),
    "BenchSpec": ("records", "BenchSpec"),
    "CatalogEntry": ("records", "CatalogEntry"),
    "Change": ("records", "Change"),
    "Check": ("records", "Check"),
    "Endpoint": ("records", "Endpoint"),
    "EvalResult": ("records", "EvalResult"),
    "EvalSample": ("records", "EvalSample"),
    "FitReport": ("records", "FitReport"),
    "GpuFacts": ("records", "GpuFacts"),
    "GpuProcess": ("records", "GpuProcess"),
    "HostFacts": ("records", "HostFacts"),
    "JournalInfo": ("records", "JournalInfo"),
    "LocalModel": ("records", "LocalModel"),
    "MeasureSpec": ("records", "MeasureSpec"),
    "ModelListing": ("records", "ModelListing"),
    "Note": ("records", "Note"),
    "PluginInfo": ("records", "PluginInfo"),
    "ToolCommand": ("records", "ToolCommand"),
    "Skipped": ("records", "Skipped"),
    "TunePlan": ("records", "TunePlan"),
    "TuneStep": ("records", "TuneStep"),
    "Verdict": ("records", "Verdict"),
    # plugins, backends: the host and the defaults
    "PluginHost": ("plugins", "PluginHost"),
    "get_host": ("plugins", "get_host"),
    "set_host": ("plugins", "set_host"),
    "defaults": ("config", "defaults"),
    # runs of any kind
    "resolve_kind": ("runs", "resolve_kind"),
    # bench
    "run_bench": ("bench.run", "run_bench"),
    "bench_setup": ("bench.inventory", "bench_setup"),
    "list_bench_runs": ("bench.run", "list_bench_runs"),
    "resolve_bench_run": ("bench.run", "resolve_bench_run"),
    "load_bench_run": ("bench.run", "load_bench_run"),
    "compare_runs": ("bench.compare", "compare_runs"),
    "format_bench_run": ("bench.share", "format_bench_run"),
    "format_comparison": ("bench.share", "format_comparison"),
    "write_report": ("bench.report", "write_report"),
    # serving benchmark (bench serve)
    "ServeBenchSpec": ("servebench.run", "ServeBenchSpec"),
    "run_serve_bench": ("servebench.run", "run_serve_bench"),
    "list_serve_runs": ("servebench.run", "list_serve_runs"),
    "resolve_serve_run": ("servebench.run", "resolve_serve_run"),
    "load_serve_run": ("servebench.run", "load_serve_run"),
    "compare_serve_runs": ("servebench.run", "compare_serve_runs"),
    "format_serve_run": ("servebench.share", "format_serve_run"),
    "format_serve_comparison": ("servebench.share", "format_serve_comparison"),
    "write_serve_report": ("servebench.report", "write_serve_report"),
    # models
    "list_models": ("models.resolve", "list_models"),
    "fetch_model": ("models.resolve", "fetch_model"),
    "local_model": ("models.resolve", "local_model"),
    "remove_model": ("models.resolve", "remove_model"),
    "fit_model": ("llama.fit", "fit_model"),
    "synth_model": ("models.synth", "synth_model"),
    # serve, flush
    "ServerSpec": ("llama.server", "ServerSpec"),
    "start_server": ("llama.server", "start_server"),
    "servers": ("llama.process", "servers"),
    "stop_servers": ("llama.process", "stop_servers"),
    "load_presets": ("llama.server", "load_presets"),
    "flush_memory": ("llama.flush", "flush_memory"),
    # RPC workers
    "WorkerSpec": ("llama.rpc", "WorkerSpec"),
    "start_worker": ("llama.rpc", "start_worker"),
    "probe_workers": ("llama.rpc", "probe_workers"),
    "rpc_workers": ("llama.rpc", "rpc_workers"),
    "stop_workers": ("llama.rpc", "stop_workers"),
    # quality beside speed
    "SweepSpec": ("sweep.run", "SweepSpec"),
    "run_sweep": ("sweep.run", "run_sweep"),
    "resolve_sweep_run": ("sweep.run", "resolve_sweep_run"),
    "load_sweep_run": ("sweep.run", "load_sweep_run"),
    # the fastest settings, measured
    "OptimizeSpec": ("optimize.run", "OptimizeSpec"),
    "run_optimize": ("optimize.run", "run_optimize"),
    "load_optimize_run": ("optimize.run", "load_optimize_run"),
    "compare_backends": ("optimize.run", "compare_backends"),
    "write_optimize_report": ("optimize.report", "write_optimize_report"),
    "list_profiles": ("llama.profile", "list_profiles"),
    # eval
    "EvalSpec": ("evals.run", "EvalSpec"),
    "run_eval": ("evals.run", "run_eval"),
    "describe_suites": ("evals.run", "describe_suites"),
    "list_eval_runs": ("evals.run", "list_eval_runs"),
    "resolve_eval_run": ("evals.run", "resolve_eval_run"),
    "load_eval_run": ("evals.run", "load_eval_run"),
    "compare_eval_runs": ("evals.run", "compare_eval_runs"),
    # tuning
    "audit": ("tune.tuning", "audit"),
    "verify": ("tune.tuning", "verify"),
    "verify_report": ("tune.tuning", "verify_report"),
    "plan_tuning": ("tune.tuning", "plan_tuning"),
    "apply_tuning": ("tune.tuning", "apply_tuning"),
    "resume_tuning": ("tune.tuning", "resume_tuning"),
    "rollback": ("tune.tuning", "rollback"),
    "list_journals": ("tune.tuning", "list_journals"),
    # machine figures
    "measure_bandwidth": ("machine.bandwidth", "measure_bandwidth"),
    "device_bandwidth": ("machine.bandwidth", "device_bandwidth"),
    "save_bandwidth": ("machine.bandwidth", "save_bandwidth"),
    "MetricsSampler": ("machine.metrics", "MetricsSampler"),
}


__getattr__, __dir__ = lazy_attributes(__name__, _LAZY, globals())


__all__ = [
    "__version__", "hookimpl",
    "Backend", "EvalSuite", "ModelSource", "Tuner",
    "Availability", "BackendDefaults", "BenchResult", "BenchRun", "BenchSpec", "CatalogEntry",
    "Change", "Check", "Endpoint", "EvalResult", "EvalSample", "FitReport", "GpuProcess",
    "LocalModel", "ModelListing", "PluginInfo", "ToolCommand",
    "AuditReport", "GpuFacts", "HostFacts", "JournalInfo", "MeasureSpec", "Skipped", "TunePlan", "TuneStep",
    "Verdict",
    "HaloError", "ModelError", "PluginError", "ToolFailed", "TuneError", "Unavailable", "UnknownName",
    *_LAZY,
]
