"""The plugin API: everything a halo plugin may import, from this one module.

    from halo_core.plugin_api import Availability, Backend, ToolCommand, hookimpl

A plugin (halo's built-ins included) imports nothing else from halo_core: what is here is
kept stable for plugin authors; the rest of halo_core may change. docs/plugins.md describes
each name.
"""

from __future__ import annotations

from importlib import import_module

# public name -> the halo_core module it comes from; imported when a plugin first asks
_WHERE: dict[str, str] = {
    "__version__": "",
    "ChatReply": "chat",
    "ChatRequest": "chat",
    "EvalContext": "chat",
    "HaloError": "errors",
    "ModelError": "errors",
    "PluginError": "errors",
    "ToolFailed": "errors",
    "TuneError": "errors",
    "Unavailable": "errors",
    "UnknownName": "errors",
    "INSTALL": "evalkit",
    "child_main": "evalkit",
    "dist_version": "evalkit",
    "needs": "evalkit",
    "read_records": "evalkit",
    "score_in_child": "evalkit",
    "write_records": "evalkit",
    "SYNTH_FROM_KEY": "gguf",
    "read_header": "gguf",
    "synth_dir": "gguf",
    "synth_name": "gguf",
    "hookimpl": "hookspecs",
    "GIB": "hostfacts",
    "PAGE_SIZE": "hostfacts",
    "THP_DEFRAG": "hostfacts",
    "THP_ENABLED": "hostfacts",
    "TUNED_PROFILE": "hostfacts",
    "firmware_version": "hostfacts",
    "host_path": "hostfacts",
    "is_live": "hostfacts",
    "kernel_version": "hostfacts",
    "power_limits": "hostfacts",
    "read_facts": "hostfacts",
    "read_text": "hostfacts",
    "selected": "hostfacts",
    "sysctl_path": "hostfacts",
    "which": "hostfacts",
    "Backend": "interfaces",
    "EvalSuite": "interfaces",
    "ModelSource": "interfaces",
    "Progress": "interfaces",
    "Tuner": "interfaces",
    "PluginHost": "plugins",
    "Availability": "records",
    "BackendDefaults": "records",
    "CatalogEntry": "records",
    "Change": "records",
    "Check": "records",
    "Endpoint": "records",
    "EvalResult": "records",
    "EvalSample": "records",
    "GpuFacts": "records",
    "HostFacts": "records",
    "LocalModel": "records",
    "ToolCommand": "records",
    "run_capture": "runner",
    "halo_home": "store",
    "human_size": "store",
    "sha256_file": "store",
    "write_atomic": "store",
    "write_json": "store",
}


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module = _WHERE[name]
    value = getattr(import_module(f"halo_core{'.' + module if module else ''}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


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
