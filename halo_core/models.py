"""Model references -> local GGUF files, through whichever ModelSource answers for them."""

from __future__ import annotations

from .errors import ModelError
from .interfaces import ModelSource, Progress
from .plugins import PluginHost, get_host
from .records import LocalModel


def find_source(ref: str, host: PluginHost | None = None) -> tuple[ModelSource, str]:
    """(source, full reference) for `ref`: "SOURCE:rest", an alias, or what a source handles."""
    sources: dict[str, ModelSource] = (host or get_host()).model_sources()
    prefix = ref.split(":", 1)[0] if ":" in ref else None
    if prefix in sources:
        return sources[prefix], ref
    for source in sources.values():
        target = source.aliases().get(ref)
        if target is not None:
            return find_source(target, host) if target != ref else (source, target)
    for source in sources.values():
        if source.handles(ref):
            return source, ref
    aliases = sorted(a for s in sources.values() for a in s.aliases())
    raise ModelError(
        f"unknown model '{ref}': not a file, an alias ({', '.join(aliases) or 'none'}) "
        f"or SOURCE:REF (sources: {', '.join(sorted(sources)) or 'none'})")


def fetch_model(ref: str, progress: Progress | None = None,
                host: PluginHost | None = None) -> LocalModel:
    """Make the model `ref` local (downloading it when needed) and return it."""
    source, full = find_source(ref, host)
    return source.fetch(full, progress)
