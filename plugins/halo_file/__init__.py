"""The `file` model source: a GGUF already on this machine (`file:PATH` or a plain path)."""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import LocalModel, ModelError, ModelSource, hookimpl

GGUF_MAGIC = b"GGUF"


class FileSource(ModelSource):
    name = "file"
    description = "a GGUF file on this machine (a path, or file:PATH)"

    def handles(self, ref: str) -> bool:
        return ref.endswith(".gguf") or "/" in ref or Path(ref).expanduser().exists()

    def _path(self, ref: str) -> Path:
        return Path(ref.removeprefix("file:")).expanduser()

    def local(self, ref: str) -> LocalModel | None:
        path = self._path(ref)
        if not path.is_file():
            return None
        with open(path, "rb") as fh:
            if fh.read(4) != GGUF_MAGIC:
                raise ModelError(f"{path} is not a GGUF file (no GGUF magic bytes)")
        return LocalModel(path.name.removesuffix(".gguf"), ref, path.resolve(),
                          path.stat().st_size, "", self.name)

    def fetch(self, ref, progress=None) -> LocalModel:
        model = self.local(ref)
        if model is None:
            raise ModelError(f"model file not found: {self._path(ref)}")
        return model


@hookimpl
def register_model_sources(register):
    register(FileSource())
