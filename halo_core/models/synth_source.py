"""The `synth` model source: `synth:NAME` (or a bare NAME) is a synthetic model that
`halo models synth` wrote to $HALO_HOME/models/synth/NAME.gguf. It is the core's, since the
core writes these models: it answers with no plugin installed, and a plugin's source named
"synth" takes its place."""

from __future__ import annotations

from pathlib import Path

from ..errors import ModelError
from ..interfaces import ModelSource
from ..records import CatalogEntry, LocalModel
from .header import SYNTH_FROM_KEY, read_header, synth_dir, synth_name


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
