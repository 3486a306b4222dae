"""Where model-written code runs: a bubblewrap sandbox around the scorer (evalplus,
bigcodebench), never the user's rights.

Inside: the whole system read-only; HOME, /tmp and the scorer's caches private and empty
(nothing of the user's is visible, nothing persists); the work dir the only writable folder
of the host; no network; new user, pid, ipc and uts namespaces, no capabilities, and user
namespaces disabled; a clean environment (only what the scorer is given); limits on address
space, CPU time and, for a normal user, processes. The scorer starts in a session of its own
with its output going to a file; on timeout the session is killed, and with it the pid
namespace, so a grandchild that outlives the scorer (or holds its pipe) cannot keep halo
waiting. As root it runs as uid 65534 inside its user namespace (run halo with sudo and it
scores as the invoking user).

Where bubblewrap is missing or cannot make a sandbox, scoring refuses with the reason unless
`--unsafe-local-exec` is given; as root it refuses even then. docs/security.md says why.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pwd
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Mapping

from ..errors import HaloError

INSTALL_BWRAP = "sudo apt-get install bubblewrap (Fedora: sudo dnf install bubblewrap)"
NOBODY = 65534
NPROC_ROOM = 512  # processes the scorer may add to the user's own


class SandboxRefused(HaloError):
    """Model-written code would run without a sandbox (or as root)."""


@functools.lru_cache(maxsize=1)
def sandbox_problem() -> str | None:
    """Why bubblewrap cannot sandbox a scorer here, or None when it can."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed: {INSTALL_BWRAP}"
    try:
        done = subprocess.run([bwrap, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent",
                               "--", "true"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap does not run here: {exc}"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"bubblewrap cannot make a sandbox here: {last}"
    return None


def _invoking_user() -> tuple[int, int, str] | None:
    """(uid, gid, home) of the user who ran `sudo halo ...`, or None."""
    uid = os.environ.get("SUDO_UID")
    if os.geteuid() != 0 or not (uid and uid.isdigit()) or int(uid) == 0:
        return None
    try:
        entry = pwd.getpwuid(int(uid))
    except KeyError:
        return None
    return entry.pw_uid, entry.pw_gid, entry.pw_dir


def _code_paths() -> list[Path]:
    """What the scorer needs to start: the Python it runs and the folders it imports from."""
    paths = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    paths.update(Path(p) for p in sys.path if p and Path(p).is_dir())
    return sorted({p.resolve() for p in paths})


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def clean_env(env: Mapping[str, str], *, home: Path, **more: str) -> dict[str, str]:
    """The scorer's whole environment: PATH, HOME, LANG (and PYTHONPATH where halo has one),
    `more`, then `env`; nothing else of halo's (no HF_TOKEN)."""
    base = {"PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin", "HOME": str(home),
            "LANG": "C.UTF-8", **more}
    if os.environ.get("PYTHONPATH"):
        base["PYTHONPATH"] = os.environ["PYTHONPATH"]
    return {**base, **env}


def sandbox_argv(argv: list[str], workdir: Path, env: Mapping[str, str], *, home: Path) -> list[str]:
    """`argv` inside bubblewrap (see the module's docstring)."""
    workdir = workdir.resolve()
    home = home.resolve() if home.is_dir() else home
    cache = workdir / ".cache"
    cache.mkdir(exist_ok=True)
    out = [shutil.which("bwrap") or "bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    hidden = [Path("/tmp"), Path("/var/tmp"), Path("/run"), home, Path("/root"), Path("/home")]
    hidden = [h for h in dict.fromkeys(hidden) if h.is_dir() and not any(_under(h, o) and h != o for o in hidden)]
    for folder in hidden:
        out += ["--tmpfs", str(folder)]
    for path in _code_paths():  # the Python and halo's code, back where a hidden folder held them
        if any(_under(path, h) for h in hidden) and not _under(path, workdir):
            out += ["--ro-bind", str(path), str(path)]
    out += ["--bind", str(workdir), str(workdir), "--chdir", str(workdir),
            "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session", "--clearenv"]
    if os.geteuid() == 0 and _invoking_user() is None:
        out += ["--uid", str(NOBODY), "--gid", str(NOBODY)]
    for key, value in clean_env(env, home=home, TMPDIR="/tmp", XDG_CACHE_HOME=str(cache)).items():
        out += ["--setenv", key, value]
    return out + ["--", *argv]


CGROUP_ROOTS = (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/pids"))  # cgroup v2, v1's pids


def pids_cgroup() -> Path | None:
    """As root, a pids cgroup of its own for one scorer (pids.max = NPROC_ROOM): the kernel does
    not count a root user's processes against RLIMIT_NPROC, a cgroup counts everyone's. None
    where none can be made (not root, no pids controller)."""
    if os.geteuid() != 0:
        return None
    for base in CGROUP_ROOTS:
        control = base / "cgroup.subtree_control"  # v2: the pids controller must be on for children
        if not (base / "cgroup.procs").is_file() or (
                base.name != "pids" and not (control.is_file() and "pids" in control.read_text().split())):
            continue
        group = base / f"halo-score-{os.getpid()}-{time.monotonic_ns()}"
        try:
            group.mkdir()
            (group / "pids.max").write_text(f"{NPROC_ROOM}\n")
        except OSError:
            with contextlib.suppress(OSError):
                group.rmdir()
            continue
        return group
    return None


def _limits(timeout: float, drop: tuple[int, int, str] | None, cgroup: Path | None):
    """The child's last steps before bubblewrap: its pids cgroup (root), the invoking user's
    rights (under sudo), and limits every process of the scorer inherits."""
    def apply() -> None:
        if cgroup is not None:
            (cgroup / "cgroup.procs").write_text("0\n")  # this process, and all it starts
        if drop is not None:
            uid, gid, _home = drop
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
        memory = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")  # the frameworks cap
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))  # each task below this
        cpu = int(timeout) + 60
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        if os.geteuid() != 0:  # (the kernel does not count a root user's processes)
            mine = sum(1 for p in Path("/proc").iterdir() if p.name.isdigit() and _owner(p) == os.getuid())
            resource.setrlimit(resource.RLIMIT_NPROC, (mine + NPROC_ROOM, mine + NPROC_ROOM))
    return apply


def _owner(proc: Path) -> int | None:
    try:
        return proc.stat().st_uid
    except OSError:
        return None


def run_scorer(argv: list[str], *, workdir: Path, env: Mapping[str, str], log: Path, timeout: float,
               what: str, unsafe_local_exec: bool = False) -> int:
    """Run a scorer of model-written code (`argv`, in `workdir`) and return its exit code;
    its output goes to `log`. SandboxRefused when no sandbox can be had (and not
    `unsafe_local_exec`), or as root without one; a HaloError on timeout."""
    problem = sandbox_problem()
    drop = _invoking_user()
    if problem is None:
        home = Path(drop[2]) if drop else Path.home()
        if drop is not None:
            os.chown(workdir, drop[0], drop[1])
        command = sandbox_argv(argv, workdir, env, home=home)
    elif os.geteuid() == 0:
        raise SandboxRefused(f"{what} refused: it runs model-written code, and as root only inside a "
                             f"sandbox ({problem})")
    elif not unsafe_local_exec:
        raise SandboxRefused(f"{what} refused: it runs model-written code, and {problem}; or give "
                             f"--unsafe-local-exec to run it with your rights")
    else:  # the user's explicit choice: their rights, but still a clean environment and a group kill
        command = argv
    # bubblewrap gets no environment (--setenv gives the scorer its own); unsandboxed, the
    # scorer gets the clean one directly
    child_env = {} if problem is None else clean_env(env, home=Path.home())
    cgroup = pids_cgroup()
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=workdir, env=child_env,
                                    start_new_session=True, preexec_fn=_limits(timeout, drop, cgroup))
            try:
                return proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                out.write(f"\ntimed out after {timeout:.0f} s\n".encode())
                raise HaloError(f"{what} timed out after {timeout:.0f} s (log: {log})") from None
            except BaseException:
                _kill_group(proc)
                raise
    finally:
        if cgroup is not None:
            _remove_cgroup(cgroup)


def _remove_cgroup(group: Path) -> None:
    """Kill what is left in the scorer's cgroup (its pid namespace is gone with it already) and
    remove the group."""
    for _ in range(50):
        try:
            pids = [int(p) for p in (group / "cgroup.procs").read_text().split()]
        except OSError:
            return
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    with contextlib.suppress(OSError):
        group.rmdir()


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
