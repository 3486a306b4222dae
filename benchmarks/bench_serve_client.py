"""halo bench serve's own client beside the llama-server it measures, CPU for CPU, in one run.

Starts one llama-server (the smoke model unless --model, one slot per concurrent request) and
runs halo's serving cells against it: the --levels (concurrency), or with --slo a capacity
search up to the largest level (the cells it measures, the boundary it finds). Per cell it prints
  - tokens: generated tokens of the cell's successful requests, and the cell's wall seconds;
  - client CPU s/1k: halo's own figure (ServeCell.client_cpu_s_per_1k: the process's CPU time
    over the cell, per 1,000 generated tokens);
  - client share: client CPU seconds / (wall seconds x os.cpu_count()), the share of the whole
    machine the client took; the server's share beside it;
  - client/server: the client's CPU seconds over the llama-server process's (utime + stime of it
    and its children, psutil) over the same cell.
Targets, at the highest level measured (the capacity boundary with --slo), where the load and
so the client's work per second are largest:
  - client share of the machine <= 5%: the cores it takes are at most a twentieth of the box,
    so a CPU-bound server loses at most ~5% to it, inside a serving benchmark's noise;
  - client CPU <= 10% of the server's: on a box where the server computes on the CPU, the two
    compete for the same cores and the client must stay a small part of the work. (With the
    model on a GPU the server's CPU time is small and this ratio says little; the share is the
    test there.) The smoke model is the hardest case: it is tiny, so the server spends least per
    token while the client's per-token cost is the same for every model.
The verdict is printed; the exit code is 0 either way (it is a measurement). The run is kept
in $HALO_HOME/runs/serve/ like any `halo bench serve` run (its path is in --json).

    .venv/bin/python benchmarks/bench_serve_client.py [--levels 1,2,4] [--pp 64 --tg 64 --reps 2]
    .venv/bin/python benchmarks/bench_serve_client.py --slo ttft_p95=2s,tg_min=5 --levels 16
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import attrs
import psutil

SHARE_MAX, RATIO_MAX = 0.05, 0.10


def server_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of the server process and its children so far."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system
        except psutil.NoSuchProcess:
            pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smoke")
    parser.add_argument("--levels", default="1,2,4", help="concurrency levels (with --slo: the largest is the ceiling)")
    parser.add_argument("--slo", default="", help="run a capacity search against these SLOs, e.g. ttft_p95=2s,tg_min=5")
    parser.add_argument("--pp", type=int, default=64)
    parser.add_argument("--tg", type=int, default=64)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None, help="llama-server threads (-t)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the table")
    args = parser.parse_args()
    from halo_core.llama.process import free_port
    from halo_core.llama.server import ServerSpec, start_server
    from halo_core.servebench.run import ServeBenchSpec, matrix_server, run_serve_bench

    levels = tuple(int(v) for v in args.levels.split(","))
    spec = ServeBenchSpec(pp=args.pp, tg=args.tg, reps=args.reps, tag="serve-client",
                          concurrency=(max(levels),) if args.slo else levels, slo=args.slo,
                          capacity="concurrency" if args.slo else "")
    parallel, ctx = matrix_server(spec)
    log = (lambda msg: None) if args.json else (lambda msg: print(msg, file=sys.stderr))
    server = start_server(ServerSpec(model=args.model, port=free_port(), parallel=parallel, ctx=ctx,
                                     threads=args.threads), on_status=log)
    proc, windows, opened = psutil.Process(server.info.pid), {}, []

    def on_status(msg: str) -> None:  # a cell's first round starts right after its CPU clock does
        if msg.startswith("cell ") and "round 1/" in msg:
            opened[:] = [time.perf_counter(), server_cpu(proc)]
        log(msg)

    def on_cell(cell) -> None:
        windows[cell.cell] = (time.perf_counter() - opened[0], server_cpu(proc) - opened[1])

    try:
        run = run_serve_bench(attrs.evolve(spec, endpoint=server.info.url), on_status=on_status, on_cell=on_cell)
    finally:
        server.stop()
    kept = {}  # cells.jsonl: the attempt that counts and its client CPU seconds
    for line in (run.path / "cells.jsonl").read_text().splitlines():
        row = json.loads(line)
        kept[row["cell"]] = row
    rows = []
    for cell in run.cells:
        wall, srv = windows[cell.cell]
        attempt, client = kept[cell.cell]["attempt"], kept[cell.cell]["client_cpu_s"]
        tokens = sum(r.completion_tokens or 0 for r in run.requests
                     if r.cell == cell.cell and r.attempt == attempt and r.ok)
        cores = os.cpu_count()
        rows.append({"concurrency": cell.concurrency, "tokens": tokens, "wall_s": round(wall, 2),
                     "agg_ts": cell.agg_ts.mean if cell.agg_ts else None,
                     "client_cpu_s": client, "client_cpu_s_per_1k": cell.client_cpu_s_per_1k,
                     "client_share": round(client / (wall * cores), 4),
                     "server_cpu_s": round(srv, 3), "server_share": round(srv / (wall * cores), 4),
                     "client_over_server": round(client / srv, 4) if srv else None,
                     "slo_met": cell.slo_met, "errors": cell.errors})
    boundary = run.capacity.boundary if run.capacity else None
    judged = next((r for r in rows if r["concurrency"] == boundary), None) if args.slo else \
        max(rows, key=lambda r: r["concurrency"], default=None)
    ok = judged is not None and judged["client_share"] <= SHARE_MAX and \
        (judged["client_over_server"] or 0) <= RATIO_MAX
    out = {"model": args.model, "cores": os.cpu_count(), "pp": args.pp, "tg": args.tg, "reps": args.reps,
           "server_parallel": parallel, "slo": args.slo, "capacity": boundary, "run": str(run.path),
           "cells": rows, "judged_at": judged and judged["concurrency"], "targets":
           {"client_share_max": SHARE_MAX, "client_over_server_max": RATIO_MAX}, "ok": ok}
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{args.model}, pp {args.pp} tg {args.tg}, {args.reps} reps, -np {parallel}, {os.cpu_count()} cores"
          + (f", capacity search {args.slo}: boundary c{boundary}" if args.slo else ""))
    print(f"{'c':>4} {'tokens':>7} {'wall s':>7} {'agg t/s':>8} {'client CPU s/1k':>15} {'client share':>12} "
          f"{'server share':>12} {'client/server':>13}" + ("  SLO" if args.slo else ""))
    for r in rows:
        ratio = "-" if r["client_over_server"] is None else f"{r['client_over_server']:.3f}"
        print(f"{r['concurrency']:>4} {r['tokens']:>7} {r['wall_s']:>7.2f} {r['agg_ts'] or 0:>8.1f} "
              f"{r['client_cpu_s_per_1k'] or 0:>15.3f} {100 * r['client_share']:>11.2f}% "
              f"{100 * r['server_share']:>11.1f}% {ratio:>13}"
              + (f"  {'met' if r['slo_met'] else 'missed'}" if args.slo else ""))
    if judged is None:
        print("verdict: nothing to judge (no level met the SLOs)")
        return
    print(f"verdict at c{judged['concurrency']}: client share {100 * judged['client_share']:.2f}% "
          f"(target <= {100 * SHARE_MAX:g}%), client/server CPU {judged['client_over_server']:.3f} "
          f"(target <= {RATIO_MAX:g}): {'the client is not the bottleneck' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
