"""`halo serve`: llama-server with the measured best flags, on any backend.

A server is started from a ServerSpec (or a preset of configs/serve-presets.ini), /health is
awaited, and a pid file in $HALO_HOME/run/ records it (process.py) so `halo serve status`,
`halo serve stop` and `halo flush` find it again.
"""

from __future__ import annotations

import configparser
import time
from importlib import resources
from pathlib import Path
from typing import Mapping

import attrs

from ..config import defaults
from ..errors import HaloError, ToolFailed
from ..models.resolve import fetch_model
from ..plugins import PluginHost, get_host
from ..records import Note, ServerInfo
from ..runner import tail_of
from ..runs import now
from ..store import halo_home, secret
from .flags import DEFAULT_CACHE_TYPE, DEFAULT_CTX, KV_TYPES, ServerParams, probe_flags, server_argv
from .profile import profile_path
from .rpc import check_workers
from .process import (
    Server, check_bind, check_passthrough, check_port_free, connect_host, pid_dir, spawn, start_ticks,
    url, write_key_file, write_pid_file,
)


@attrs.frozen
class ServerSpec:
    """What `halo serve` starts: model, backend and llama-server options in halo's terms."""

    model: str
    backend: str = attrs.field(factory=lambda: defaults().backend)
    host: str = "127.0.0.1"
    port: int = 8080
    ctx: int = DEFAULT_CTX
    parallel: int | None = None  # -np; None: the profile's (bench serve --slots measured it), else 1
    cache_type: str | None = None  # K and V; None: the profile's, else DEFAULT_CACHE_TYPE
    ngram: bool = False
    no_think: bool = False
    api_key: str | None = secret()  # given to llama-server in a 0600 key file, never recorded
    insecure: bool = False
    threads: int | None = None
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    ready_timeout: float = 600.0
    preset: str | None = None
    rpc: tuple[str, ...] = attrs.field(default=(), converter=tuple)  # RPC workers, HOST:PORT
    tensor_split: tuple[float, ...] = attrs.field(default=(), converter=tuple)
    batch: int | None = None  # -b / -ub / -fa; None: the profile's, else the backend's or llama.cpp's
    ubatch: int | None = None
    flash_attn: bool | None = None
    # the workload whose `halo optimize` profile fills the settings left None ("": no profile)
    profile: str = ""


@attrs.frozen
class Preset:
    """A named serving setup from configs/serve-presets.ini."""

    name: str
    description: str
    model: str
    ctx: int = DEFAULT_CTX
    parallel: int = 1
    ngram: bool = False
    no_think: bool = False
    backend: str | None = None
    extra: tuple[str, ...] = attrs.field(default=(), converter=tuple)


# -- presets ---------------------------------------------------------------------------------

def _parse_presets(text: str, origin: str) -> dict[str, Preset]:
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read_string(text, source=origin)
    except configparser.Error as exc:
        raise HaloError(f"{origin}: {str(exc).splitlines()[0]}") from None
    presets = {}
    for name in parser.sections():
        section = parser[name]
        try:
            presets[name] = Preset(
                name=name, description=section.get("description", ""),
                model=section["model"], ctx=section.getint("ctx", DEFAULT_CTX),
                parallel=section.getint("parallel", 1), ngram=section.getboolean("ngram", False),
                no_think=section.getboolean("no_think", False),
                backend=section.get("backend") or None,
                extra=tuple(section.get("extra", "").split()))
        except (KeyError, ValueError) as exc:
            raise HaloError(f"{origin}: preset [{name}]: bad or missing {exc}") from None
    return presets


def load_presets() -> dict[str, Preset]:
    """configs/serve-presets.ini, then $HALO_HOME/serve-presets.ini (same name: yours wins)."""
    shipped = resources.files(__package__).joinpath("serve-presets.ini").read_text()
    presets = _parse_presets(shipped, "serve-presets.ini")
    user = halo_home() / "serve-presets.ini"
    if user.is_file():
        presets.update(_parse_presets(user.read_text(), str(user)))
    return presets


def preset_spec(name: str, **overrides) -> ServerSpec:
    """A ServerSpec from the preset `name`, with explicit options (not None) on top."""
    presets = load_presets()
    if name not in presets:
        raise HaloError(f"unknown preset '{name}' (known: {', '.join(sorted(presets))})")
    p = presets[name]
    fields = dict(model=p.model, ctx=p.ctx, parallel=p.parallel, ngram=p.ngram,
                  no_think=p.no_think, extra=p.extra, preset=name)
    if p.backend:
        fields["backend"] = p.backend
    extra = overrides.pop("extra", ())
    fields.update({k: v for k, v in overrides.items() if v is not None})
    fields["extra"] = tuple(fields["extra"]) + tuple(extra)
    return ServerSpec(**fields)


@attrs.frozen
class ServerPlan:
    """What start_server runs for a spec: the spec with its profile's settings, the backend, the
    model, the llama-server command and its full argv, the RPC workers checked, the profile's
    file ("" when none applied)."""

    spec: ServerSpec
    backend: object
    model: object
    cmd: object
    argv: list
    workers: tuple
    profile: str = ""


def plan_server(spec: ServerSpec, *, host: PluginHost | None = None,
                backend_options: Mapping[str, str] | None = None, on_status=None) -> ServerPlan:
    """The llama-server `spec` stands for on this machine (its backend, model, profile and the
    flags this build takes), without starting it: `halo serve` runs plan.argv."""
    status = on_status or (lambda _msg: None)
    host = host or get_host()
    [backend] = host.available_backends([spec.backend], backend_options)
    status(f"resolving model {spec.model}")
    model = fetch_model(spec.model, host=host)
    profile = None
    if spec.profile:
        spec, profile = with_profile(spec, model, backend, host, status)
    kv = spec.cache_type or DEFAULT_CACHE_TYPE
    if model.synthetic:
        status(Note(f"{model.name} is synthetic (random weights): its replies are noise"
                    + ("; n-gram speculation's acceptance on it means nothing" if spec.ngram else "")))
    cmd = backend.command("llama-server")
    flags = probe_flags(cmd, "llama-server")
    workers = ()
    if spec.rpc:
        status(f"checking RPC workers {','.join(spec.rpc)}")
        workers = check_workers(spec.rpc, [(cmd, "llama-server")])
    defaults = backend.defaults()
    extra = list(spec.extra)
    if {"-ub", "--ubatch-size"} & set(extra):  # (given after --: that one, not the backend's)
        defaults = attrs.evolve(defaults, ubatch=None)
    params = ServerParams(backend.map_path(model.path), host=spec.host, port=spec.port,
                          ctx=spec.ctx, parallel=spec.parallel or 1, cache_type_k=kv,
                          cache_type_v=kv, ngram=spec.ngram, no_think=spec.no_think,
                          api_key_file=backend.map_path(write_key_file(spec.port, spec.api_key))
                          if spec.api_key else None, threads=spec.threads, rpc=spec.rpc,
                          tensor_split=spec.tensor_split, extra=tuple(extra), batch=spec.batch,
                          ubatch=spec.ubatch, flash_attn=spec.flash_attn)
    return ServerPlan(spec, backend, model, cmd, server_argv(cmd, flags, params, defaults), workers,
                      str(profile_path(profile.model_sha256, profile.backend, profile.workload)) if profile else "")


def start_server(spec: ServerSpec, *, detach: bool = False, host: PluginHost | None = None,
          backend_options: Mapping[str, str] | None = None, on_status=None) -> Server:
    """Start llama-server for `spec`, wait until /health answers 200, and return it.

    `backend_options` configure the backend (`Backend.configure`). Raises UnsafeBind for a
    non-loopback host without a key, ToolFailed (with the log tail) when the server dies or
    does not become ready within spec.ready_timeout.
    """
    status = on_status or (lambda _msg: None)
    check_bind(spec.host, spec.api_key, spec.insecure)
    check_passthrough(spec.extra)
    if spec.cache_type is not None and spec.cache_type not in KV_TYPES:
        raise HaloError(f"unknown KV cache type '{spec.cache_type}' (known: {', '.join(KV_TYPES)})")
    check_port_free(spec.port)
    plan = plan_server(spec, host=host, backend_options=backend_options, on_status=status)
    spec, backend, model, cmd, argv, workers = (plan.spec, plan.backend, plan.model, plan.cmd, plan.argv,
                                                plan.workers)
    log_path = pid_dir() / f"server-{spec.port}.log"
    proc = spawn(argv, cmd.env, log_path, detach)
    info = ServerInfo(
        pid=proc.pid, start_ticks=start_ticks(proc.pid) or 0, argv=argv, host=spec.host,
        port=spec.port, url=url(spec.host, spec.port), model=str(model.path),
        backend=backend.name, log=str(log_path), started=now(),
        pid_file=str(pid_dir() / f"server-{spec.port}.json"), detached=detach, rpc=workers, profile=plan.profile)
    write_pid_file(info)
    server = Server(info, proc)
    try:
        _wait_ready(server, spec, status)
    except BaseException:
        server.stop()
        raise
    return server


def with_profile(spec: ServerSpec, model, backend, host: PluginHost, status):
    """(`spec` with the settings of the profile `halo optimize` measured for this model, backend
    and workload on this machine (and the -np `halo bench serve --slots` chose on them), where
    it holds and `spec` (or what follows --) leaves them unset; that profile, or None); what was
    used, or why not, goes to `status`."""
    from ..machine.hostfacts import read_facts
    from .profile import build_identity, machine_identity, match_profile, model_digest

    status("looking for a profile")
    profile, why = match_profile(model_digest(model), backend.name, spec.profile,
                                 machine_identity(read_facts(Path("/"), host=host)),
                                 build_identity(backend.provenance()))
    if profile is None:
        if why:
            status(Note(why))
        return spec, None
    given = set(spec.extra)
    fields = {}
    for name, flags in (("batch", {"-b", "--batch-size"}), ("ubatch", {"-ub", "--ubatch-size"}),
                        ("flash_attn", {"-fa", "--flash-attn"}), ("threads", {"-t", "--threads"}),
                        ("cache_type", {"-ctk", "--cache-type-k", "-ctv", "--cache-type-v"})):
        value = getattr(profile.settings, name)
        if value is not None and getattr(spec, name) is None and not flags & given:
            fields[name] = value
    wanted = len([f for f in attrs.fields_dict(type(profile.settings)) if getattr(profile.settings, f) is not None])
    summary = profile.summary()
    said = (f"settings from profile {profile.key}: {profile.settings.describe()} (measured {profile.created}"
            + (f": {summary}" if summary else "") + ")")
    slots = profile.slots
    if slots is not None:
        wanted += 1
        if spec.parallel is None and not {"-np", "--parallel"} & given:
            fields["parallel"] = slots.parallel
            per_slot = spec.ctx // slots.parallel
            measured = slots.ctx // slots.parallel
            said += (f"; -np {slots.parallel} from bench serve --slots ({slots.why}; measured {slots.measured})"
                     + (f" — each slot gets {per_slot} tokens of -c {spec.ctx}, fewer than the {measured} it was "
                        "measured with" if per_slot < measured else ""))
    status(Note(said + ("" if len(fields) == wanted else "; the command line's win")))
    return attrs.evolve(spec, **fields), profile


def record_slots(path: Path, choice, run_path: Path, served_as: str, status=None) -> Path:
    """Store the -np a `bench serve --slots` search chose (`choice`, a SlotChoice with a best
    count) in the profile file its servers started with (ServerInfo.profile), so that `halo
    serve` uses it (`served_as`: the model as the user named it); returns the path."""
    from .profile import Slots, load_profile, save_profile

    status = status or (lambda _msg: None)
    profile = load_profile(path)
    best = next(r for r in choice.results if r.slots == choice.best)
    saved = save_profile(attrs.evolve(profile, slots=Slots(parallel=best.slots, ctx=best.ctx, why=choice.why,
                                                           run=str(run_path), measured=now())))
    status(Note(f"-np {best.slots} stored in profile {profile.key}"
                + (f": halo serve {served_as} uses it" if profile.workload == "chat" else "")))
    return saved


def _wait_ready(server: Server, spec: ServerSpec, status) -> None:
    import httpx  # (here: `halo bench run` imports this module for its options, not for HTTP)

    health = url(connect_host(spec.host), spec.port) + "/health"
    deadline = time.monotonic() + spec.ready_timeout
    status(f"waiting for {health}")
    with httpx.Client(timeout=2.0, trust_env=False) as client:
        while True:
            server.check_started("llama-server")
            try:
                if client.get(health).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise ToolFailed(f"llama-server did not answer {health} within {spec.ready_timeout:.0f}s "
                                 f"(log: {server.info.log})", log_tail=tail_of(Path(server.info.log), 15))
            time.sleep(0.25)
