"""pluggy hook specifications for the project "halo"; one registration hook per interface."""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("halo")
hookimpl = pluggy.HookimplMarker("halo")


@hookspec
def register_backends(register: Callable) -> None:
    """Call register(backend) for each Backend instance this plugin provides."""


@hookspec
def register_model_sources(register: Callable) -> None:
    """Call register(source) for each ModelSource instance this plugin provides."""


@hookspec
def register_tuners(register: Callable) -> None:
    """Call register(tuner) for each Tuner instance this plugin provides."""


@hookspec
def register_eval_suites(register: Callable) -> None:
    """Call register(suite) for each EvalSuite instance this plugin provides."""


@hookspec
def register_commands(cli) -> None:
    """Add click commands or groups to the `halo` CLI group `cli`."""
