"""halo-taskset: a third-party halo backend, published as its own package.

It runs the same llama.cpp binaries as halo's `native` backend, but pinned to the CPU cores in
$HALO_TASKSET_CPUS (default "0") with util-linux `taskset`: useful to measure how llama.cpp
scales with cores, or to keep a benchmark off the cores another job is using.

    pip install ./examples/halo-taskset
    halo plugins                      # lists "taskset"
    halo bench run --backend taskset  # llama-bench under taskset -c 0
"""

from __future__ import annotations

import os
import shutil

from halo_core.plugin_api import (
    Availability, Backend, PluginHost, ToolCommand, Unavailable, hookimpl,
)


def _cpus() -> str:
    return os.environ.get("HALO_TASKSET_CPUS", "0")


class TasksetBackend(Backend):
    name = "taskset"
    description = "native llama.cpp pinned to $HALO_TASKSET_CPUS with taskset"

    def __init__(self, host: PluginHost, native: Backend | None = None):
        self.host = host  # the host halo registered us in: `native` is looked up when needed
        self.native = native  # a configured `native`, once options were given

    def _native(self) -> Backend:
        return self.native or self.host.backend("native")

    @property
    def option_help(self):  # native's options (llama_cpp_dir) are ours too
        return self._native().option_help

    def configure(self, options) -> "TasksetBackend":
        return TasksetBackend(self.host, self._native().configure(options))

    def availability(self) -> Availability:
        if shutil.which("taskset") is None:
            return Availability(False, "taskset not found", "install util-linux")
        return self._native().availability()

    def command(self, tool: str) -> ToolCommand:
        taskset = shutil.which("taskset")
        if taskset is None:
            raise Unavailable("taskset not found; install util-linux")
        inner = self._native().command(tool)
        # flags belong to the inner binary, so its cache key is ours too
        return ToolCommand([taskset, "-c", _cpus(), *inner.argv], env=inner.env,
                           cache_key=inner.cache_key)

    def defaults(self):
        return self._native().defaults()

    def provenance(self) -> dict[str, str]:
        return {"taskset_cpus": _cpus(), **self._native().provenance()}


@hookimpl
def register_backends(register, host):
    register(TasksetBackend(host))
