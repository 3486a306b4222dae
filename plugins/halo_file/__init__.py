"""Model sources for GGUFs already on this machine: `file` (`file:PATH` or a plain path) and
`synth` (`synth:NAME`, the synthetic models `halo models synth` writes to
$HALO_HOME/models/synth/NAME.gguf)."""

from __future__ import annotations

from pathlib import Path

from halo_core.plugin_api import (
    SYNTH_FROM_KEY, CatalogEntry, LocalModel, ModelError, ModelSource, hookimpl, read_header,
    synth_dir, synth_name,
)

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


class SynthSource(ModelSource):
    name = "synth"
    description = "synthetic models (real shapes, random weights) from halo models synth"
    alias_priority = 200  # a catalog model of the same name wins

    def _path(self, ref: str) -> Path:
        return synth_dir() / f"{synth_name(ref.removeprefix('synth:'))}.gguf"

    def _names(self) -> list[str]:
        """The models in the synth folder (a file halo could not have named is not one)."""
        folder = synth_dir()
        names = []
        for path in sorted(folder.glob("*.gguf")) if folder.is_dir() else ():
            try:
                names.append(synth_name(path.stem))
            except ModelError:
                continue
        return names

    def aliases(self) -> dict[str, str]:
        return {name: f"synth:{name}" for name in self._names()}

    def catalog(self) -> list[CatalogEntry]:
        entries = []
        for name in self._names():
            path = self._path(name)
            try:
                origin = str(read_header(path).metadata.get(SYNTH_FROM_KEY, ""))
            except ModelError as exc:
                origin = str(exc)
            entries.append(CatalogEntry(name, f"synth:{name}", self.name, ("synthetic",),
                                        round(path.stat().st_size / 1e9, 2),
                                        f"random weights, {origin}"))
        return entries

    def local(self, ref: str) -> LocalModel | None:
        path = self._path(ref)
        if not path.is_file():
            return None
        return LocalModel(path.stem, f"synth:{path.stem}", path, path.stat().st_size, "",
                          self.name, synthetic=True)

    def fetch(self, ref, progress=None) -> LocalModel:
        model = self.local(ref)
        if model is None:
            raise ModelError(f"no synthetic model {ref.removeprefix('synth:')} in {synth_dir()}: "
                             "make it with halo models synth")
        return model

    def remove(self, ref: str) -> list[Path]:
        model = self.local(ref)
        if model is None:
            raise ModelError(f"{ref} does not exist")
        model.path.unlink()
        return [model.path]


@hookimpl
def register_model_sources(register):
    register(FileSource())
    register(SynthSource())
