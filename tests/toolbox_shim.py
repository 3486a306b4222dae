"""A `toolbox` command for the tests (there is no toolbox nor AMD GPU here).

`toolbox list [--containers]` prints the table real toolbox prints (tabwriter, two spaces),
with the containers named in $TOOLBOX_SHIM_CONTAINERS (comma-separated; default: a Vulkan RADV,
two ROCm and an unrelated container). `toolbox run -c NAME -- cmd ...` runs cmd on this host:
/usr/sbin/llama-* and /usr/local/bin/llama-* become the real binaries in
$TOOLBOX_SHIM_LLAMA_DIR, arguments under /run/host/ lose that prefix. Each call is appended to
$TOOLBOX_SHIM_LOG as a JSON line (argv and container) so tests can assert what halo asked for.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

DEFAULT = "llama-vulkan-radv,llama-rocm-7.2.1,llama-rocm-7.14,fedora-toolbox-43"
IMAGES = {
    "fedora-toolbox-43": "registry.fedoraproject.org/fedora-toolbox:43",
}


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


def cmd_run(args: list[str]) -> int:
    if len(args) < 3 or args[0] != "-c" or "--" not in args:
        print("Error: shim supports only: toolbox run -c NAME -- CMD ...", file=sys.stderr)
        return 125
    name, rest = args[1], args[args.index("--") + 1:]
    if name not in _containers():
        print(f"Error: container {name} not found\nUse the 'create' command to create a toolbox.",
              file=sys.stderr)
        return 1
    log = os.environ.get("TOOLBOX_SHIM_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(json.dumps({"container": name, "argv": rest}) + "\n")
    llama_dir = Path(os.environ["TOOLBOX_SHIM_LLAMA_DIR"])
    argv = [_translate(a, llama_dir) for a in rest]
    os.execvp(argv[0], argv)
    return 127  # pragma: no cover


def main(argv: list[str]) -> int:
    if not argv:
        print("Error: missing command", file=sys.stderr)
        return 125
    if argv[0] == "list":
        return cmd_list(argv[1:])
    if argv[0] == "run":
        return cmd_run(argv[1:])
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
