"""The plugin API: everything a halo plugin may import, from this one module.

    from halo_core.plugin_api import Availability, Backend, ToolCommand, hookimpl

A plugin (halo's built-ins included) imports nothing else from halo_core: what is here is
kept stable for plugin authors; the rest of halo_core may change. docs/plugins.md describes
each name.
"""

from __future__ import annotations

from ._lazy import lazy_attributes

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


__getattr__, __dir__ = lazy_attributes(__name__, {name: (module, name) for name, module in _WHERE.items()},
                                       globals())

__all__ = sorted(_WHERE)  # (grouped and described in docs/plugins.md)
