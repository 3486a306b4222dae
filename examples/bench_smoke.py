"""Run a small llama-bench from Python and print the records.

    python examples/bench_smoke.py [--backend NAME] [--model REF]

Without them, halo's default backend and model (`native` and the embedded `smoke` model unless
configured: `halo plugins` shows them).
"""

from __future__ import annotations

import argparse

import halo_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model")
    parser.add_argument("--backend")
    args = parser.parse_args()

    named = {"models": [args.model] if args.model else None,
             "backends": [args.backend] if args.backend else None}
    spec = halo_core.BenchSpec(**{k: v for k, v in named.items() if v}, pp=64, tg=16, reps=2,
                               tag="example")
    run = halo_core.run_bench(spec)
    for r in run.results:
        print(f"{r.model}\t{r.backend}\t{r.test}\t{r.avg_ts:.2f} t/s ± {r.stddev_ts:.2f}")
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
