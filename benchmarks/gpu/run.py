"""halo on a GPU, end to end: real-size synthetic shapes, the bench matrix per backend, the
fidelity of `halo bench run` against raw llama-bench, the roofline, power and serve/flush.

Every step is a `halo` command (what a user would type); its JSON and the run folders it names
are summarised at the end and copied to --out. Rerun it on any box with a GPU and llama.cpp
built for it (`make demo ACCEL=cuda`, or benchmarks/gpu/offline-install.sh on a machine with no
network):

    python benchmarks/gpu/run.py --out gpu-results \\
        --backend cuda=/path/to/cuda/bin --backend vulkan=/path/to/vulkan/bin \\
        [--models 8b,30b-a3b] [--reps 2] [--steps bandwidth,synth,bench,fidelity,serve,report]

A step that fails is recorded and the next one runs. Synthetic models have random weights: their
speed is real (it depends on shapes and quant types only), their answers are noise.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHAPES = {"8b": ("llama", "8b"), "30b-a3b": ("qwen3moe", "30b-a3b")}
STEPS = ("bandwidth", "synth", "bench", "fidelity", "serve", "report")


def halo(*args: str, env: dict | None = None, timeout: float = 3600) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "halo_core", *args]
    print(f"$ halo {' '.join(args)}", flush=True)
    start = time.perf_counter()
    # cwd "/": `python -m` puts the working folder first on sys.path, and a source checkout
    # there would shadow the installed halo
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/",
                          env={**os.environ, **(env or {})})
    print(f"  exit {done.returncode} in {time.perf_counter() - start:.1f} s", flush=True)
    if done.returncode != 0:
        print("  " + "\n  ".join((done.stderr or done.stdout).strip().splitlines()[-5:]), flush=True)
    return done


def as_json(done: subprocess.CompletedProcess):
    try:
        return json.loads(done.stdout)
    except json.JSONDecodeError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--backend", action="append", default=[], metavar="NAME=LLAMA_CPP_DIR",
                        help="a llama.cpp build to bench (repeatable); the first is the main one")
    parser.add_argument("--models", default="8b,30b-a3b")
    parser.add_argument("--quant", default="Q4_K_M")
    parser.add_argument("--depths", default="0,4096,16384,32768")
    parser.add_argument("--kv-types", default="f16,q8_0,q4_0")
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--steps", default=",".join(STEPS))
    parser.add_argument("--second-backend-models", default="8b",
                        help="models the other backends bench (the first backend benches all)")
    args = parser.parse_args()
    args.out = args.out.resolve()
    steps = set(args.steps.split(","))
    backends = [tuple(b.split("=", 1)) for b in args.backend] or [("native", "")]
    args.out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "steps": {}}

    def record(step: str, done: subprocess.CompletedProcess, data=None) -> None:
        summary["steps"][step] = {"exit": done.returncode, "data": data if data is not None else as_json(done),
                                  "stderr_tail": (done.stderr or "").strip().splitlines()[-3:]}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))

    def dir_opts(llama_dir: str) -> list[str]:
        return ["--llama-cpp-dir", llama_dir] if llama_dir else []

    main_name, main_dir = backends[0]
    if "bandwidth" in steps:
        record("bandwidth", halo("hw", "bandwidth", "--json"))
        record("gpu-facts", halo("audit", "--json"))

    refs = {}
    for model in args.models.split(","):
        arch, shape = SHAPES[model]
        if "synth" in steps:
            done = halo("models", "synth", "--arch", arch, "--shape", shape, "--quant", args.quant, "--json")
            record(f"synth-{model}", done)
            data = as_json(done) or {}
            refs[model] = data.get("ref") or data.get("path")
    runs: dict[str, str] = {}
    if "bench" in steps:
        for index, (name, llama_dir) in enumerate(backends):
            for model, ref in refs.items():
                if index and model not in args.second_backend_models.split(","):
                    continue
                done = halo("bench", "run", "-m", ref, *dir_opts(llama_dir), "--pp", "512", "--tg", "128",
                            "--depths", args.depths, "--kv-types", args.kv_types, "--reps", str(args.reps),
                            "--tag", f"gpu-{model}-{name}", "--json")
                data = as_json(done)
                record(f"bench-{model}-{name}", done, data)
                if data:
                    runs[f"{model}-{name}"] = data["path"]
    if "fidelity" in steps and refs:
        model = next(iter(refs))
        # bench_overhead.py runs halo in a HALO_HOME of its own: give it the model's path
        path = halo("models", "path", refs[model]).stdout.strip()
        argv = [sys.executable, str(HERE.parent / "bench_overhead.py"), "--model", path,
                "--kv-types", "f16,q8_0", "--reps", "3", "--rounds", "2"]
        env = {**os.environ}
        if main_dir:
            env["HALO_LLAMA_CPP_DIR"] = main_dir
        print("$ " + " ".join(argv), flush=True)
        done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=1800, cwd="/")
        (args.out / "fidelity.txt").write_text(done.stdout + done.stderr)
        print(done.stdout[-3000:], flush=True)
        record("fidelity", done, {"stdout": done.stdout.splitlines()[-4:]})
    if "serve" in steps and refs:
        model = next(iter(refs))
        done = halo("serve", refs[model], "--detach", "--port", "8199", *dir_opts(main_dir))
        record("serve", done, {"stdout": done.stdout.strip().splitlines()[-3:]})
        if done.returncode == 0:
            import urllib.request

            health = urllib.request.urlopen("http://127.0.0.1:8199/health", timeout=30).read().decode()
            body = json.dumps({"messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 16,
                               "temperature": 0}).encode()
            request = urllib.request.Request("http://127.0.0.1:8199/v1/chat/completions", body,
                                             {"Content-Type": "application/json"})
            reply = json.loads(urllib.request.urlopen(request, timeout=120).read())
            summary["steps"]["serve-check"] = {"health": health, "usage": reply.get("usage"),
                                               "timings": reply.get("timings")}
            record("flush", halo("flush", "--json"))
            record("flush-after", halo("flush", "--json"))
    if "report" in steps and runs:
        report_dir = args.out / "report"
        record("report", halo("bench", "report", *runs.values(), "-o", str(report_dir)))
        if len(runs) > 1:
            names = list(runs)
            for other in names[1:]:
                if other.split("-")[0] == names[0].split("-")[0]:
                    record(f"compare-{names[0]}-vs-{other}",
                           halo("bench", "compare", runs[names[0]], runs[other], "--json"))
    for key, path in runs.items():
        for name in ("results.json", "metrics.csv", "system.json"):
            src = Path(path) / name
            if src.is_file():
                shutil.copyfile(src, args.out / f"{key}-{name}")
    summary["finished"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    failed = [s for s, v in summary["steps"].items() if isinstance(v, dict) and v.get("exit", 0) != 0]
    print(f"done; failed steps: {', '.join(failed) or 'none'}; results in {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
