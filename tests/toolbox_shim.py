"""A `toolbox` command for the tests on a machine where real toolbox cannot run (the real one is
driven by tests/toolbox_real.py where it can; this shim behaves as it was seen to behave there,
toolbox 0.0.99.3 with podman 4.3).

`toolbox list [--containers]` prints the table real toolbox prints (tabwriter, two spaces),
with the containers named in $TOOLBOX_SHIM_CONTAINERS (comma-separated; default: a Vulkan RADV,
two ROCm and an unrelated container). `toolbox run -c NAME -- cmd ...` runs cmd on this host:
/usr/sbin/llama-* and /usr/local/bin/llama-* become the real binaries in
$TOOLBOX_SHIM_LLAMA_DIR, arguments under /run/host/ lose that prefix. Each call is appended to
$TOOLBOX_SHIM_LOG as a JSON line (argv and container) so tests can assert what halo asked for.

As the real `toolbox run` does:
- the command gets only the variables toolbox forwards (PRESERVED, as set on the host), HOME
  and PATH: not the caller's environment;
- it runs in the caller's working directory when the container has it (here: `/`, the user's
  home and what toolbox mounts: /tmp, /mnt, /media, /run/host ...), else toolbox's two error
  lines and $HOME;
- no signal reaches the command, whatever `toolbox run` and its `podman exec` get (TERM, KILL,
  to the process or its group): the command runs in a session of its own. Only the end of its
  stdin does, which `podman exec` holds: when that dies, or its stdin ends, the command's ends;
- exit codes 125-127 are toolbox's: 125 and 126 print its error, 127 prints "command not
  found" when the command does not exist and becomes exit 0 when it does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

DEFAULT = "llama-vulkan-radv,llama-rocm-7.2.1,llama-rocm-7.14,fedora-toolbox-43"
IMAGES = {
    "fedora-toolbox-43": "registry.fedoraproject.org/fedora-toolbox:43",
}
# what toolbox 0.0.99.3 passes from the caller's environment into `toolbox run`
PRESERVED = ("COLORTERM", "DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS", "DESKTOP_SESSION",
             "DISPLAY", "LANG", "SHELL", "SSH_AUTH_SOCK", "TERM", "TOOLBOX_PATH", "USER",
             "VTE_VERSION", "WAYLAND_DISPLAY", "XAUTHORITY", "XDG_CURRENT_DESKTOP", "XDG_DATA_DIRS",
             "XDG_MENU_PREFIX", "XDG_RUNTIME_DIR", "XDG_SEAT", "XDG_SESSION_DESKTOP",
             "XDG_SESSION_ID", "XDG_SESSION_TYPE", "XDG_VTNR")
# what a toolbox container mounts from the host where it is (besides the user's home; read
# from a real one's /proc/self/mountinfo)
MOUNTED = ("/run/host", "/tmp", "/media", "/mnt", "/run/media", "/dev")


def _containers() -> list[str]:
    return [c for c in os.environ.get("TOOLBOX_SHIM_CONTAINERS", DEFAULT).split(",") if c]


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("".join(cell.ljust(w + 2) if i < len(row) - 1 else cell
                             for i, (cell, w) in enumerate(zip(row, widths)))
                     for row in rows) + "\n"


def cmd_list(args: list[str]) -> int:
    names = _containers()
    images = [[_id("image " + n), _image(n), "3 weeks ago"] for n in names]
    containers = [[_id(n), n, "2 weeks ago",
                   "running" if i == 0 else "exited", _image(n)] for i, n in enumerate(names)]
    out = []
    if "--containers" not in args and "-c" not in args and names:
        out.append(_table([["IMAGE ID", "IMAGE NAME", "CREATED"], *images]))
    if names:
        out.append(_table([["CONTAINER ID", "CONTAINER NAME", "CREATED", "STATUS", "IMAGE NAME"],
                           *containers]))
    sys.stdout.write("\n".join(out))
    return 0


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def _image(name: str) -> str:
    if name in IMAGES:
        return IMAGES[name]
    return f"docker.io/kyuz0/amd-strix-halo-toolboxes:{name.removeprefix('llama-')}"


def _translate(arg: str, llama_dir: Path) -> str:
    for prefix in ("/usr/sbin/", "/usr/local/bin/"):
        if arg.startswith(prefix + "llama-"):
            return str(llama_dir / arg[len(prefix):])
    if arg.startswith("/run/host/"):
        return arg[len("/run/host"):]
    return arg


def _visible(cwd: str, home: str) -> bool:
    """Whether the container has the caller's working directory (as far as the shim knows)."""
    return cwd == "/" or any(cwd == top or cwd.startswith(top.rstrip("/") + "/")
                             for top in (home, *MOUNTED) if top)


def cmd_run(args: list[str]) -> int:
    if len(args) < 3 or args[0] != "-c" or "--" not in args:
        print("Error: shim supports only: toolbox run -c NAME -- CMD ...", file=sys.stderr)
        return 125
    name, rest = args[1], args[args.index("--") + 1:]
    if name not in _containers():
        print(f"Error: container {name} not found\nUse the 'create' command to create a toolbox.\n"
              "Run 'toolbox --help' for usage.", file=sys.stderr)
        return 1
    log = os.environ.get("TOOLBOX_SHIM_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"container": name, "argv": rest, "cwd": os.getcwd()}) + "\n")
    llama_dir = Path(os.environ["TOOLBOX_SHIM_LLAMA_DIR"])
    argv = [_translate(a, llama_dir) for a in rest]
    home = os.environ.get("HOME", "/")
    env = {k: os.environ[k] for k in PRESERVED if k in os.environ}
    env.update(HOME=home, PATH=os.environ.get("PATH", "/usr/bin:/bin"), container="podman")
    cwd = os.getcwd()
    if not _visible(cwd, home):
        print(f"Error: directory {cwd} not found in container {name}\nUsing {home} instead.",
              file=sys.stderr)
        cwd = home
    # toolbox dies of the signals it gets; `podman exec` (its child, in its process group)
    # holds the command's stdin, and nothing else: the command runs in a session of its own
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_DFL)
    code = subprocess.Popen([sys.executable, __file__, "__exec", cwd, json.dumps(env), *argv]).wait()
    if code < 0:
        code = 128 - code
    if code == 127:
        if shutil.which(argv[0], path=env["PATH"]):
            return 0  # toolbox: "the command exists", whatever it exited with
        print(f"Error: command {rest[0]} not found in container {name}", file=sys.stderr)
    elif code == 126:
        print(f"Error: failed to invoke command {rest[0]} in container {name}", file=sys.stderr)
    elif code == 125:
        print(f"Error: failed to invoke 'podman exec' in container {name}", file=sys.stderr)
    return code


def cmd_exec(args: list[str]) -> int:
    """The shim's `podman exec`: start the command in a session of its own and pass it this
    process's stdin; when this process dies, the command's stdin ends (and nothing else)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    cwd, env, argv = args[0], json.loads(args[1]), args[2:]
    try:
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.PIPE,
                                start_new_session=True)
    except OSError as exc:
        print(f"bash: line 1: {argv[0]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126

    def feed():
        try:
            while chunk := os.read(0, 65536):
                proc.stdin.write(chunk)
                proc.stdin.flush()
        except OSError:
            pass
        try:
            proc.stdin.close()
        except OSError:
            pass

    threading.Thread(target=feed, daemon=True).start()
    code = proc.wait()
    return 128 - code if code < 0 else code


def main(argv: list[str]) -> int:
    if not argv:
        print("Error: missing command", file=sys.stderr)
        return 125
    if argv[0] == "list":
        return cmd_list(argv[1:])
    if argv[0] == "run":
        return cmd_run(argv[1:])
    if argv[0] == "__exec":
        return cmd_exec(argv[1:])
    print(f"Error: unknown command '{argv[0]}' in the test shim", file=sys.stderr)
    return 125


def install(bin_dir: Path) -> Path:
    """Write `toolbox` into bin_dir (put it first on PATH) and return its path."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    path = bin_dir / "toolbox"
    path.write_text(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\n"
                    "import toolbox_shim\nsys.exit(toolbox_shim.main(sys.argv[1:]))\n")
    path.chmod(0o755)
    return path


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
