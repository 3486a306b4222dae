"""The toolbox backends through the real `toolbox` and podman, in containers of a local image
with halo's llama.cpp build (tests/toolbox_real.py builds it; skipped, saying why, where real
toolbox cannot run). The model lives under $HOME, as a toolbox user's does."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import pytest

import halo_toolbox
from conftest import wait_until
from halo_core.llama.process import free_port, read_pid_files, start_ticks
from toolbox_real import CONTAINERS, home_model, real_toolbox, real_toolbox_session  # noqa: F401

pytestmark = pytest.mark.slow
RADV, ROCM = CONTAINERS


def one_line_error(done: subprocess.CompletedProcess, progress: int = 0) -> str:
    """The one error line (after `progress` lines of progress), exit 1, no traceback."""
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == progress + 1 and lines[-1].startswith("Error: "), done.stderr
    return lines[-1]


def test_toolbox_list_of_the_real_tool(real_toolbox):
    found = {c.name: c for c in halo_toolbox.list_containers()}
    assert set(found) == set(CONTAINERS)
    for name in CONTAINERS:
        assert real_toolbox.container_id(name).startswith(found[name].id)
        assert len(found[name].id) == 12
        assert found[name].image == real_toolbox.image
        assert found[name].status in ("created", "running", "exited", "configured")
        assert found[name].created  # "Less than a second ago", "2 minutes ago": spaces inside
    # the table with its images section first, as `toolbox list` prints it
    done = real_toolbox.toolbox("list")
    assert done.stdout.startswith("IMAGE ID")
    assert {c.name for c in halo_toolbox.parse_list(done.stdout)} == set(CONTAINERS)


def test_backends_lists_the_containers_with_their_build(halo, real_toolbox):
    done = halo("backends", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    for name in ("vulkan-radv", "rocm-7.2.4"):
        assert rows[name]["available"], rows[name]
        # the build inside the image is the one halo built, copied in
        assert rows[name]["llama_cpp"] == rows["native"]["llama_cpp"]
        assert rows[name]["llama_cpp"].startswith("0.6.0-dev (build ")
    assert rows["vulkan-amdvlk"]["available"] is False
    done = halo("backends")
    [line] = [ln for ln in done.stdout.splitlines() if ln.startswith("│ rocm-7.2.4 ")]
    assert rows["native"]["llama_cpp"] in line


def test_bench_runs_inside_each_family(halo, real_toolbox, home_model):
    done = halo("bench", "run", "--backend", "vulkan-radv,rocm-7.2.4", "--model", str(home_model),
                "--pp", "16", "--tg", "4", "--reps", "1", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "complete"
    assert sorted((r["backend"], r["test"]) for r in run["results"]) == [
        ("rocm-7.2.4", "pp16"), ("rocm-7.2.4", "tg4"), ("vulkan-radv", "pp16"), ("vulkan-radv", "tg4")]
    path = Path(run["path"])
    log = (path / "bench.log").read_text()
    for container, binary, env in ((RADV, "/usr/sbin/llama-bench", "AMD_VULKAN_ICD=RADV"),
                                   (ROCM, "/usr/local/bin/llama-bench", "ROCBLAS_USE_HIPBLASLT=1")):
        [header] = [ln for ln in log.splitlines()
                    if ln.startswith("=== ") and f" -c {container} " in ln]
        argv = header.split()
        # the model under $HOME at the same path inside; the family's binary and env
        assert argv[argv.index("-m") + 1] == str(home_model)
        assert binary in argv and env in argv
    system = json.loads((path / "system.json").read_text())
    for name, container in (("vulkan-radv", RADV), ("rocm-7.2.4", ROCM)):
        facts = system["backends"][name]
        image_id = real_toolbox.podman("container", "inspect", "--format", "{{.Image}}",
                                       container).stdout.strip()
        digest = real_toolbox.podman("image", "inspect", "--format", "{{.Digest}}",
                                     image_id).stdout.strip()
        assert (facts["container"], facts["image"]) == (container, real_toolbox.image)
        assert (facts["image_id"], facts["image_digest"]) == (image_id, digest)
        assert digest.startswith("sha256:")
        assert real_toolbox.running(container, "llama-bench") == []


def serve(halo, model: Path, backend: str) -> int:
    port = free_port()
    done = halo("serve", str(model), "--backend", backend, "--port", str(port), "-c", "2048",
                "--detach")
    assert done.returncode == 0, done.stderr
    reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=60,
                       json={"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 4})
    assert reply.status_code == 200
    return port


def test_serve_then_stop_leaves_nothing_inside(halo, home, real_toolbox, home_model):
    port = serve(halo, home_model, "rocm-7.2.4")
    [server] = real_toolbox.running(ROCM, "llama-server")
    assert server[0] == "/usr/local/bin/llama-server" and server[server.index("-m") + 1] == str(home_model)
    [pid] = real_toolbox.pids(ROCM, "llama-server")
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    # the family's variables reach it; halo's own environment does not (toolbox forwards a few)
    assert environ["ROCBLAS_USE_HIPBLASLT"] == "1" and "HALO_HOME" not in environ
    [info] = read_pid_files()
    done = halo("serve", "stop", "--port", str(port))
    assert done.returncode == 0, done.stderr
    assert start_ticks(info.pid) is None
    # `toolbox run` would have left it serving: the watchdog stopped it when halo let go
    wait_until(lambda: not real_toolbox.running(ROCM, "llama-server"), 15,
               "llama-server still runs in the container after halo serve stop")
    assert real_toolbox.state(ROCM) == "running"  # stop is for the server, not the container


def test_flush_stops_the_server_inside_and_releases_the_container(halo, home, real_toolbox,
                                                                  home_model, tmp_path):
    port = serve(halo, home_model, "vulkan-radv")
    [info] = read_pid_files()
    root = tmp_path / "root"
    (root / "proc/sys/vm").mkdir(parents=True)
    (root / "proc/sys/vm/drop_caches").write_text("0\n")
    done = halo("flush", "--root", str(root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == [f"stopped server pid {info.pid} (port {port})",
                         f"container {RADV}: stopped"]
    assert real_toolbox.running(RADV, "llama-server") == []
    assert real_toolbox.state(RADV) == "exited"
    # a sane state: a stopped container is started again by the next tool
    done = halo("backends", "--json")
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["vulkan-radv"]["llama_cpp"] == rows["native"]["llama_cpp"]
    assert real_toolbox.state(RADV) == "running"


def test_a_killed_halo_leaves_nothing_inside(home, real_toolbox, home_model):
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "bench", "run", "--backend",
                             "vulkan-radv", "--model", str(home_model), "--pp", "16", "--tg", "4",
                             "--reps", "100000"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: real_toolbox.running(RADV, "llama-bench"), 60,
                   "llama-bench never ran in the container", interval=0.2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # halo's tether dies with it; the pipe it held closes and the watchdog stops the bench
        wait_until(lambda: not real_toolbox.running(RADV, "llama-bench"), 15,
                   "llama-bench still runs in the container after halo was killed")
    finally:
        proc.kill()
        proc.wait()


def test_missing_container_one_line(halo, real_toolbox, home_model):
    line = one_line_error(halo("bench", "run", "--backend", "vulkan-amdvlk", "--model",
                               str(home_model)))
    assert line == ("Error: backend 'vulkan-amdvlk' is unavailable: container llama-vulkan-amdvlk "
                    "missing: create it with `toolbox create llama-vulkan-amdvlk --image "
                    "docker.io/kyuz0/amd-strix-halo-toolboxes:vulkan-amdvlk`")


def test_broken_container_one_line(halo, real_toolbox, home_model):
    # a toolbox container whose start fails (its entry point is not in the image)
    real_toolbox.podman("create", "--label", "com.github.containers.toolbox=true", "--name",
                        "llama-vulkan-broken", "--entrypoint", "/no/such/entrypoint",
                        real_toolbox.image)
    line = one_line_error(halo("bench", "run", "--backend", "vulkan-broken", "--model",
                               str(home_model)))
    assert line.startswith("Error: llama-bench --help printed no options (exit 125): halo: "
                           "container llama-vulkan-broken does not start: ")
    assert "/no/such/entrypoint" in line and "unable to start container \"" not in line
    # one removed after halo listed it: what the tether says after toolbox's three lines
    done = subprocess.run([sys.executable, str(halo_toolbox.TETHER), "llama-vulkan-gone", "toolbox",
                           "run", "-c", "llama-vulkan-gone", "--", "true"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 125
    assert done.stderr.strip().splitlines()[-1] == (
        "halo: container llama-vulkan-gone is gone (inspecting object: no such container "
        "llama-vulkan-gone): create it again with `toolbox create llama-vulkan-gone --image IMAGE`")
    # halo serve says what it does first: resolving the model, looking for a profile
    line = one_line_error(halo("serve", str(home_model), "--backend", "vulkan-broken"), progress=2)
    assert "container llama-vulkan-broken does not start: " in line


def test_image_without_the_tools_one_line(halo, home, real_toolbox, home_model):
    # a family whose BIN_DIR the image does not have: `toolbox run` alone would exit 0 here
    # (its 127 means "command not found" only when the command it ran is missing)
    home.mkdir(parents=True)
    (home / "toolboxes.conf").write_text("family|rocm-odd|llama-rocm-7.2.4|/opt/none|2048|\n")
    line = one_line_error(halo("bench", "run", "--backend", "rocm-7.2.4", "--model",
                               str(home_model)))
    assert line == ("Error: llama-bench --help printed no options (exit 1): halo: "
                    "/opt/none/llama-bench not found in this container")


def _toolbox_run(*argv: str, cwd: str = "/", env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["toolbox", "run", "-c", RADV, "--", *argv], capture_output=True,
                          text=True, cwd=cwd, env={**os.environ, **(env or {})}, timeout=120,
                          stdin=subprocess.DEVNULL)


def _last(text: str) -> str:
    return text.strip().splitlines()[-1] if text.strip() else ""


@pytest.mark.parametrize("kind", ["shim", "real"])
def test_the_shim_behaves_as_the_real_tool(kind, request, tmp_path):
    """What tests/toolbox_shim.py does is what toolbox 0.0.99.3 was seen to do: asked the same,
    both answer the same."""
    request.getfixturevalue("toolbox" if kind == "shim" else "real_toolbox")
    home = os.path.expanduser("~")
    done = _toolbox_run("sh", "-c", "exit 3")
    assert done.returncode == 3
    # toolbox's own codes: 127 means "not found" only when the command it ran is missing
    assert _toolbox_run("sh", "-c", "exit 127").returncode == 0
    done = _toolbox_run("/no/such/tool")
    assert (done.returncode, _last(done.stderr)) == (
        127, f"Error: command /no/such/tool not found in container {RADV}")
    done = _toolbox_run("sh", "-c", "exit 126")
    assert (done.returncode, _last(done.stderr)) == (
        126, f"Error: failed to invoke command sh in container {RADV}")
    done = _toolbox_run("sh", "-c", "exit 125")
    assert (done.returncode, _last(done.stderr)) == (
        125, f"Error: failed to invoke 'podman exec' in container {RADV}")
    done = subprocess.run(["toolbox", "run", "-c", "nosuch", "--", "true"], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("Error: container nosuch not found")
    # only the variables toolbox forwards
    done = _toolbox_run("sh", "-c", 'echo "${HALO_PROBE-unset} $LANG $HOME"',
                        env={"HALO_PROBE": "1", "LANG": "C.UTF-8"})
    assert done.stdout.split() == ["unset", "C.UTF-8", home]
    # the host's working directory where the container has it, else $HOME
    assert _toolbox_run("pwd").stdout.strip() == "/"
    assert _toolbox_run("pwd", cwd=str(tmp_path)).stdout.strip() == str(tmp_path)  # /tmp is shared
    elsewhere = tempfile.mkdtemp(dir="/var/tmp", prefix="halo-probe-")  # /var/tmp is the image's
    try:
        done = _toolbox_run("pwd", cwd=elsewhere)
    finally:
        os.rmdir(elsewhere)
    assert done.stdout.strip() == home
    assert f"Error: directory {elsewhere} not found in container {RADV}\nUsing {home} instead." \
        in done.stderr
    # no signal reaches the command, whatever toolbox run and podman exec get; the end of
    # its stdin does, when its stdin ends or when podman exec dies
    probes = [("sleep", f"1000.{os.getpid()}{n}") for n in range(2)] + [
        ("sh", "-c", "cat >/dev/null", f"halo-probe-{os.getpid()}-{n}") for n in range(2)]
    started = []

    def alive(probe) -> bool:
        want = [a.encode() for a in probe]
        for entry in Path("/proc").iterdir():
            try:
                if entry.name.isdigit() and (
                        entry / "cmdline").read_bytes().split(b"\0")[:len(want)] == want:
                    return int(entry.name)
            except OSError:
                continue
        return False

    try:
        for probe in probes:
            started.append(subprocess.Popen(["toolbox", "run", "-c", RADV, "--", *probe],
                                            stdin=subprocess.PIPE, cwd="/", start_new_session=True))
        for probe in probes:
            wait_until(lambda: alive(probe), 30, f"{probe[0]} never started")
        sleep_term, sleep_kill, cat_pid, cat_group = started
        os.killpg(sleep_term.pid, signal.SIGTERM)
        os.killpg(sleep_kill.pid, signal.SIGKILL)
        os.kill(cat_pid.pid, signal.SIGTERM)  # toolbox run alone: its podman exec lives on
        os.killpg(cat_group.pid, signal.SIGKILL)  # and with it
        assert [p.wait(timeout=30) for p in started] == [-signal.SIGTERM, -signal.SIGKILL,
                                                           -signal.SIGTERM, -signal.SIGKILL]
        wait_until(lambda: not alive(probes[3]), 15, "cat outlived its podman exec")
        time.sleep(0.5)
        assert alive(probes[0]) and alive(probes[1]) and alive(probes[2])
        cat_pid.stdin.close()
        wait_until(lambda: not alive(probes[2]), 15, "cat outlived the end of its stdin")
    finally:
        for probe in probes:
            pid = alive(probe)
            if pid:
                os.kill(pid, signal.SIGKILL)
        for proc in started:
            proc.kill()
            proc.wait()
