"""The host's side of a tool halo runs in a toolbox container (the container's side is
watchdog.sh). Run as a script, with the standard library only:

    python tether.py CONTAINER TOOLBOX_RUN_ARGV...

What the real `toolbox run` taught (toolbox 0.0.99, podman 4.3):

- a signal to `toolbox run` is not passed on: it dies and the tool inside keeps running (so
  `halo serve stop` left llama-server serving). The end of its stdin does reach the tool, so
  the tether starts `toolbox run` in a session of its own with a pipe for stdin, and on SIGTERM,
  SIGINT or SIGHUP closes that pipe; the watchdog inside then stops the tool, the tether waits
  for it and dies by the signal it got, as the tool would natively. If the tether itself is
  killed, the kernel closes the pipe: the tool still stops.
- `toolbox run` starts the tool in the host's working directory, and where the container has no
  such directory it prints two errors and tries again in $HOME: the tether runs it from `/`.
- a container that does not start makes `toolbox run` say only "failed to start container":
  the tether asks podman why (`podman start`) and prints that as the last line, exit 125.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

GRACE = 8.0  # seconds to wait for the tool after letting go (the watchdog's own grace is 5 s)


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else "no output"


def why_not_started(container: str) -> str:
    """Why `container` is not running, in podman's words; "" when it runs or podman cannot say."""
    podman = shutil.which("podman")
    if podman is None:
        return ""
    try:
        done = subprocess.run([podman, "container", "inspect", container], capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        if done.returncode != 0:  # removed since halo listed it
            why = _last_line(done.stderr).removeprefix("Error: ")
            return (f"container {container} is gone ({why}): create it again with "
                    f"`toolbox create {container} --image IMAGE`")
        state = (json.loads(done.stdout) or [{}])[0].get("State", {})
        if state.get("Status") == "running":
            return ""
        done = subprocess.run([podman, "start", container], capture_output=True, text=True,
                              timeout=120, stdin=subprocess.DEVNULL)
    except (OSError, ValueError, subprocess.TimeoutExpired):
        return ""
    if done.returncode == 0:
        return ""
    # "Error: unable to start container "<64 hex>": runc: ..." -> "runc: ..."
    reason = re.sub(r'^(Error: )?(unable to start container "[0-9a-f]+": )?', "",
                    _last_line(done.stderr))
    return f"container {container} does not start: {reason}"


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: tether.py CONTAINER TOOLBOX_RUN_ARGV...", file=sys.stderr)
        return 2
    container, command = argv[0], argv[1:]
    got: list[int] = []

    def let_go(signum, _frame):
        if not got:
            got.append(signum)
            try:
                proc.stdin.close()
            except OSError:
                pass

    try:
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, cwd="/", start_new_session=True)
    except OSError as exc:
        print(f"halo: cannot start {command[0]}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, let_go)
    deadline = None
    while True:
        try:
            code = proc.wait(timeout=0.2)
            break
        except subprocess.TimeoutExpired:
            if got and deadline is None:
                deadline = time.monotonic() + GRACE
            if deadline is not None and time.monotonic() > deadline:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                code = proc.wait()
                break
    if got:
        signal.signal(got[0], signal.SIG_DFL)
        os.kill(os.getpid(), got[0])
        return 128 + got[0]
    if code != 0:
        reason = why_not_started(container)
        if reason:
            print(f"halo: {reason}", file=sys.stderr)
            return 125
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
