"""The backend and model a command uses when it names none: one place, configurable.

`$HALO_CONFIG` (default `$XDG_CONFIG_HOME/halo/config.toml`, i.e. `~/.config/halo/config.toml`)::

    [defaults]
    backend = "vulkan-radv"
    model = "qwen3.5-35b-a3b-q4"

`$HALO_BACKEND` and `$HALO_MODEL` override the file; without either, `native` and `smoke`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import attrs

from .errors import HaloError

CONFIG_ENV = "HALO_CONFIG"
BUILT_IN = {"backend": "native", "model": "smoke"}
ENV = {"backend": "HALO_BACKEND", "model": "HALO_MODEL"}


@attrs.frozen
class Defaults:
    """The default backend and model, and where each came from (an environment variable, the
    config file's path, or "built-in")."""

    backend: str
    model: str
    origin: Mapping[str, str]


def config_path() -> Path:
    """$HALO_CONFIG, else config.toml in the XDG config folder's halo/."""
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(base) / "halo" / "config.toml"


def _read(path: Path) -> dict[str, str]:
    """The [defaults] table of `path` ({} when the default file is absent); HaloError, one
    line, for a file that is not TOML or holds something halo does not know."""
    if not path.is_file():
        if os.environ.get(CONFIG_ENV):
            raise HaloError(f"{CONFIG_ENV}={path}: no such file")
        return {}
    try:  # (imported here: every `import halo_core` reads defaults' module, few read a file)
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise HaloError(f"cannot read {path}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise HaloError(f"{path} is not valid TOML: {exc}") from None
    table = data.get("defaults", {})
    if not isinstance(table, dict):
        raise HaloError(f"{path}: defaults must be a table ([defaults])")
    for key, value in table.items():
        if key not in BUILT_IN:
            raise HaloError(f"{path}: unknown key '{key}' in [defaults] (known: {', '.join(BUILT_IN)})")
        if not isinstance(value, str) or not value.strip():
            raise HaloError(f"{path}: [defaults] {key} must be a name in quotes, e.g. {key} = "
                            f"\"{BUILT_IN[key]}\"")
    return table


def defaults() -> Defaults:
    """The default backend and model: $HALO_BACKEND / $HALO_MODEL, else the config file's
    [defaults], else "native" / "smoke"."""
    path = config_path()
    configured = _read(path)
    values, origin = {}, {}
    for key, builtin in BUILT_IN.items():
        if os.environ.get(ENV[key], "").strip():
            values[key], origin[key] = os.environ[ENV[key]].strip(), ENV[key]
        elif key in configured:
            values[key], origin[key] = configured[key].strip(), str(path)
        else:
            values[key], origin[key] = builtin, "built-in"
    return Defaults(values["backend"], values["model"], origin)
