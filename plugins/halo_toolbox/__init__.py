"""The `toolbox` backends: llama.cpp inside the kyuz0/amd-strix-halo-toolboxes containers.

Families (Vulkan RADV, Vulkan AMDVLK, ROCm) are data, in plugins/halo_toolbox/toolboxes.conf plus
$HALO_HOME/toolboxes.conf: a container-name pattern, the binary folder inside the image, the
environment set inside the container and the ubatch. `register_backends` runs
`toolbox list --containers` and registers one backend per container whose name matches a
family (backend name = container name without `llama-`), plus the containers the conf names,
for each family the user has no container of, so a missing one can say how to create it.

A tool runs as `python tether.py CONTAINER toolbox run -c CONTAINER -- env K=V ... bash
watchdog.sh BIN_DIR/TOOL` (tether.py says why: `toolbox run` passes no signal on to the tool);
the user's own home is shared as it is, every other host path is seen under /run/host.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import sys
from importlib import resources
from pathlib import Path

import attrs

from halo_core.plugin_api import (
    Availability, Backend, BackendDefaults, HaloError, ToolCommand, Unavailable, halo_home,
    ToolFailed, hookimpl, is_live, last_line, run_capture,
)

INSTALL_TOOLBOX = "sudo dnf install toolbox"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


class ConfError(HaloError):
    """A malformed line in toolboxes.conf."""


@attrs.frozen
class Family:
    """How llama.cpp runs in one kind of container."""

    name: str
    patterns: tuple[str, ...]
    bin_dir: str
    ubatch: int
    env: tuple[tuple[str, str], ...]

    def matches(self, container: str) -> bool:
        return any(fnmatch.fnmatchcase(container, p) for p in self.patterns)


@attrs.frozen
class KnownContainer:
    """A container the conf names: the image to create it from, required or optional."""

    name: str
    image: str
    need: str  # "required" | "optional"

    @property
    def create(self) -> str:
        return f"toolbox create {self.name} --image {self.image}"


@attrs.frozen
class Container:
    """One row of `toolbox list --containers`."""

    id: str
    name: str
    created: str
    status: str
    image: str


@attrs.frozen
class Conf:
    families: tuple[Family, ...]
    known: tuple[KnownContainer, ...]

    def family_of(self, container: str) -> Family | None:
        return next((f for f in self.families if f.matches(container)), None)


def parse_conf(text: str, origin: str) -> Conf:
    """toolboxes.conf lines -> Conf; ConfError naming the file and line on a bad one."""
    families, known = [], []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip() for f in line.split("|")]
        where = f"{origin}:{number}"
        if fields[0] == "family" and len(fields) == 6:
            _, name, patterns, bin_dir, ubatch, env = fields
            try:
                ub = int(ubatch)
            except ValueError:
                raise ConfError(f"{where}: UBATCH must be a whole number, not {ubatch!r}") from None
            pairs = []
            for item in filter(None, (e.strip() for e in env.split(","))):
                key, sep, value = item.partition("=")
                if not sep or not key:
                    raise ConfError(f"{where}: ENV entries are KEY=VALUE, not {item!r}")
                pairs.append((key, value))
            if not name or not patterns or not bin_dir.startswith("/"):
                raise ConfError(f"{where}: a family needs a name, patterns and an absolute BIN_DIR")
            families.append(Family(name, tuple(p.strip() for p in patterns.split(",") if p.strip()),
                                   bin_dir, ub, tuple(pairs)))
        elif fields[0] == "container" and len(fields) == 4:
            _, name, image, need = fields
            if need not in ("required", "optional") or not name or not image:
                raise ConfError(f"{where}: expected container|NAME|IMAGE|required or optional")
            known.append(KnownContainer(name, image, need))
        else:
            raise ConfError(f"{where}: expected family|NAME|PATTERNS|BIN_DIR|UBATCH|ENV "
                            f"or container|NAME|IMAGE|NEED")
    return Conf(tuple(families), tuple(known))


def load_conf() -> Conf:
    """The shipped conf, with $HALO_HOME/toolboxes.conf's families first and containers added."""
    shipped = parse_conf(resources.files(__name__).joinpath("toolboxes.conf").read_text(),
                         "toolboxes.conf")
    user_file = halo_home() / "toolboxes.conf"
    if not user_file.is_file():
        return shipped
    user = parse_conf(user_file.read_text(), str(user_file))
    names = {k.name for k in user.known}
    return Conf(user.families + shipped.families,
                user.known + tuple(k for k in shipped.known if k.name not in names))


def parse_list(text: str) -> list[Container]:
    """The containers table of `toolbox list`: columns cut where the header's names start
    (toolbox aligns them with tabwriter; CREATED holds spaces, e.g. "2 weeks ago")."""
    containers = []
    starts: list[int] | None = None
    for raw in text.splitlines():
        line = _ANSI.sub("", raw).rstrip()
        if line.startswith("CONTAINER ID"):
            starts = [line.index(col) for col in
                      ("CONTAINER ID", "CONTAINER NAME", "CREATED", "STATUS", "IMAGE NAME")]
            continue
        if not line.strip():
            continue
        if line.startswith("IMAGE ID"):
            starts = None
            continue
        if starts is None:
            continue
        bounds = list(zip(starts, starts[1:] + [None]))
        cells = [line[a:b].strip() for a, b in bounds]
        if cells[1]:
            containers.append(Container(*cells))
    return containers


def list_containers() -> list[Container]:
    """What `toolbox list --containers` prints; Unavailable when toolbox is missing or fails."""
    toolbox = shutil.which("toolbox")
    if toolbox is None:
        raise Unavailable(f"toolbox not installed: {INSTALL_TOOLBOX}")
    done = run_capture([toolbox, "list", "--containers"], timeout=60)
    if done.returncode != 0:
        raise Unavailable(f"`toolbox list` failed (exit {done.returncode}): {last_line(done)}")
    return parse_list(done.stdout)


def host_path(path: Path | str, home: str | None = None) -> str:
    """How a host file appears inside a toolbox: toolbox mounts the user's own home (`home`,
    default $HOME) where it is and the whole host under /run/host (and a few folders where they
    are: /tmp, /mnt, /media; they are under /run/host too). /home is not there, nor another
    user's home."""
    text = str(path)
    home = (home if home is not None else os.path.expanduser("~")).rstrip("/")
    if text == "/run/host" or text.startswith("/run/host/"):
        return text
    if home and (text == home or text.startswith(home + "/")):
        return text
    return "/run/host" + text if text.startswith("/") else text


TETHER = Path(__file__).with_name("tether.py")
WATCHDOG = Path(__file__).with_name("watchdog.sh")


def _podman_json(*args: str) -> dict:
    """The first record `podman ... inspect` prints; {} when podman is missing or fails."""
    podman = shutil.which("podman")
    if podman is None:
        return {}
    try:
        done = run_capture([podman, *args], timeout=60)
        records = json.loads(done.stdout) if done.returncode == 0 else []
    except (ToolFailed, ValueError):
        return {}
    return records[0] if isinstance(records, list) and records and isinstance(records[0], dict) else {}


def image_facts(container: str) -> dict[str, str]:
    """The image a container was created from, as podman knows it: id, name and digest."""
    record = _podman_json("container", "inspect", container)
    image_id = record.get("Image", "")
    if not image_id:
        return {}
    facts = {"image_id": image_id, "image_name": record.get("ImageName", "")}
    image = _podman_json("image", "inspect", image_id)
    if image.get("Digest"):
        facts["image_digest"] = image["Digest"]
    return facts


class ToolboxBackend(Backend):
    """llama.cpp in one toolbox container of a known family."""

    description = "llama.cpp in a toolbox container"

    def __init__(self, container: str, family: Family, found: Container | None = None,
                 known: KnownContainer | None = None, problem: str = ""):
        self.container, self.family, self.found, self.known = container, family, found, known
        self.problem = problem  # why the container cannot be listed (toolbox missing or failing)
        self.name = container[len("llama-"):] if container.startswith("llama-") else container
        self.need = known.need if known else "optional"
        self.description = f"toolbox {container} ({family.name}, {family.bin_dir})"

    def _hint(self) -> str:
        image = self.known.image if self.known else f"IMAGE (see {self.family.name} in toolboxes.conf)"
        return f"create it with `toolbox create {self.container} --image {image}`"

    def availability(self) -> Availability:
        if self.problem:
            return Availability(False, self.problem,
                                INSTALL_TOOLBOX if "not installed" in self.problem else "")
        if self.found is None:
            return Availability(False, f"container {self.container} missing: {self._hint()}",
                                self._hint())
        return Availability(True)

    def command(self, tool: str) -> ToolCommand:
        availability = self.availability()
        if not availability.available:
            raise Unavailable(availability.reason)
        binary = f"{self.family.bin_dir}/{tool}"
        env = [f"{k}={v}" for k, v in self.family.env]
        found = self.found
        # the tether holds the tool's stdin; the watchdog inside stops the tool when it closes
        return ToolCommand([sys.executable, str(TETHER), self.container,
                            "toolbox", "run", "-c", self.container, "--",
                            "env", *env, "bash", host_path(WATCHDOG), binary],
                           cache_key=f"toolbox:{self.container}:{found.id}:{found.image}:{binary}")

    def map_path(self, path: Path) -> str:
        return host_path(path)

    def defaults(self) -> BackendDefaults:
        return BackendDefaults(ubatch=self.family.ubatch)

    def provenance(self) -> dict[str, str]:
        facts = {"container": self.container, "family": self.family.name,
                 "bin_dir": self.family.bin_dir,
                 "env": " ".join(f"{k}={v}" for k, v in self.family.env)}
        if self.found is not None:
            facts.update(container_id=self.found.id, image=self.found.image,
                         created=self.found.created)
            facts.update(image_facts(self.container))
        return facts

    def release(self) -> str:
        """Stop the container: a llama-server that outlived its `toolbox run` ends with it."""
        if self.found is None:
            return ""
        podman = shutil.which("podman")
        if podman is None:
            return f"container {self.container}: not stopped (podman not found)"
        done = run_capture([podman, "stop", self.container], timeout=120)
        if done.returncode != 0:
            return f"container {self.container}: podman stop failed: {last_line(done)}"
        return f"container {self.container}: stopped"


def discover(conf: Conf | None = None) -> list[ToolboxBackend]:
    """One backend per listed container of a known family, and one per conf-named container."""
    conf = conf or load_conf()
    problem = ""
    try:
        containers = list_containers()
    except Unavailable as exc:
        containers, problem = [], str(exc)
    known = {k.name: k for k in conf.known}
    backends: dict[str, ToolboxBackend] = {}
    for found in containers:
        family = conf.family_of(found.name)
        if family is not None and found.name not in backends:
            backends[found.name] = ToolboxBackend(found.name, family, found, known.get(found.name))
    # the user's `toolbox list` wins: the conf's containers only stand in for a family the
    # user has none of, so that halo can say how to create one
    present = {b.family.name for b in backends.values()}
    for name, entry in known.items():
        family = conf.family_of(name)
        if family is not None and family.name not in present:
            backends[name] = ToolboxBackend(name, family, None, entry, problem)
    return list(backends.values())


@hookimpl
def host_facts(root, ask_tools):
    """The toolbox containers on this machine (`toolbox list`: live system only)."""
    if not (ask_tools and is_live(root)):
        return None
    try:
        containers = list_containers()
    except (Unavailable, ToolFailed):
        return None
    return {"toolboxes": ", ".join(c.name for c in containers) or "none"}


@hookimpl
def register_backends(register):
    for backend in discover():
        register(backend)
