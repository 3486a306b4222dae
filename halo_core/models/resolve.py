"""Model references -> local GGUF files, through whichever ModelSource answers for them."""

from __future__ import annotations

import difflib
from pathlib import Path

import attrs

from ..errors import ModelError
from .header import is_synthetic
from .synth_source import SynthSource
from ..interfaces import ModelSource, Progress
from ..plugins import PluginHost, get_host
from ..records import LocalModel, ModelListing


def model_sources(host: PluginHost | None = None) -> dict[str, ModelSource]:
    """Every model source by name: the plugins' and the core's own `synth` (a plugin's source
    of that name wins)."""
    return {SynthSource.name: SynthSource(), **(host or get_host()).model_sources()}


def _by_alias_priority(sources: dict[str, ModelSource]) -> list[ModelSource]:
    """Sources in the order their aliases win: lowest alias_priority, then name."""
    return sorted(sources.values(), key=lambda s: (s.alias_priority, s.name))


def alias_owner(alias: str, host: PluginHost | None = None) -> ModelSource | None:
    """The source that answers for a bare name, when several claim it the documented winner."""
    for source in _by_alias_priority(model_sources(host)):
        if alias in source.aliases():
            return source
    return None


def find_source(ref: str, host: PluginHost | None = None) -> tuple[ModelSource, str]:
    """(source, full reference) for `ref`: "SOURCE:rest", an alias, or what a source handles."""
    sources: dict[str, ModelSource] = model_sources(host)
    prefix = ref.split(":", 1)[0] if ":" in ref else None
    if prefix in sources:
        return sources[prefix], ref
    owner = alias_owner(ref, host)
    if owner is not None:
        target = owner.aliases()[ref]
        return find_source(target, host) if target != ref else (owner, target)
    for source in sources.values():
        if source.handles(ref):
            return source, ref
    aliases = sorted({a for s in sources.values() for a in s.aliases()})
    known = (", ".join(aliases) if len(aliases) <= 5
             else f"{len(aliases)} known: halo models list") or "none"
    close = difflib.get_close_matches(ref, aliases, 1)
    raise ModelError(
        f"unknown model '{ref}': not a file, an alias ({known}) or SOURCE:REF "
        f"(sources: {', '.join(sorted(sources)) or 'none'})"
        + (f"; did you mean {close[0]}?" if close else ""))


def _marked(model: LocalModel | None) -> LocalModel | None:
    """The model, marked synthetic when its GGUF says so, whichever source produced it."""
    if model is None or model.synthetic or not is_synthetic(model.path):
        return model
    return attrs.evolve(model, synthetic=True)


def fetch_model(ref: str, progress: Progress | None = None,
                host: PluginHost | None = None) -> LocalModel:
    """Make the model `ref` local (downloading it when needed) and return it."""
    source, full = find_source(ref, host)
    return _marked(source.fetch(full, progress))


def local_model(ref: str, host: PluginHost | None = None) -> LocalModel | None:
    """The model `ref` if it is already on this machine; never downloads."""
    source, full = find_source(ref, host)
    return _marked(source.local(full))


def remove_model(ref: str, host: PluginHost | None = None) -> list[Path]:
    """Delete the local copy of `ref` (what its source downloaded) and return what was removed."""
    source, full = find_source(ref, host)
    return source.remove(full)


def list_models(category: str | None = None, downloaded: bool = False,
                host: PluginHost | None = None) -> list[ModelListing]:
    """Every source's catalog, optionally one category or only what is on this machine."""
    host = host or get_host()
    rows = []
    for name, source in sorted(model_sources(host).items()):
        for entry in source.catalog():
            if category and category not in entry.categories:
                continue
            owner = alias_owner(entry.name, host)
            try:
                local = source.local(entry.ref)
            except ModelError:
                local = None
            if downloaded and local is None:
                continue
            rows.append(ModelListing(
                name=entry.name, ref=entry.ref, source=name, categories=entry.categories,
                size_gb=entry.size_gb, description=entry.description,
                downloaded=local is not None, path=local.path if local else None,
                size=local.size if local else None,
                shadowed_by=owner.name if owner is not None and owner is not source else None))
    return rows
