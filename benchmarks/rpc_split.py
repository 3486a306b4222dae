"""One device alone vs the same model split over llama.cpp RPC workers, one worker per device.

For each configuration one llama-bench runs pp/tg at each depth (-d), and the script prints per
test the t/s of each and its ratio to the one-device run (below 1: what the split costs):

  one       the first device alone (-dev DEV0; on a CPU-only build: the CPU)
  local     both devices in one process, layer split without RPC (-dev DEV0/DEV1 -ts 1/1);
            only with two distinct GPUs: it separates the cost of splitting from that of RPC
  rpc       one ggml-rpc-server per device on loopback ports, llama-bench --rpc over them
            (-dev RPC0/RPC1 -ts 1/1): the two-box setup with a perfect network

Then a traffic pass runs llama-bench through a counting relay in front of each worker, twice
with different token counts, so the difference is what one token costs on the link (bytes
each way, and the round trips that wait for an answer) and the rest is the model load. With
those and a link's bandwidth and latency, docs/distributed.md works out what a real network
would cost.

    python benchmarks/rpc_split.py --llama-dir LLAMA_BIN_DIR --model MODEL.gguf \\
        [--devices CUDA0,CUDA1] [--depths 0,4096,16384] [--pp 512] [--tg 128] [--reps 3] \\
        [--threads N] [--json OUT.json]

--devices defaults to the first two GPUs llama-bench --list-devices shows, else CPU,CPU (two CPU
workers: only a test of the script and of RPC's overhead, since they share the cores). Needs
llama.cpp built with -DGGML_RPC=ON; uses nothing but the standard library.
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

# commands a worker answers (ggml-rpc.cpp, protocol 7): each is a round trip for the controller
ANSWERED = {0: "ALLOC_BUFFER", 1: "GET_ALIGNMENT", 2: "GET_MAX_SIZE", 3: "BUFFER_GET_BASE",
            7: "SET_TENSOR_HASH", 8: "GET_TENSOR", 9: "COPY_TENSOR", 11: "GET_DEVICE_MEMORY",
            13: "GET_ALLOC_SIZE", 14: "HELLO", 15: "DEVICE_COUNT"}


def tool(bin_dir: Path, *names: str) -> Path:
    for name in names:
        if (bin_dir / name).is_file():
            return bin_dir / name
    sys.exit(f"none of {', '.join(names)} in {bin_dir} (llama.cpp built with -DGGML_RPC=ON?)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def list_devices(bench: Path) -> list[str]:
    done = subprocess.run([str(bench), "--list-devices"], capture_output=True, text=True)
    return re.findall(r"^\s+(\S+): ", done.stdout + done.stderr, re.M)


class Worker:
    """ggml-rpc-server on a loopback port, showing one device."""

    def __init__(self, server: Path, device: str, threads: int | None, log: Path):
        self.port = free_port()
        argv = [str(server), "--host", "127.0.0.1", "--port", str(self.port), "--device", device]
        if threads:
            argv += ["--threads", str(threads)]
        self.log = open(log, "ab")
        self.proc = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the worker for {device} did not start (log: {log})")
                time.sleep(0.1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


class Relay:
    """A loopback port that forwards to a worker, counting bytes each way and the commands
    whose answer the controller waits for."""

    def __init__(self, target_port: int):
        self.target = target_port
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.up = self.down = self.round_trips = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> tuple[int, int, int]:
        counts = (self.up, self.down, self.round_trips)
        self.up = self.down = self.round_trips = 0
        return counts

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._requests, args=(client, server), daemon=True).start()
            threading.Thread(target=self._answers, args=(server, client), daemon=True).start()

    @staticmethod
    def _close(*socks: socket.socket) -> None:
        for sock in socks:  # shutdown first: a close alone does not wake the other thread's recv
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    @staticmethod
    def _read(sock: socket.socket, n: int) -> bytes:
        data = bytearray()
        while len(data) < n:
            chunk = sock.recv(min(n - len(data), 1 << 20))
            if not chunk:
                raise ConnectionError
            data += chunk
        return bytes(data)

    def _requests(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                head = self._read(src, 9)
                cmd, size = struct.unpack("<BQ", head)
                dst.sendall(head)
                left = size
                while left:
                    chunk = src.recv(min(left, 1 << 20))
                    if not chunk:
                        raise ConnectionError
                    dst.sendall(chunk)
                    left -= len(chunk)
                self.up += 9 + size
                self.round_trips += cmd in ANSWERED
        except OSError:
            pass
        finally:
            self._close(dst, src)

    def _answers(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(1 << 20):
                dst.sendall(chunk)
                self.down += len(chunk)
        except OSError:
            pass
        finally:
            self._close(dst, src)


def bench(argv: list[str], log: Path) -> dict[str, float]:
    """llama-bench -o jsonl -> {"pp512 @ d0": t/s, ...}."""
    with open(log, "ab") as err:
        err.write(f"=== {' '.join(argv)}\n".encode())
        err.flush()
        done = subprocess.run(argv, stdout=subprocess.PIPE, stderr=err, text=True)
    if done.returncode != 0:
        sys.exit(f"llama-bench failed (exit {done.returncode}); see {log}")
    out = {}
    for line in done.stdout.splitlines():
        rec = json.loads(line)
        kind = f"pp{rec['n_prompt']}" if rec["n_prompt"] else f"tg{rec['n_gen']}"
        out[f"{kind} @ d{rec.get('n_depth', 0)}"] = rec["avg_ts"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llama-dir", type=Path, required=True, help="folder with llama-bench and ggml-rpc-server")
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--devices", default=None, help="two devices, e.g. CUDA0,CUDA1 or Vulkan0,Vulkan1")
    parser.add_argument("--depths", default="0,4096,16384")
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (llama-bench -t, worker --threads)")
    parser.add_argument("--no-traffic", action="store_true", help="skip the traffic pass")
    parser.add_argument("--traffic-only", action="store_true", help="only the traffic pass")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still stops the workers

    bench_bin = tool(args.llama_dir, "llama-bench")
    server = tool(args.llama_dir, "ggml-rpc-server", "rpc-server")
    found = list_devices(bench_bin)
    gpus = [d for d in found if not d.startswith(("CPU", "RPC", "BLAS"))]
    devices = args.devices.split(",") if args.devices else (gpus[:2] if len(gpus) >= 2 else ["CPU", "CPU"])
    if len(devices) != 2:
        sys.exit(f"give two devices with --devices (llama-bench --list-devices shows: {', '.join(found) or 'none'})")
    log = Path(f"rpc_split-{time.strftime('%Y%m%dT%H%M%S')}.log").resolve()
    common = [str(bench_bin), "-m", str(args.model), "-p", str(args.pp), "-n", str(args.tg),
              "-d", args.depths, "-r", str(args.reps), "-ngl", "99", "-fa", "on", "-o", "jsonl"]
    if args.threads:
        common += ["-t", str(args.threads)]
    cpu_only = devices[0] == "CPU"
    configs = {"one": [] if cpu_only else ["-dev", devices[0]]}
    if not cpu_only and devices[0] != devices[1]:
        configs["local"] = ["-dev", "/".join(devices), "-ts", "1/1"]

    results: dict[str, dict[str, float]] = {}
    for name, extra in configs.items() if not args.traffic_only else ():
        print(f"[{name}] llama-bench {' '.join(extra) or '(CPU)'}", flush=True)
        results[name] = bench(common + extra, log)
        print(f"  {results[name]}", flush=True)
    workers = [Worker(server, dev, args.threads, log) for dev in devices]
    traffic = {}
    try:
        rpc = ["--rpc", ",".join(f"127.0.0.1:{w.port}" for w in workers), "-dev", "RPC0/RPC1", "-ts", "1/1"]
        if not args.traffic_only:
            print(f"[rpc] llama-bench {' '.join(rpc)}", flush=True)
            results["rpc"] = bench(common + rpc, log)
            print(f"  {results['rpc']}", flush=True)
        if not args.no_traffic:
            traffic = measure_traffic(bench_bin, args, workers, log)
    finally:
        for w in workers:
            w.stop()

    if results:
        print(f"\n{args.model.name}: devices {devices[0]} / {devices[1]}; t/s and ratio to one device")
        print(f"{'test':<16}" + "".join(f"{name:>12}{'':>8}" for name in results))
    for test in results.get("one", {}):
        base = results["one"][test]
        row = f"{test:<16}"
        for name, got in results.items():
            value = got.get(test)
            row += f"{value:>12.2f}{'' if name == 'one' else f'  x{value / base:.3f}':>8}" if value else f"{'-':>20}"
        print(row)
    if traffic:
        print("\ntraffic per worker and token (controller -> worker / back, round trips):")
        for key, t in traffic.items():
            print(f"  {key:<14} {t['up']:>10.0f} B / {t['down']:>8.0f} B, {t['round_trips']:.1f} round trips")
    if args.json:
        args.json.write_text(json.dumps({"model": str(args.model), "devices": devices, "depths": args.depths,
                                         "pp": args.pp, "tg": args.tg, "reps": args.reps,
                                         "results": results, "traffic": traffic}, indent=1))
    print(f"\nllama-bench and worker logs: {log}")


def measure_traffic(bench_bin: Path, args, workers: list[Worker], log: Path) -> dict[str, dict]:
    """Bytes and round trips per token (pp and tg at depth 0) and for loading the model,
    from two runs through counting relays that differ only in the number of tokens."""
    relays = [Relay(w.port) for w in workers]
    base = [str(bench_bin), "-m", str(args.model), "-r", "1", "-ngl", "99", "-fa", "on", "-o", "jsonl",
            "--rpc", ",".join(f"127.0.0.1:{r.port}" for r in relays), "-dev", "RPC0/RPC1", "-ts", "1/1"]
    if args.threads:
        base += ["-t", str(args.threads)]
    out = {}
    # runs that process all n tokens: pp's warm-up and its repetition; tg's warm-up is 1 token
    for kind, small, large, runs in (("pp", 64, 192, 2), ("tg", 16, 48, 1)):
        counts = []
        for n in (small, large):
            test = ["-p", str(n), "-n", "0"] if kind == "pp" else ["-p", "0", "-n", str(n)]
            for r in relays:
                r.reset()
            print(f"[traffic] {kind}{n} through relays", flush=True)
            bench(base + test, log)
            time.sleep(0.2)  # the relays' last bytes
            counts.append([r.reset() for r in relays])
        tokens = (large - small) * runs
        for i in range(len(relays)):
            (u1, d1, t1), (u2, d2, t2) = counts[0][i], counts[1][i]
            out[f"{kind} RPC{i}"] = {"up": (u2 - u1) / tokens, "down": (d2 - d1) / tokens,
                                     "round_trips": (t2 - t1) / tokens}
            if kind == "pp":
                per = out[f"pp RPC{i}"]
                out[f"load RPC{i}"] = {"up": u1 - per["up"] * small * runs, "down": d1 - per["down"] * small * runs,
                                       "round_trips": t1 - per["round_trips"] * small * runs}
    return out


if __name__ == "__main__":
    main()
