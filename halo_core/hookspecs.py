"""pluggy hook specifications for the project "halo"; one registration hook per interface.

Every hook is also given `host`, the `halo_core.plugins.PluginHost` it runs in (not imported
here: the host imports these specs): a plugin that needs another
plugin's objects keeps the host and looks them up later (not while registering). pluggy
passes an implementation only the arguments it names, so `register_backends(register)` and
`register_backends(register, host)` are both valid.
"""

from __future__ import annotations

from typing import Callable

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
