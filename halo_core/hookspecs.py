"""pluggy hook specifications for the project "halo"; one registration hook per interface.

Every hook is also given `host`, the `halo_core.plugins.PluginHost` it runs in (not imported
here: the host imports these specs): a plugin that needs another
plugin's objects keeps the host and looks them up later (not while registering). pluggy
passes an implementation only the arguments it names, so `register_backends(register)` and
`register_backends(register, host)` are both valid.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Mapping

import pluggy

hookspec = pluggy.HookspecMarker("halo")
hookimpl = pluggy.HookimplMarker("halo")


@hookspec
def register_backends(register: Callable, host) -> None:
    """Call register(backend) for each Backend instance this plugin provides."""


@hookspec
def register_model_sources(register: Callable, host) -> None:
    """Call register(source) for each ModelSource instance this plugin provides."""


@hookspec
def register_tuners(register: Callable, host) -> None:
    """Call register(tuner) for each Tuner instance this plugin provides."""


@hookspec
def register_eval_suites(register: Callable, host) -> None:
    """Call register(suite) for each EvalSuite instance this plugin provides."""


@hookspec
def register_commands(cli, host) -> None:
    """Add click commands or groups to the `halo` CLI group `cli`."""


@hookspec
def host_facts(root: Path, ask_tools: bool, host) -> Mapping[str, str] | None:
    """What this plugin knows about the machine under `root` (a sysroot, "/" for this one):
    {label: one line}, shown by `halo audit` and recorded in every run's system.json. Read
    files through `root`; ask a program only when `ask_tools` is true and `root` is live."""


@hookspec
def option_shorthands() -> Mapping[str, str]:
    """Command-line shorthands for your backends' options: {flag: option key}, e.g.
    {"llama-cpp-dir": "llama_cpp_dir"} makes `--llama-cpp-dir DIR` mean
    `--backend-opt llama_cpp_dir=DIR` wherever halo takes backend options."""
