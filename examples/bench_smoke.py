"""Run a small llama-bench on the embedded smoke model from Python and print the records.

    python examples/bench_smoke.py [--backend native] [--model smoke]
"""

from __future__ import annotations

import argparse

import halo_core


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smoke")
    parser.add_argument("--backend", default="native")
    args = parser.parse_args()

    spec = halo_core.BenchSpec(models=[args.model], backends=[args.backend],
                               pp=64, tg=16, reps=2, tag="example")
    run = halo_core.run_bench(spec)
    for r in run.results:
        print(f"{r.model}\t{r.backend}\t{r.test}\t{r.avg_ts:.2f} t/s ± {r.stddev_ts:.2f}")
    print(f"run directory: {run.path}")


if __name__ == "__main__":
    main()
