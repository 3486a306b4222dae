"""Loads plugins from the `halo` entry-point group and collects what they register."""

from __future__ import annotations

import difflib
import os
import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Iterable, Iterator, Mapping

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


def _dist_origin(dist) -> _Origin:
    """A plugin's origin from its importlib.metadata distribution."""
    if dist is None:
        return _Origin(source="entry-point")
    name = dist.metadata["Name"]
    return _Origin(name, dist.version, "builtin" if name == SELF_DISTRIBUTION else "entry-point")


class PluginHost:
    """A pluggy manager for project "halo" plus the registry of what its plugins register.

    `PluginHost()` is empty; `PluginHost.from_entry_points()` loads the installed plugins.
    Every hook is called through pluggy, one plugin at a time (`_each`), so that what a plugin's
    hook raises is that plugin's error and the others still run.
    """

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager("halo")
        self.pm.add_hookspecs(hookspecs)
        self.errors: dict[str, str] = {}
        self._failed: dict[str, _Origin] = {}  # plugins that never registered, and why not
        self._dists: dict[str, _Origin] = {}  # where each entry-point plugin came from
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
        """Load each `halo` entry point on its own and register it with pluggy; a failing
        plugin is recorded, not fatal. $HALO_LOAD_PLUGINS / $HALO_DISABLE_PLUGINS block the
        others. The installed distributions are scanned once (pluggy's own
        load_setuptools_entrypoints scans them all again, a cost every command pays)."""
        allow, deny = _names(os.environ.get(ALLOW_ENV)), _names(os.environ.get(DENY_ENV)) or set()
        first: dict[str, object] = {}
        origins: dict[int, _Origin] = {}  # per distribution: reading its METADATA is the cost
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = origins.get(id(ep.dist))
            if origin is None:
                origin = origins[id(ep.dist)] = _dist_origin(ep.dist)
            dist = origin.distribution
            if ep.name in first:
                if first[ep.name] != dist:  # the same distribution can be seen twice on sys.path
                    print(f"halo: warning: plugin '{ep.name}' of {dist} not loaded: the name "
                          f"is taken by {first[ep.name]}", file=sys.stderr)
                continue
            first[ep.name] = dist
            if ((allow is not None and ep.name not in allow) or ep.name in deny) \
                    and not self.pm.is_blocked(ep.name):
                self.pm.set_blocked(ep.name)
            if self.pm.is_blocked(ep.name) or self.pm.has_plugin(ep.name):
                continue
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must not take the CLI down
                self._fail(ep.name, origin, f"import failed: {type(exc).__name__}: {exc}")
                continue
            try:
                self.pm.register(plugin, name=ep.name)
            except Exception as exc:
                self._fail(ep.name, origin, f"registration failed: {exc}")
                continue
            self._dists[ep.name] = origin
            self._check_hooks(ep.name)
        self.pm.check_pending()

    def register(self, plugin: object, name: str) -> None:
        """Register a plugin module or object; its hooks are validated against the specs."""
        try:
            hash(plugin)
        except TypeError:  # pluggy keeps plugins in sets: an unhashable namespace goes in as a module
            module = types.ModuleType(name)
            module.__dict__.update(vars(plugin))
            plugin = module
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:
            self._fail(name, _Origin(), f"registration failed: {exc}")
            return
        self._check_hooks(name)

    def _check_hooks(self, name: str) -> None:
        """Reject a registered plugin that implements a hook no spec defines (a typo)."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:  # blocked
            return
        unknown = [hc.name for hc in self.pm.get_hookcallers(plugin) or [] if hc.spec is None]
        if unknown:
            origin = self._origin(name)
            self.pm.unregister(plugin)
            hint = difflib.get_close_matches(unknown[0], {n for n in vars(hookspecs) if not n.startswith("_")}, 1)
            extra = f" (did you mean {hint[0]}?)" if hint else ""
            self._fail(name, origin, f"unknown hook '{unknown[0]}'{extra}")
            return
        self._registry = None

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self._failed.pop(name, None)
        self._dists.pop(name, None)
        self.errors.pop(name, None)
        self._registry = None

    def _fail(self, name: str, origin: _Origin, message: str) -> None:
        self._failed[name] = origin
        self.errors[name] = message
        print(f"halo: warning: plugin '{name}' not loaded: {message}", file=sys.stderr)

    def _origin(self, name: str) -> _Origin:
        if name in self._failed:
            return self._failed[name]
        return self._dists.get(name, _Origin())

    # -- calling hooks -------------------------------------------------------------------

    def _impls(self, hook_name: str) -> list:
        """The implementations of `hook_name` that do the work, in registration order (the
        wrappers, `wrapper=True`, wrap each of them)."""
        return [i for i in getattr(self.pm.hook, hook_name).get_hookimpls()
                if not (i.wrapper or i.hookwrapper)]

    def _call_one(self, hook_name: str, impl, **kwargs) -> list | None:
        """Call `hook_name` through pluggy for one plugin: its implementation and every
        wrapper. What it raises is that plugin's error (printed once), never a crash of the
        caller; None then."""
        others = [i.plugin for i in self._impls(hook_name) if i.plugin is not impl.plugin]
        try:
            return self.pm.subset_hook_caller(hook_name, others)(**kwargs)
        except Exception as exc:  # keep going: one plugin's bug is its own error
            self._hook_failed(impl.plugin_name, f"{hook_name} failed: {exc}")
            return None

    def _each(self, hook_name: str, **kwargs) -> Iterator[tuple[str, list]]:
        """(plugin name, results) of `hook_name` called for each plugin in turn (_call_one)."""
        for impl in self._impls(hook_name):
            results = self._call_one(hook_name, impl, **kwargs)
            if results is not None:
                yield impl.plugin_name, results

    def _hook_failed(self, name: str, message: str) -> None:
        if self.errors.get(name) != message:
            self.errors[name] = message
            print(f"halo: warning: plugin '{name}': {message}", file=sys.stderr)

    def host_facts(self, root: Path, ask_tools: bool = True) -> dict[str, dict[str, str]]:
        """What each plugin knows about the machine under `root`: {plugin: {label: line}}."""
        facts: dict[str, dict[str, str]] = {}
        for name, results in self._each("host_facts", root=Path(root), ask_tools=ask_tools, host=self):
            lines = {}
            for result in results:
                if not isinstance(result, Mapping):
                    self._hook_failed(name, f"host_facts failed: returned {result!r}, not a mapping")
                    continue
                lines.update({str(k): str(v) for k, v in result.items()})
            if lines:
                facts[name] = lines
        return facts

    def option_shorthands(self) -> dict[str, str]:
        """{flag: backend option key} from every plugin's `option_shorthands`; a flag two
        plugins declare is the second one's error."""
        flags: dict[str, str] = {}
        owners: dict[str, str] = {}
        for name, results in self._each("option_shorthands"):
            for result in results:
                for flag, key in dict(result).items():
                    if flag in flags and flags[flag] != key:
                        self._hook_failed(name, f"option_shorthands failed: --{flag} is "
                                                f"taken by '{owners[flag]}'")
                        continue
                    flags[flag], owners[flag] = key, name
        return flags

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
                for impl in self._impls(hook_name):
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

                    self._call_one(hook_name, impl, register=register, host=self)
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
        for impl in self._impls("register_commands"):
            before = dict(cli.commands)
            self._call_one("register_commands", impl, cli=cli, host=self)
            taken = sorted(n for n, c in before.items() if cli.commands.get(n) is not c)
            if taken:  # a plugin adds commands; it does not replace one
                cli.commands.update({n: before[n] for n in taken})
                self._hook_failed(impl.plugin_name, f"register_commands failed: command '{taken[0]}' is taken")

    # -- listing -------------------------------------------------------------------------

    def info(self) -> list[PluginInfo]:
        """One record per plugin, loaded or failed, for `halo plugins`."""
        self._build()
        infos = []
        loaded = {name for name, plugin in self.pm.list_name_plugin() if plugin is not None}
        for name in sorted(loaded | set(self.errors)):
            origin = self._origin(name)
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
