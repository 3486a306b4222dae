"""halo bench vs raw llama-bench on the same matrix, side by side in one run.

Prints, per cell, halo's reported t/s and raw llama-bench's, then
  - t/s ratio  (halo ÷ raw): the median |ratio - 1| should be <= 2% (halo reports what it ran)
  - wall ratio (halo ÷ raw): should be <= 1.05 (halo adds little around llama-bench), and the
    wall difference per run: should be < 0.3 s
  - the CLI's start-up, median of 10, against a bare `python -c pass`: `halo --version` should
    take <= 0.15 s, `halo plugins --json` <= 0.25 s (#24); `halo --help` is shown beside them
  - where halo's own time goes: one more halo run under cProfile, its wall time split into
    start-up (interpreter, imports, plugins), the steps of run_bench (backends, model, machine
    facts, metrics sampler, flag probe, bandwidth, records) and llama-bench itself (cProfile
    slows Python down, so the parts are larger than in a plain run; their order is what counts)
Rounds alternate which side goes first, so drift on a noisy machine hits both alike.

    .venv/bin/python benchmarks/bench_overhead.py [--model smoke] [--rounds 2] [--pp 512 --tg 128 --reps 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def halo_argv(args, *python_args: str) -> list[str]:
    """`halo bench run` of the benchmark's matrix, JSON out (`python_args`: before `-m halo_core`)."""
    argv = [sys.executable, *python_args, "-m", "halo_core", "bench", "run", "-m", args.model, "--pp",
            str(args.pp), "--tg", str(args.tg), "--reps", str(args.reps), "--kv-types", args.kv_types, "--json"]
    return argv + (["--threads", str(args.threads)] if args.threads else [])


def run_halo(args, home: Path) -> tuple[float, dict, list[list[str]]]:
    argv = halo_argv(args)
    env = dict(os.environ, HALO_HOME=str(home))
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"halo failed: {done.stderr.strip().splitlines()[-1]}")
    out = json.loads(done.stdout)
    commands = [c["argv"] for c in json.loads(Path(out["path"], "run.json").read_text())["commands"]]
    results = {(r["kv"] if "kv" in r else f"{r['type_k']}/{r['type_v']}", r["test"]): r["avg_ts"]
               for r in out["results"]}
    return wall, results, commands


def run_raw(commands: list[list[str]]) -> tuple[float, dict]:
    results = {}
    start = time.perf_counter()
    for argv in commands:
        done = subprocess.run(argv, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"llama-bench failed: {done.stderr.strip().splitlines()[-1:]}")
        for line in done.stdout.splitlines():
            rec = json.loads(line)
            test = f"pp{rec['n_prompt']}" if rec["n_prompt"] else f"tg{rec['n_gen']}"
            results[(f"{rec['type_k']}/{rec['type_v']}", test)] = rec["avg_ts"]
    return time.perf_counter() - start, results


# (file suffix, function) -> the phase it is; cumulative wall times under cProfile
PHASES = [
    ("backends: which can run", "halo_core/plugins.py", "available_backends"),
    ("model: resolve, read the header", "halo_core/models/resolve.py", "fetch_model"),
    ("machine facts (system.json)", "halo_core/machine/hostfacts.py", "system_state"),
    ("bench pid file", "halo_core/llama/process.py", "record_bench"),
    ("roofline bandwidth", "halo_core/machine/bandwidth.py", "roofline_bandwidth"),
    ("metrics sensors (set-up)", "halo_core/machine/metrics.py", "sensors"),
    ("metrics sampler start", "halo_core/machine/metrics.py", "__enter__"),
    ("metrics sampler stop", "halo_core/machine/metrics.py", "__exit__"),
    ("flag probe (cached)", "halo_core/llama/flags.py", "probe_flags"),
    ("llama-bench (its output)", "halo_core/runner.py", "lines"),
    ("llama-bench (its exit)", "halo_core/runner.py", "wait"),
    ("records: results, state", "halo_core/bench/run.py", "result"),
    ("records: finish", "halo_core/bench/run.py", "finish"),
]


def phases(args, home: Path) -> None:
    """One halo run under cProfile: where its wall time went."""
    with tempfile.NamedTemporaryFile(suffix=".prof") as prof:
        argv = halo_argv(args, "-m", "cProfile", "-o", prof.name)
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env=dict(os.environ, HALO_HOME=str(home)), check=True)
        wall = time.perf_counter() - start
        stats = pstats.Stats(prof.name).stats

    def cumulative(suffix: str, name: str) -> float:
        return sum(ct for (file, _line, func), (_cc, _nc, _tt, ct, _callers) in stats.items()
                   if func == name and file.endswith(suffix))

    inside = cumulative("halo_core/bench/run.py", "run_bench")
    print(f"where one halo run's {wall:.2f}s went (under cProfile):")
    print(f"  {'start-up: interpreter, imports, plugins, options':<50} {wall - inside:6.3f}s")
    named = 0.0
    for label, suffix, name in PHASES:
        took = cumulative(suffix, name)
        named += took
        print(f"  {label:<50} {took:6.3f}s")
    print(f"  {'the rest of run_bench':<50} {inside - named:6.3f}s")


def startup(argv: list[str], runs: int = 10) -> float:
    """Median wall time of `argv`, in seconds."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, cwd="/")
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smoke")
    parser.add_argument("--pp", type=int, default=512)
    parser.add_argument("--tg", type=int, default=128)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--kv-types", default="f16,q8_0")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--threads", type=int, default=None,
                        help="llama-bench threads (-t); one less than the cores keeps halo's own "
                             "process from competing with the measurement")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="halo-bench-overhead-") as tmp:
        home = Path(tmp)
        # warm-up: fetch the model, probe the flags, and learn the exact commands halo runs
        print("warm-up run (model fetch, flag probe) ...", file=sys.stderr)
        _wall, _res, commands = run_halo(args, home)
        halo_walls, raw_walls, ratios, raw_rounds = [], [], [], []
        for rnd in range(args.rounds):
            order = ("halo", "raw") if rnd % 2 == 0 else ("raw", "halo")
            got = {}
            for side in order:
                print(f"round {rnd + 1}: {side} ...", file=sys.stderr)
                got[side] = run_halo(args, home)[:2] if side == "halo" else run_raw(commands)
            (hw, hres), (rw, rres) = got["halo"], got["raw"]
            halo_walls.append(hw)
            raw_walls.append(rw)
            raw_rounds.append(rres)
            for key in sorted(rres):
                if key in hres:
                    kv = key[0].split("/")
                    ratios.append(hres[key] / rres[key])
                    print(f"  round {rnd + 1}  kv {kv[0] if kv[0] == kv[1] else key[0]:<10} {key[1]:<8} "
                          f"halo {hres[key]:9.2f} t/s   raw {rres[key]:9.2f} t/s   ratio {hres[key] / rres[key]:.3f}")
        deviation = statistics.median(abs(r - 1) for r in ratios)
        # the machine's own noise: raw llama-bench against itself, round after round
        floor = [abs(b[k] / a[k] - 1) for a, b in zip(raw_rounds, raw_rounds[1:]) for k in a if k in b]
        wall_ratio = sum(halo_walls) / sum(raw_walls)
        print(f"cells compared: {len(ratios)} over {args.rounds} round(s)")
        print(f"t/s ratio halo/raw: median {statistics.median(ratios):.3f}, "
              f"median |ratio - 1| = {100 * deviation:.2f}% (target <= 2%)")
        if floor:
            print(f"noise floor: raw vs raw between rounds, median |ratio - 1| = {100 * statistics.median(floor):.2f}%")
        print(f"wall time halo/raw: {sum(halo_walls):.1f}s / {sum(raw_walls):.1f}s = {wall_ratio:.3f} (target <= 1.05); "
              f"{(sum(halo_walls) - sum(raw_walls)) / args.rounds:+.2f}s a run (target < 0.3s)")
        phases(args, home)
    bare = startup([sys.executable, "-c", "pass"])
    for args_, target in ((["--version"], "<= 0.15s"), (["plugins", "--json"], "<= 0.25s"), (["--help"], "")):
        took = startup([sys.executable, "-m", "halo_core", *args_])
        print(f"halo {' '.join(args_)}: {took:.3f}s median of 10 (python itself: {bare:.3f}s"
              + (f"; target {target})" if target else ")"))


if __name__ == "__main__":
    main()
