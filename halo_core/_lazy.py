"""Module attributes imported on first use (PEP 562): what keeps `import halo_core` and the
plugin API light."""

from __future__ import annotations

from importlib import import_module
from typing import Callable, Mapping


def lazy_attributes(module_name: str, table: Mapping[str, tuple[str, str]],
                    namespace: dict) -> tuple[Callable, Callable]:
    """(__getattr__, __dir__) for the module `module_name` whose globals are `namespace`: a name
    in `table` (name -> (halo_core submodule, "" for halo_core itself; attribute)) is imported
    when first asked for and kept, so the next lookup is a plain attribute."""

    def __getattr__(name: str):
        if name not in table:
            raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
        module, attr = table[name]
        value = getattr(import_module(f"halo_core{'.' + module if module else ''}"), attr)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(table))

    return __getattr__, __dir__
