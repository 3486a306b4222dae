"""The ceiling of `halo bench serve`'s own client: how many concurrent streams and tokens/s it
takes from a server that answers instantly (tests/openai_stub.py), and what each token costs it.

For each concurrency level it runs halo's measurement (depth 0, --pp, --tg, --reps rounds of
`concurrency` x --per-stream requests) against the stub and prints
  - agg t/s: generated tokens per second the client took, all streams together (the stub runs
    on the same cores, so this is a floor of the client's ceiling);
  - client CPU us/token: halo's process CPU time (user + system) per generated token, whole
    run included (prompt building, the JSONL records, summaries), and the tokens/s that makes
    one core's worth;
  - ITL p50 / p99: the gaps the client saw between tokens, here the harness's own resolution.
A real server far below the client's tokens/s per core is measured, not the harness.

    .venv/bin/python benchmarks/servebench_ceiling.py [--levels 1,4,16,64,128] [--tg 256] [--token-delay 0.005]
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from openai_stub import StubServer  # noqa: E402


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", default="1,4,16,64,128")
    parser.add_argument("--pp", type=int, default=64)
    parser.add_argument("--tg", type=int, default=256)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--per-stream", type=int, default=2, help="requests per stream per round")
    parser.add_argument("--token-delay", type=float, default=0.0,
                        help="seconds the stub waits before each token (0: instant); with a delay every "
                             "token is its own read, as from a real server")
    args = parser.parse_args()
    os.environ["HALO_HOME"] = tempfile.mkdtemp(prefix="halo-ceiling-")
    from halo_core.servebench.run import ServeBenchSpec, run_serve_bench

    print(f"{'streams':>7} {'requests':>8} {'agg t/s':>10} {'CPU us/token':>13} {'t/s per core':>13} "
          f"{'ITL p50 us':>10} {'ITL p99 us':>10} {'errors':>6}")
    with StubServer(args.token_delay) as url:
        for level in (int(v) for v in args.levels.split(",")):
            spec = ServeBenchSpec(endpoint=url, depths=(0,), pp=args.pp, tg=args.tg, concurrency=(level,),
                                  requests=level * args.per_stream, reps=args.reps, tag=f"ceiling-c{level}")
            before = cpu_seconds()
            run = run_serve_bench(spec)
            cpu = cpu_seconds() - before
            [cell] = run.cells
            tokens = sum(r.completion_tokens or 0 for r in run.requests if r.ok)
            per_token = 1e6 * cpu / tokens
            print(f"{level:>7} {cell.requests:>8} {cell.agg_ts.mean:>10.0f} {per_token:>13.1f} "
                  f"{1e6 / per_token:>13.0f} {1000 * cell.itl_ms.p50:>10.0f} {1000 * cell.itl_ms.p99:>10.0f} "
                  f"{cell.errors:>6}")


if __name__ == "__main__":
    main()
