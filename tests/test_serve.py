"""`halo serve` and `halo flush` with a real llama-server on the smoke model: chat completions,
the bind rules, a server that fails to start, detach/status/stop, foreground Ctrl-C, a toolbox
backend through the shim, and flush on a sysroot."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import types
from pathlib import Path

import httpx
import pytest

import halo_toolbox

from sysroot import strix_halo, write
from conftest import ctrl_c_works, wait_until, write_tool
from halo_core import Availability, Backend, PluginHost, ToolCommand, hookimpl
from halo_core.llama import process as process_mod
from halo_core.llama.flush import flush_memory
from halo_core.records import ProcessInfo
from halo_core.llama.process import read_pid_files, write_pid_file
from halo_core.llama.process import check_bind, servers, start_ticks
from halo_core.llama.server import load_presets
from halo_core.store import to_dict, write_json

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cleanup():
    """Stops every server halo recorded in the current $HALO_HOME when the test ends."""
    yield
    process_mod.stop_servers()


def chat(port: int, key: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", headers=headers, timeout=60,
                      json={"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8})


def test_detach_chat_status_stop(halo, smoke_model, cleanup):
    port = free_port()
    done = halo("serve", str(smoke_model.path), "--port", str(port), "-c", "2048", "--detach")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"serving {smoke_model.path} on native: http://127.0.0.1:{port}/v1 (pid ")
    command = lines[1].removeprefix("command: ").split()
    assert command[1:3] == ["-m", str(smoke_model.path)]
    for pair in (["--host", "127.0.0.1"], ["--port", str(port)], ["-c", "2048"], ["-np", "1"],
                 ["-ngl", "99"], ["-fa", "on"], ["--load-mode", "none"], ["-ctk", "q4_0"],
                 ["-ctv", "q4_0"]):
        assert any(command[i:i + 2] == pair for i in range(len(command))), pair
    assert lines[-1] == f"detached; stop it with: halo serve stop --port {port}"

    reply = chat(port)
    assert reply.status_code == 200
    assert reply.json()["choices"][0]["message"]["content"].strip()

    status = halo("serve", "status", "--json")
    [row] = json.loads(status.stdout)
    assert (row["running"], row["port"], row["backend"], row["detached"]) == (True, port, "native", True)
    pid = row["pid"]

    stopped = halo("serve", "stop", "--port", str(port))
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"stopped pid {pid} (port {port}, native)\n"
    assert start_ticks(pid) is None
    assert halo("serve", "status").stdout == "no servers started by halo\n"
    assert halo("serve", "stop").stdout == "no running server started by halo\n"


def serve_foreground(model: Path, port: int) -> tuple[subprocess.Popen, list[str]]:
    """`halo serve MODEL` attached, read up to its "Ctrl-C stops the server" line."""
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "serve", str(model),
                             "--port", str(port), "-c", "2048"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=ctrl_c_works)
    seen = []
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("Ctrl-C"):
            break
    return proc, seen


def test_foreground_ctrl_c_stops_the_server(smoke_model, cleanup):
    port = free_port()
    proc, seen = serve_foreground(smoke_model.path, port)
    try:
        assert seen[0].startswith(f"serving {smoke_model.path} on native"), seen
        [info] = read_pid_files()
        assert chat(port).status_code == 200
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        assert "server stopped" in proc.stderr.read()
        assert start_ticks(info.pid) is None
        assert read_pid_files() == []
    finally:
        proc.kill()
        proc.wait()


def test_server_that_fails_to_start(halo, smoke_model, tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(smoke_model.path.read_bytes()[:2_000_000])
    port = free_port()
    done = halo("serve", str(broken), "--port", str(port), "-c", "2048")
    assert done.returncode == 1
    log = Path(os.environ["HALO_HOME"]) / "run" / f"server-{port}.log"
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: llama-server exited with code 1 before it was ready: "
        f"{log.read_text().strip().splitlines()[-1].strip()} (log: {log})")
    assert "llama-server log (last lines):" in done.stderr
    assert "data is not within the file bounds" in done.stderr
    assert not (log.parent / f"server-{port}.json").exists()


def test_bind_rules(halo):
    done = halo("serve", "smoke", "--host", "0.0.0.0")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: --host 0.0.0.0 serves beyond this machine: give --api-key KEY "
        "(or --insecure to serve without one)")
    for host in ("127.0.0.1", "127.8.9.1", "::1", "localhost"):
        check_bind(host, None, False)
    check_bind("192.168.1.5", "k", False)
    check_bind("0.0.0.0", None, True)
    with pytest.raises(process_mod.UnsafeBind):
        check_bind("::", None, False)
    done = halo("serve")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "Error: give a MODEL or --preset NAME (one of them)"
    # (#21) what halo checks cannot be walked around after `--`: llama.cpp keeps the last --host
    for extra in (["--host", "0.0.0.0"], ["--host=0.0.0.0"], ["--port", "9"], ["--api-key", "k"],
                  ["--api-key-file", "/tmp/k"]):
        done = halo("serve", "smoke", "--", *extra)
        flag = extra[0].split("=")[0]
        assert done.returncode == 2, (extra, done.stderr)
        assert done.stderr.strip().splitlines()[-1] == (
            f"Error: {flag} after -- would override what halo checks and records: give "
            f"{'--api-key' if 'api-key' in flag else flag} to halo instead")
    assert servers() == []


def test_only_what_follows_dashdash_reaches_llama_server(halo):
    """(#24) an option halo does not have is halo's usage error, not llama-server's."""
    # (--sla: an option of none of them; `bench serve` has --slo since #23, and says so)
    for argv in (("serve", "smoke", "--sla", "x"), ("bench", "serve", "smoke", "--sla", "x"),
                 ("sweep", "smoke", "--sla", "x"), ("rpc", "serve", "--sla", "x")):
        done = halo(*argv)
        assert done.returncode == 2, (argv, done.stderr)
        assert done.stderr.strip().splitlines()[-1].startswith("Error: No such option '--sla'"), argv
    assert "'--slo'" in halo("bench", "serve", "smoke", "--sla", "x").stderr.splitlines()[-1]  # (did you mean)
    done = halo("serve", "smoke", "--detatch")
    assert done.returncode == 2
    assert "Did you mean '--detach'?" in done.stderr
    done = halo("serve", "smoke", "-c", "2048", "stray")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == "Error: Got unexpected extra argument (stray)"
    assert servers() == []


def test_api_key_ngram_no_think_and_passthrough(halo, smoke_model, cleanup):
    port = free_port()
    done = halo("serve", str(smoke_model.path), "--host", "0.0.0.0", "--api-key", "s3cret",
                "--port", str(port), "-c", "2048", "--ngram", "--no-think", "--detach",
                "--", "--temp", "0")
    assert done.returncode == 0, done.stderr
    command = done.stdout.splitlines()[1].removeprefix("command: ")
    assert "--spec-type ngram-simple" in command
    assert ("--spec-draft-n-max 64 --spec-draft-n-min 4" in command
            or "--draft-max 64 --draft-min 4" in command)
    # (#21) the key reaches llama-server in a file only its owner reads, never in argv (`ps`),
    # the pid file, the log, halo's output or `serve status --json`
    assert "--reasoning-budget 0 --api-key-file " in command and "s3cret" not in done.stdout + done.stderr
    key_file = Path(command.split("--api-key-file ")[1].split()[0])
    assert key_file.read_text() == "s3cret\n" and key_file.stat().st_mode & 0o777 == 0o600
    assert command.endswith("--temp 0")
    assert chat(port).status_code == 401
    reply = chat(port, "s3cret")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].strip()
    status = halo("serve", "status", "--json")
    (info,) = [s for s in json.loads(status.stdout) if s["port"] == port]
    seen = [status.stdout, Path(info["pid_file"]).read_text(), Path(info["log"]).read_text(),
            Path(f"/proc/{info['pid']}/cmdline").read_bytes().decode()]
    assert not [text for text in seen if "s3cret" in text]
    assert halo("serve", "stop", "--port", str(port)).returncode == 0
    assert not key_file.exists()


def test_presets_name_catalog_models(halo):
    from halo_core import list_models

    catalog = {m.name for m in list_models()}
    presets = load_presets()
    assert {"daily", "coding", "complex"} <= set(presets)
    assert presets["daily"].model == "qwen3.5-35b-a3b-q4"
    assert presets["coding"].model == "qwen3-coder-30b-a3b-q6" and presets["coding"].parallel == 2
    assert presets["complex"].model == "qwen3-coder-next-q3"
    for preset in presets.values():
        assert preset.model in catalog, preset
    done = halo("serve", "--preset", "nope")
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: unknown preset 'nope' (known: apex, coding, complex, daily)"


def test_user_preset_on_a_toolbox_backend(halo, home, toolbox, smoke_model, cleanup):
    home.mkdir(parents=True)
    (home / "serve-presets.ini").write_text(
        f"[tiny]\ndescription = smoke\nmodel = {smoke_model.path}\nctx = 2048\nparallel = 2\n"
        "backend = rocm-7.2.1\n")
    port = free_port()
    done = halo("serve", "--preset", "tiny", "--port", str(port), "--detach")
    assert done.returncode == 0, done.stderr
    assert chat(port).status_code == 200
    [call] = [c for c in map(json.loads, toolbox.read_text().splitlines()) if "--help" not in c["argv"]]
    assert call["container"] == "llama-rocm-7.2.1"
    argv = call["argv"]
    assert argv[:5] == ["env", "ROCBLAS_USE_HIPBLASLT=1", "bash",
                        halo_toolbox.host_path(halo_toolbox.WATCHDOG), "/usr/local/bin/llama-server"]
    assert argv[argv.index("-m") + 1] == halo_toolbox.host_path(smoke_model.path)
    assert argv[argv.index("-np") + 1] == "2" and argv[argv.index("-ub") + 1] == "2048"
    [info] = read_pid_files()
    assert info.backend == "rocm-7.2.1"


def test_flush(halo, home, toolbox, smoke_model, tmp_path, cleanup):
    root = strix_halo(tmp_path / "root")
    write(root, "proc/sys/vm/drop_caches", "0\n")
    podman_log = tmp_path / "podman.log"
    write_tool(tmp_path / "shim-bin" / "podman", f'echo "$@" >> {podman_log}\n')
    port = free_port()
    done = halo("serve", str(smoke_model.path), "--backend", "vulkan-radv", "--port", str(port),
                "-c", "2048", "--detach")
    assert done.returncode == 0, done.stderr
    [server] = read_pid_files()
    # a pid file whose pid now runs something else (this test): never signalled
    me = ProcessInfo(kind="bench", pid=os.getpid(), start_ticks=(start_ticks(os.getpid()) or 0) + 1,
                     argv=["x"], backend="native", log="",
                     started="2999-01-01T00:00:00+00:00", pid_file=str(home / "run" / "bench-1.json"))
    # as an older halo wrote it, with a "container" key: still read
    write_json(Path(me.pid_file), {**to_dict(me), "container": None})

    done = halo("flush", "--root", str(root))
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"stopped server pid {server.pid} (port {port})",
        f"already gone: bench pid {os.getpid()}",
        "container llama-vulkan-radv: stopped",
        "page cache: dropped",
        "GPU memory in use (card1): VRAM 98 MiB, GTT 21 MiB",
    ]
    assert start_ticks(server.pid) is None
    # (the run's provenance asked it about the container and its image too)
    assert [ln for ln in podman_log.read_text().splitlines() if not ln.startswith(
        ("container inspect", "image inspect"))] == ["stop llama-vulkan-radv"]
    assert (root / "proc/sys/vm/drop_caches").read_text() == "3\n"
    assert list((home / "run").glob("*.json")) == []
    done = halo("flush", "--root", str(root), "--json")
    report = json.loads(done.stdout)
    assert (report["stopped"], report["released"]) == ([], [])
    [gpu] = report["gpu"]
    assert (gpu["card"], gpu["vram_used"], gpu["gtt_used"]) == ("card1", 98 << 20, 21 << 20)


def test_flush_asks_each_backend_once_and_survives_a_broken_one(home, tmp_path):
    calls = []

    class Releasing(Backend):
        def __init__(self, name, outcome):
            self.name, self.outcome = name, outcome

        def availability(self):
            return Availability(True)

        def command(self, tool):
            return ToolCommand([tool])

        def release(self):
            calls.append(self.name)
            if isinstance(self.outcome, Exception):
                raise self.outcome
            return self.outcome

    @hookimpl
    def register_backends(register):
        for name, outcome in (("quiet", ""), ("box", "container box: stopped"),
                              ("buggy", RuntimeError("podman exploded"))):
            register(Releasing(name, outcome))

    host = PluginHost()
    host.register(types.SimpleNamespace(register_backends=register_backends), "releasing")
    for n, backend in enumerate(("box,quiet", "buggy", "box", "gone")):  # stale records
        info = ProcessInfo(kind="bench", pid=os.getpid(), start_ticks=0, argv=["x"],
                           backend=backend, log="", started=f"2999-01-0{n + 1}",
                           pid_file=str(home / "run" / f"bench-{n}.json"))
        write_pid_file(info)
    report = flush_memory(tmp_path, host=host)
    assert len(report.stale) == 4 and report.stopped == ()
    assert calls == ["box", "quiet", "buggy"]  # each once; "gone" is not registered: nothing
    assert report.released == ("container box: stopped", "buggy: release failed: podman exploded")
    write_pid_file(info)
    assert flush_memory(tmp_path, release=False, host=host).released == () and len(calls) == 3


def test_foreground_server_that_dies_exits_1(smoke_model, cleanup):
    proc, _seen = serve_foreground(smoke_model.path, free_port())
    try:
        [info] = read_pid_files()
        os.kill(info.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == 1
        err = proc.stderr.read()
        assert "llama-server log (last lines):" in err
        assert err.strip().splitlines()[-1].startswith("Error: llama-server was killed by SIGKILL: ")
        assert read_pid_files() == []
    finally:
        proc.kill()
        proc.wait()


def test_flush_stops_a_running_bench(halo, home, toolbox, smoke_model, tmp_path):
    root = strix_halo(tmp_path / "root")
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "bench", "run", "--backend",
                             "rocm-7.2.1", "--model", str(smoke_model.path), "--pp", "16",
                             "--tg", "4", "--reps", "100000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: toolbox.exists() and any(
            "--help" not in line for line in toolbox.read_text().splitlines()),
            120, "the bench never ran through the toolbox", interval=0.2)
        [info] = read_pid_files()
        assert (info.kind, info.pid, info.backend) == ("bench", proc.pid, "rocm-7.2.1")
        # a bench is a halo process, not a server with port 0
        assert type(info) is ProcessInfo and "port" not in json.loads(Path(info.pid_file).read_text())
        done = halo("flush", "--root", str(root), "--keep-containers")
        assert done.returncode == 0, done.stderr
        assert done.stdout.splitlines()[0] == f"stopped bench pid {proc.pid}"
        assert proc.wait(timeout=30) == 1
        [run_dir] = (home / "runs" / "bench").iterdir()
        state = json.loads((run_dir / "run.json").read_text())
        assert (state["status"], state["error"]) == ("interrupted", "interrupted by the user")
        assert list((home / "run").glob("*.json")) == []
    finally:
        proc.kill()
        proc.wait()
