"""llama.cpp RPC workers: `halo rpc serve/status/stop`, a real split bench and a real completion
over two real workers on loopback ports, a worker that dies mid-bench or is down at start, a
protocol mismatch caught before a run, `halo models fit --rpc` and `halo flush`."""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import threading
from pathlib import Path

import httpx
import pytest

from conftest import wait_until
from halo_core import BenchSpec, run_bench
from halo_core.llama import rpc
from halo_core.llama.process import servers, start_ticks, stop_process, stop_servers

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def rpc_build(llama_bin_dir) -> Path:
    """The test build must have the RPC backend: `make test` builds llama.cpp with cpu,rpc."""
    if not any((llama_bin_dir / tool).is_file() for tool in rpc.WORKER_TOOLS):
        pytest.fail(f"no {' / '.join(rpc.WORKER_TOOLS)} in {llama_bin_dir}: this llama.cpp was built "
                    "without -DGGML_RPC=ON (make test builds it with ACCEL=cpu,rpc)")
    return llama_bin_dir


def start(port: int, **fields) -> rpc.Server:
    return rpc.start_worker(rpc.WorkerSpec(port=port, threads=1, **fields), detach=True)


@pytest.fixture
def two_workers(rpc_build, home, monkeypatch):
    """Two real workers on free loopback ports (a fresh $HALO_HOME), stopped at the end. They
    log what they are asked to do (GGML_RPC_DEBUG), so a test can see where the model went."""
    monkeypatch.setenv("GGML_RPC_DEBUG", "1")
    ports = [free_port(), free_port()]
    try:
        for port in ports:
            start(port)
        yield ports
    finally:
        stop_servers()
        rpc.stop_workers()


def allocated(port: int) -> int:
    """Bytes of buffers the worker on `port` allocated for its clients, from its log."""
    log = Path(os.environ["HALO_HOME"], "run", f"rpc-{port}.log").read_text()
    return sum(int(size) for size in re.findall(r"\[alloc_buffer\] device: \d+, size: (\d+) ->", log))


def endpoints(ports) -> str:
    return ",".join(f"127.0.0.1:{p}" for p in ports)


class OtherBuildWorker:
    """A worker of another llama.cpp build, which cannot be built here as well: it answers
    HELLO with `version` and the query commands in protocol 7's layout; `close_at_hello` does
    what a protocol-3 worker does with a protocol-7 HELLO (its size is wrong): hangs up."""

    def __init__(self, version=(7, 9, 0), close_at_hello=False):
        self.version, self.close_at_hello = version, close_at_hello
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                self._serve(conn)

    def _serve(self, conn):
        def recv(n):
            data = b""
            while len(data) < n:
                chunk = conn.recv(n - len(data))
                if not chunk:
                    raise ConnectionError
                data += chunk
            return data

        answers = {14: bytes([*self.version, 0]) + bytes(24), 15: struct.pack("<I", 1),
                   11: struct.pack("<QQ", 1 << 30, 2 << 30), 1: struct.pack("<Q", 32)}
        try:
            while True:
                cmd, size = struct.unpack("<BQ", recv(9))
                recv(size)
                if self.close_at_hello or cmd not in answers:
                    return
                conn.sendall(struct.pack("<Q", len(answers[cmd])) + answers[cmd])
        except (ConnectionError, OSError):
            return

    def close(self):
        self.sock.close()


def test_worker_serve_status_stop(halo, rpc_build, home):
    port, nobody = free_port(), free_port()
    done = halo("rpc", "serve", "--port", str(port), "--threads", "1", "--detach")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith(f"RPC worker on native: 127.0.0.1:{port} (pid ")
    command = lines[1].removeprefix("command: ").split()
    assert Path(command[0]).name in rpc.WORKER_TOOLS
    assert command[1:] == ["--host", "127.0.0.1", "--port", str(port), "--threads", "1"]
    assert lines[-1] == f"detached; stop it with: halo rpc stop --port {port}"

    status = halo("rpc", "status", "--json")  # the workers halo started
    assert status.returncode == 0, status.stderr
    [worker] = json.loads(status.stdout)
    assert (worker["endpoint"], worker["state"], worker["error"]) == (f"127.0.0.1:{port}", "up", "")
    assert worker["version"].startswith(f"{rpc.PROTOCOL_MAJOR}.")
    [device] = worker["devices"]
    assert device["name"] == "RPC0" and device["index"] == 0
    assert 0 < device["free"] <= device["total"]
    assert worker["rtt_ms"] > 0 and worker["bandwidth"] > 0 and worker["bandwidth_note"] == ""

    # a worker that is down is named; the table still shows the one that is up
    both = halo("rpc", "status", f"127.0.0.1:{port},127.0.0.1:{nobody}", "--no-bandwidth")
    assert both.returncode == 1
    assert f"127.0.0.1:{nobody}: connection refused: no worker listens there" in both.stdout
    row = next(ln for ln in both.stdout.splitlines() if f"127.0.0.1:{port} " in ln)
    assert " up " in row and "RPC0" in row and "not measured" in row
    assert both.stderr.strip() == (f"Error: 1 of 2 RPC worker(s) not usable: 127.0.0.1:{nobody} down: "
                                   "connection refused: no worker listens there")

    pid = rpc.rpc_workers()[0][0].pid
    again = halo("rpc", "serve", "--port", str(port))
    assert again.returncode == 1
    assert again.stderr.strip() == (f"Error: an RPC worker halo started (pid {pid}) already uses port "
                                    f"{port}: halo rpc stop --port {port}")
    stopped = halo("rpc", "stop", "--port", str(port))
    assert stopped.stdout == f"stopped pid {pid} (RPC worker 127.0.0.1:{port}, native)\n"
    assert start_ticks(pid) is None
    assert halo("rpc", "status").stdout == "no RPC workers started by halo (give HOST:PORT,... to check others)\n"
    assert halo("rpc", "stop").stdout == "no running RPC worker started by halo\n"


def test_bind_rules_and_bad_input(halo, rpc_build, home):
    done = halo("rpc", "serve", "--host", "0.0.0.0", "--port", "50999")
    assert done.returncode == 2
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("Error: --host 0.0.0.0 exposes the worker beyond this machine, and "
                              "llama.cpp's RPC has no authentication")
    assert "give --insecure to bind anyway" in message and "port port=50999 protocol=tcp" in message
    assert rpc.rpc_workers() == []
    for extra in (["--host", "0.0.0.0"], ["-H", "0.0.0.0"], ["-p", "50999"]):
        done = halo("rpc", "serve", "--", *extra)
        assert done.returncode == 2 and "after -- would override what halo checks and records" in done.stderr
    assert rpc.rpc_workers() == []

    port = free_port()
    done = halo("rpc", "serve", "--host", "0.0.0.0", "--port", str(port), "--insecure", "--detach")
    try:
        assert done.returncode == 0, done.stderr
        assert "warning: llama.cpp's RPC has no authentication" in done.stderr
        assert "private link" in done.stderr and "firewall" in done.stderr
        assert rpc.probe(f"127.0.0.1:{port}").state == "up"
    finally:
        rpc.stop_workers()

    for bad, why in (("nonsense", "bad RPC worker 'nonsense': give HOST:PORT"),
                     ("[::1]:50052", "bad RPC worker '[::1]:50052'"),
                     ("a:1,a:1", "RPC worker a:1 is named twice")):
        done = halo("bench", "run", "--rpc", bad)
        assert done.returncode == 1 and done.stderr.startswith(f"Error: {why}"), done.stderr
    done = halo("bench", "run", "--rpc", "127.0.0.1:1", "--tensor-split", "1,x")
    assert done.returncode == 1
    assert done.stderr.strip() == "Error: --tensor-split takes proportions such as 3,1, not '1,x'"
    done = halo("rpc", "serve", "--port", str(free_port()), "--mem", "512")
    assert done.returncode == 1
    assert "has no --mem: newer llama.cpp builds expose each device's own memory" in done.stderr
    # backend options reach the worker's backend, as they reach halo serve's
    done = halo("rpc", "serve", "--port", str(free_port()), "--llama-cpp-dir", "/nonexistent")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: backend 'native' is unavailable: llama-bench not found in "
                                  "llama_cpp_dir=/nonexistent"), done.stderr
    done = halo("rpc", "serve", "--port", str(free_port()), "--backend-opt", "nope=1")
    assert done.returncode == 1 and done.stderr.startswith("Error: no selected backend takes the option 'nope'")
    assert rpc.rpc_workers() == []


def test_a_real_split_bench_over_two_workers(halo, smoke_model, two_workers):
    eps = endpoints(two_workers)
    done = halo("bench", "run", "-m", str(smoke_model.path), "--pp", "64", "--tg", "16", "--reps", "2",
                "--rpc", eps, "--tensor-split", "1,1", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "complete" and [r["test"] for r in out["results"]] == ["pp64", "tg16"]
    assert all(r["avg_ts"] > 0 and "RPC" in r["ggml_backends"] for r in out["results"])
    assert out["spec"]["rpc"] == eps.split(",") and out["spec"]["tensor_split"] == [1.0, 1.0]
    run_dir = Path(out["path"])
    argv = json.loads((run_dir / "run.json").read_text())["commands"][0]["argv"]
    assert argv[argv.index("--rpc") + 1] == eps and argv[argv.index("-ts") + 1] == "1/1"
    system = json.loads((run_dir / "system.json").read_text())
    assert [w["endpoint"] for w in system["rpc"]] == eps.split(",")
    assert [d["name"] for w in system["rpc"] for d in w["devices"]] == ["RPC0", "RPC1"]
    assert all(w["state"] == "up" and w["devices"][0]["total"] > 0 for w in system["rpc"])
    for line in (run_dir / "raw.jsonl").read_text().splitlines():  # llama-bench's own record
        record = json.loads(line)
        assert record["gpu_info"] == eps.replace(",", ", ") and record["tensor_split"] == "1.00/1.00"
    for port in two_workers:  # each worker held about half of the weights
        assert allocated(port) > smoke_model.size * 0.3


def test_a_real_completion_over_two_workers(halo, smoke_model, two_workers):
    eps = endpoints(two_workers)
    port = free_port()
    done = halo("serve", str(smoke_model.path), "--port", str(port), "-c", "2048", "--rpc", eps,
                "--detach")
    assert done.returncode == 0, done.stderr
    command = done.stdout.splitlines()[1]
    assert f"--rpc {eps}" in command
    assert done.stdout.splitlines()[3].startswith(f"RPC worker 127.0.0.1:{two_workers[0]} (protocol 7.")
    reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                       json={"messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 8})
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].strip()
    for worker_port in two_workers:  # each worker holds about half of the weights
        assert allocated(worker_port) > smoke_model.size * 0.3
    [(info, _alive)] = servers()
    assert [w.endpoint for w in info.rpc] == eps.split(",")

    # the server holds both workers: a worker serves one client at a time
    status = halo("rpc", "status", eps, "--timeout", "1", "--json")
    assert status.returncode == 0, status.stderr
    assert [w["state"] for w in json.loads(status.stdout)] == ["busy", "busy"]
    busy = halo("bench", "run", "-m", str(smoke_model.path), "--rpc", eps)
    assert busy.returncode == 1
    assert busy.stderr.startswith(f"Error: RPC worker 127.0.0.1:{two_workers[0]} is busy: connected, "
                                  "but no answer to HELLO within 5s: a worker serves one client at a time")


def test_worker_dying_mid_bench_fails_its_cells_and_the_run_goes_on(smoke_model, two_workers):
    a, b = two_workers
    events = []

    def worker_b():
        return next(info for info, _ in rpc.rpc_workers() if info.port == b)

    def on_result(result):
        events.append(result.test)
        if len(events) == 1:  # after pp of the first group: worker b dies under llama-bench
            stop_process(worker_b())

    def on_failure(failure):
        events.append(f"failed {failure.kv} {failure.test}")
        if len(events) == 4:  # the second group failed without llama-bench: b comes back
            start(b)

    spec = BenchSpec(models=(str(smoke_model.path),), pp=64, tg=64, reps=3, tag="rpc-fault",
                     kv_types=("f16", "q8_0", "q4_0"), rpc=(f"127.0.0.1:{a}", f"127.0.0.1:{b}"))
    run = run_bench(spec, on_result=on_result, on_failure=on_failure)
    assert events == ["pp64", "failed f16 tg64", "failed q8_0 pp64", "failed q8_0 tg64", "pp64", "tg64"]
    assert run.status == "partial"
    died, down, _ = run.failures
    # llama-bench aborts (or dies of SIGPIPE writing to the closed socket); halo names the worker
    assert died.error.startswith("llama-bench was killed by SIG")
    assert "(SmolLM2-135M-Instruct.Q4_1 on native)" in died.error
    assert died.error.endswith(f"; RPC worker 127.0.0.1:{b} is down: connection refused: no worker listens there")
    assert down.error == f"RPC worker 127.0.0.1:{b} is down: connection refused: no worker listens there"
    commands = json.loads((run.path / "run.json").read_text())["commands"]
    assert len(commands) == 2  # the group with a worker down never started llama-bench
    assert [r.kv for r in run.results] == ["f16", "q4_0", "q4_0"]


def test_worker_down_at_start_is_named(halo, smoke_model, rpc_build, home):
    port = free_port()
    done = halo("bench", "run", "-m", str(smoke_model.path), "--rpc", f"127.0.0.1:{port}")
    assert done.returncode == 1
    assert done.stderr.strip() == (f"Error: RPC worker 127.0.0.1:{port} is down: connection refused: "
                                   "no worker listens there")
    assert not (home / "runs" / "bench").exists()  # nothing ran
    done = halo("serve", str(smoke_model.path), "--port", str(free_port()), "--rpc", f"127.0.0.1:{port}")
    assert done.returncode == 1 and done.stderr.strip().endswith(
        f"Error: RPC worker 127.0.0.1:{port} is down: connection refused: no worker listens there")


def test_protocol_mismatch_is_caught_before_a_run(halo, smoke_model, rpc_build, home):
    newer = OtherBuildWorker(version=(7, 9, 0))
    older = OtherBuildWorker(close_at_hello=True)
    try:
        worker = rpc.probe(newer.endpoint)
        assert (worker.state, worker.version) == ("up", "7.9.0")
        assert [(d.name, d.free, d.total) for d in worker.devices] == [("RPC0", 1 << 30, 2 << 30)]
        done = halo("bench", "run", "-m", str(smoke_model.path), "--rpc", newer.endpoint)
        assert done.returncode == 1
        # the real llama-bench's own handshake refuses it, before any bench runs
        assert done.stderr.strip() == (
            f"Error: RPC worker {newer.endpoint} (protocol 7.9.0) cannot be used by this llama-bench: "
            "RPC server version mismatch: 7.9.0; run the same llama.cpp build on every box")
        assert not (home / "runs" / "bench").exists()

        old = rpc.probe(older.endpoint)
        assert old.state == "incompatible"
        assert old.error.startswith("closed the connection at HELLO (the worker closed the connection): "
                                    "it speaks another RPC protocol than 7.x")
        done = halo("serve", str(smoke_model.path), "--port", str(free_port()), "--rpc", older.endpoint)
        assert done.returncode == 1
        assert done.stderr.strip().endswith(f"Error: RPC worker {older.endpoint} is incompatible: {old.error}")
    finally:
        newer.close()
        older.close()


def test_fit_answers_for_the_cluster(halo, smoke_model, two_workers, tmp_path):
    root = tmp_path / "root"  # an amdgpu box far too small for the smoke model
    (root / "proc").mkdir(parents=True)
    (root / "proc/meminfo").write_text("MemTotal:       65536 kB\n")
    for name, value in (("mem_info_vram_total", 16 << 20), ("mem_info_gtt_total", 32 << 20)):
        (root / "sys/class/drm/card1/device").mkdir(parents=True, exist_ok=True)
        (root / "sys/class/drm/card1/device" / name).write_text(f"{value}\n")
    alone = halo("models", "fit", str(smoke_model.path), "--ctx", "2048", "--sysroot", str(root), "--json")
    assert alone.returncode == 3
    report = json.loads(alone.stdout)
    need = -(-report["total_bytes"] // (48 << 20))
    assert report["boxes"] == need >= 3 and report["workers"] == [] and report["cluster_bytes"] is None
    text = halo("models", "fit", str(smoke_model.path), "--ctx", "2048", "--sysroot", str(root))
    assert text.stdout.splitlines()[-1] == (f"boxes     {need} like this one (50.3 MB each), joined with "
                                            "`halo rpc serve` on the others and --rpc")

    eps = endpoints(two_workers)
    cluster = halo("models", "fit", str(smoke_model.path), "--ctx", "2048", "--sysroot", str(root), "--rpc", eps)
    assert cluster.returncode == 0, cluster.stderr
    workers = rpc.probe_workers(eps.split(","))
    total = sum(w.total_memory for w in workers)  # loopback workers: this machine's memory
    line = next(ln for ln in cluster.stdout.splitlines() if ln.startswith("total"))
    assert f" in the cluster: 127.0.0.1:{two_workers[0]} " in line and " + 127.0.0.1:" in line
    assert "this machine" not in line
    assert cluster.stdout.splitlines()[-2].startswith("fits      yes, ")
    as_json = json.loads(halo("models", "fit", str(smoke_model.path), "--ctx", "2048", "--sysroot", str(root),
                              "--rpc", eps, "--json").stdout)
    assert as_json["cluster_bytes"] == pytest.approx(total, rel=0.01)
    assert [w["endpoint"] for w in as_json["workers"]] == eps.split(",")
    down = halo("models", "fit", str(smoke_model.path), "--rpc", f"127.0.0.1:{free_port()}")
    assert down.returncode == 1 and "is down: connection refused" in down.stderr


def test_flush_stops_workers(halo, rpc_build, home, tmp_path):
    port = free_port()
    worker = start(port)
    root = tmp_path / "root"
    (root / "proc").mkdir(parents=True)
    done = halo("flush", "--root", str(root), "--keep-containers")
    assert done.returncode == 0, done.stderr
    assert f"stopped rpc pid {worker.info.pid} (port {port})" in done.stdout.splitlines()
    wait_until(lambda: start_ticks(worker.info.pid) is None, 10, "the worker did not stop")
    assert rpc.rpc_workers() == []
