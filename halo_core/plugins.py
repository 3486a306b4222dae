"""Loads plugins from the `halo` entry-point group and collects what they register."""

from __future__ import annotations

import difflib
import os
import sys
from importlib import metadata
from typing import Iterable, Mapping

import attrs
import pluggy

from . import hookspecs
from .errors import HaloError, PluginError, Unavailable, UnknownName
from .interfaces import INTERFACES
from .records import PluginInfo

ENTRY_POINT_GROUP = "halo"
ALLOW_ENV = "HALO_LOAD_PLUGINS"
DENY_ENV = "HALO_DISABLE_PLUGINS"
SELF_DISTRIBUTION = "halo-llm"

_HOOK_KINDS = {f"register_{kind}": kind for kind in INTERFACES}


def _names(env_value: str | None) -> set[str] | None:
    if env_value is None:
        return None
    return {n.strip() for n in env_value.split(",") if n.strip()}


@attrs.define
class _Origin:
    distribution: str | None = None
    version: str | None = None
    source: str = "registered"


class PluginHost:
    """A pluggy manager for project "halo" plus the registry of what its plugins register.

    `PluginHost()` is empty; `PluginHost.from_entry_points()` loads the installed plugins.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("halo")
        self.pm.add_hookspecs(hookspecs)
        self.errors: dict[str, str] = {}
        self._origins: dict[str, _Origin] = {}
        self._registry: dict[str, dict[str, object]] | None = None
        self._owners: dict[tuple[str, str], str] = {}
        self._building = False

    @classmethod
    def from_entry_points(cls) -> "PluginHost":
        host = cls()
        host.load_entry_points()
        return host

    # -- loading -------------------------------------------------------------------------

    def load_entry_points(self) -> None:
        """Import each `halo` entry point on its own; a failing plugin is recorded, not fatal."""
        allow, deny = _names(os.environ.get(ALLOW_ENV)), _names(os.environ.get(DENY_ENV)) or set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            if (allow is not None and ep.name not in allow) or ep.name in deny:
                continue
            dist = ep.dist.metadata["Name"] if ep.dist is not None else None
            origin = _Origin(dist, ep.dist.version if ep.dist is not None else None,
                             "builtin" if dist == SELF_DISTRIBUTION else "entry-point")
            if ep.name in self._origins:
                first = self._origins[ep.name].distribution
                if first != dist:  # the same distribution can be seen twice on sys.path
                    print(f"halo: warning: plugin '{ep.name}' of {dist} not loaded: the name "
                          f"is taken by {first}", file=sys.stderr)
                continue
            try:
                module = ep.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                self._fail(ep.name, origin, f"import failed: {type(exc).__name__}: {exc}")
                continue
            self.register(module, ep.name, origin=origin)
        self.pm.check_pending()

    def register(self, plugin: object, name: str, *, origin: _Origin | None = None) -> None:
        """Register a plugin module or object; its hooks are validated against the specs."""
        self._origins[name] = origin or _Origin()
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, self._origins[name], f"registration failed: {exc}")
            return
        unknown = [hc.name for hc in self.pm.get_hookcallers(plugin) or [] if hc.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            hint = difflib.get_close_matches(unknown[0], _HOOK_KINDS.keys() | {"register_commands"}, 1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            self._fail(name, self._origins[name], f"unknown hook '{unknown[0]}'{extra}")
            return
        self._registry = None

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self._origins.pop(name, None)
        self.errors.pop(name, None)
        self._registry = None

    def _fail(self, name: str, origin: _Origin, message: str) -> None:
        self._origins[name] = origin
        self.errors[name] = message
        print(f"halo: warning: plugin '{name}' not loaded: {message}", file=sys.stderr)

    # -- registry ------------------------------------------------------------------------

    def _call(self, hook_name: str, impl, **kwargs) -> None:
        """Call one hook implementation with the arguments it names; what it raises becomes
        its plugin's error (printed once), never a crash of the caller."""
        try:
            impl.function(*(kwargs[name] for name in impl.argnames))
        except Exception as exc:  # keep going: one plugin's bug is its own error
            self._hook_failed(impl.plugin_name, f"{hook_name} failed: {exc}")

    def _hook_failed(self, name: str, message: str) -> None:
        if self.errors.get(name) != message:
            self.errors[name] = message
            print(f"halo: warning: plugin '{name}': {message}", file=sys.stderr)

    def _build(self) -> dict[str, dict[str, object]]:
        if self._registry is not None:
            return self._registry
        if self._building:
            raise PluginError("asked for a registered object while plugins are still "
                              "registering: keep the host and look it up later")
        registry: dict[str, dict[str, object]] = {kind: {} for kind in INTERFACES}
        owners: dict[tuple[str, str], str] = {}
        self._building = True
        try:
            for hook_name, kind in _HOOK_KINDS.items():
                hook = getattr(self.pm.hook, hook_name)
                for impl in hook.get_hookimpls():  # registration order
                    def register(obj, _kind=kind, _plugin=impl.plugin_name):
                        interface = INTERFACES[_kind]
                        if not isinstance(obj, interface):
                            raise PluginError(f"registered {obj!r}, which is not a {interface.__name__}")
                        if not obj.name:
                            raise PluginError(f"registered a {interface.__name__} with no name")
                        if obj.name in registry[_kind]:
                            other = owners[(_kind, obj.name)]
                            raise PluginError(f"{interface.__name__} '{obj.name}' is already registered by '{other}'")
                        registry[_kind][obj.name] = obj
                        owners[(_kind, obj.name)] = _plugin

                    self._call(hook_name, impl, register=register, host=self)
        finally:
            self._building = False
        self._registry, self._owners = registry, owners
        return registry

    def all(self, kind: str) -> dict[str, object]:
        """Every registered instance of one kind ("backends", "model_sources", ...), by name."""
        return dict(self._build()[kind])

    def get(self, kind: str, name: str):
        items = self._build()[kind]
        if name not in items:
            raise UnknownName(kind.rstrip("s").replace("_", " "), name, list(items))
        return items[name]

    def backends(self):
        return self.all("backends")

    def model_sources(self):
        return self.all("model_sources")

    def backend(self, name: str):
        return self.get("backends", name)

    def configured_backends(self, names: Iterable[str], options: Mapping[str, str] | None = None) -> list:
        """The backends `names`, each configured with the `options` it declares in its
        `option_help` (`--backend-opt KEY=VALUE`); an option none of them takes is an error."""
        backends = [self.backend(name) for name in names]
        options = dict(options or {})
        for key in options:
            if not any(key in b.option_help for b in backends):
                takes = "; ".join(f"{b.name}: {', '.join(b.option_help) or 'none'}" for b in backends)
                raise HaloError(f"no selected backend takes the option '{key}' ({takes})")
        configured = []
        for backend in backends:
            mine = {k: v for k, v in options.items() if k in backend.option_help}
            configured.append(backend.configure(mine) if mine else backend)
        return configured

    def available_backends(self, names: Iterable[str], options: Mapping[str, str] | None = None) -> list:
        """configured_backends, each checked to be available (else Unavailable, one line)."""
        backends = self.configured_backends(names, options)
        for backend in backends:
            availability = backend.availability()
            if not availability.available:
                raise Unavailable(f"backend '{backend.name}' is unavailable: {availability.reason}")
        return backends

    def add_commands(self, cli) -> None:
        """Let each plugin add its commands to the click group `cli`; a failing one is skipped."""
        for impl in self.pm.hook.register_commands.get_hookimpls():
            before = dict(cli.commands)
            self._call("register_commands", impl, cli=cli, host=self)
            taken = sorted(n for n, c in before.items() if cli.commands.get(n) is not c)
            if taken:  # a plugin adds commands; it does not replace one
                cli.commands.update({n: before[n] for n in taken})
                self._hook_failed(impl.plugin_name, f"register_commands failed: command '{taken[0]}' is taken")

    # -- listing -------------------------------------------------------------------------

    def info(self) -> list[PluginInfo]:
        """One record per plugin, loaded or failed, for `halo plugins`."""
        self._build()
        infos = []
        names: Iterable[str] = sorted(set(self._origins) | set(self.errors))
        for name in names:
            origin = self._origins.get(name, _Origin())
            plugin = self.pm.get_plugin(name)
            hooks = sorted(hc.name for hc in self.pm.get_hookcallers(plugin) or []) if plugin else []
            registers = {}
            for (kind, item), owner in sorted(self._owners.items()):
                if owner == name:
                    registers.setdefault(kind, []).append(item)
            infos.append(PluginInfo(
                name=name, version=origin.version, source=origin.source,
                distribution=origin.distribution, hooks=hooks,
                registers={k: tuple(v) for k, v in registers.items()},
                error=self.errors.get(name),
            ))
        return infos


_host: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide host, loading installed plugins on first use."""
    global _host
    if _host is None:
        _host = PluginHost.from_entry_points()
    return _host


def set_host(host: PluginHost | None) -> None:
    """Replace the process-wide host (tests and embedding applications)."""
    global _host
    _host = host
