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
    "ToolFailed": "errors",
    "TuneError": "errors",
    "Unavailable": "errors",
    "UnknownName": "errors",
    "INSTALL": "evals.kit",
    "child_main": "evals.kit",
    "dist_version": "evals.kit",
    "needs": "evals.kit",
    "read_records": "evals.kit",
    "score_in_child": "evals.kit",
    "write_records": "evals.kit",
    "hookimpl": "hookspecs",
    "GIB": "machine.hostfacts",
    "PAGE_SIZE": "machine.hostfacts",
    "THP_DEFRAG": "machine.hostfacts",
    "THP_ENABLED": "machine.hostfacts",
    "firmware_version": "machine.hostfacts",
    "host_path": "machine.hostfacts",
    "is_live": "machine.hostfacts",
    "kernel_version": "machine.hostfacts",
    "read_facts": "machine.hostfacts",
    "read_text": "machine.hostfacts",
    "selected": "machine.hostfacts",
    "sysctl_path": "machine.hostfacts",
    "which": "machine.hostfacts",
    "nvml_module": "machine.gpu",
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
    "last_line": "runner",
    "halo_home": "store",
    "human_size": "store",
    "sha256_file": "store",
    "write_json": "store",
}


__getattr__, __dir__ = lazy_attributes(__name__, {name: (module, name) for name, module in _WHERE.items()},
                                       globals())

__all__ = sorted(_WHERE)  # (grouped and described in docs/plugins.md)
