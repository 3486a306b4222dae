"""halo optimize against the exhaustive grid of its own search space, and against llama-optimus
at the same budget, side by side in one run (#22).

For one model and backend, per workload:
  1. the grid: every point of halo optimize's space (llama-bench, --reps each), and its best;
  2. halo optimize with a budget of --share (25%) of the grid's points: its pick is what it
     recommends (the defaults when nothing was faster beyond noise);
  3. llama-optimus (PyPI) at the same number of trials: its own search (its stage 1, Optuna TPE
     over -b, -ub, -t and -ngl in its ranges, its llama-bench command); its pick is its best trial;
  4. the defaults, the grid's best, halo's pick and llama-optimus's measured again, --confirm-reps
     repetitions each, in --rounds rounds whose order alternates (drift hits all alike); picks
     that are the same setting are measured once and share their figures.
It prints the objective (geometric mean t/s of the objective's tests) of each pick as re-measured
and the ratios; targets: halo ÷ grid best >= 0.98, halo ÷ llama-optimus >= 1, and halo's pick never
slower than the defaults beyond noise (it falls back to them).

    .venv/bin/python benchmarks/optimize_vs_grid.py [--model smoke] [--backend native]
        [--workloads chat,long] [--pp 512 --tg 128 --depths 16384] [--objective tg] [--reps 3]
        [--share 0.25] [--confirm-reps 5] [--rounds 2] [--out results.json] [--grid-from results.json]

Needs optuna (halo-llm[optimize]); llama-optimus is run when installed (pip install llama-optimus,
native backend only: it runs llama-bench itself), else its column says why not.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import attrs


def _setup_home() -> None:
    if "HALO_HOME" not in os.environ:  # a scratch home: no profile or run of yours is touched
        os.environ["HALO_HOME"] = tempfile.mkdtemp(prefix="halo-optimize-vs-grid-")


def grid(space: dict) -> list:
    """Every distinct setting of the space (normal forms), the defaults first."""
    from halo_core.llama.profile import Settings
    from halo_core.optimize.run import _normal, _settings

    points = [Settings()]
    for combo in itertools.product(*space.values()):
        s = _settings(dict(zip(space, combo)))
        if s not in points:
            points.append(_normal(s))
    return points


def measure(args, settings, reps: int, tag: str, depths, ngl: int | None = None) -> list:
    """One llama-bench run of `settings` (its depth-0 test, then its depths): its results."""
    from halo_core.bench.run import run_bench
    from halo_core.optimize.run import trial_spec

    results = []
    for standard, at in ((True, ()), (False, depths)):
        if not standard and not at:
            continue
        spec = attrs.evolve(trial_spec(args.model, args.backend, settings, pp=args.pp_, tg=args.tg_, reps=reps,
                                       depths=at, standard=standard, tag=f"{tag}{'' if standard else 'd'}"),
                            n_gpu_layers=ngl)
        run = run_bench(spec, backend_options={"llama_cpp_dir": args.llama_cpp_dir} if args.llama_cpp_dir else None)
        if not run.results:
            raise RuntimeError(run.failures[0].error if run.failures else "llama-bench reported nothing")
        results += run.results
    return results


def earlier_grid(path: str, workload: str, points: list) -> tuple[list, float | None]:
    """The objective of every point from an earlier run's --out file (its `grid_values` for
    `workload`; None where the point failed), and that grid's wall time; a point of this space the
    file lacks is an error (another space, build or objective measured it)."""
    rows = json.loads(Path(path).read_text())
    row = next((r for r in rows if r.get("workload") == workload), None)
    if row is None:
        sys.exit(f"error: {path} holds no grid for workload {workload}")
    known = {g["settings"]: g["value"] for g in row["grid_values"]}
    missing = [s.describe() for s in points if s.describe() not in known]
    if missing:
        sys.exit(f"error: {path} lacks {len(missing)} points of this space ({', '.join(missing[:3])}, ...)")
    return [known[s.describe()] for s in points], row.get("grid_wall_s")


def run_llama_optimus(args, budget: int, model_path: str, n_layers: int) -> dict:
    """llama-optimus's own search for `budget` trials; its best trial's settings (or why not)."""
    try:
        import optuna
        from llama_optimus import core
    except ImportError as exc:
        return {"error": f"llama-optimus not importable ({exc}): pip install llama-optimus"}
    from halo_core.plugins import get_host

    host = get_host()
    [backend] = host.available_backends([args.backend], {"llama_cpp_dir": args.llama_cpp_dir} if args.llama_cpp_dir else None)
    cmd = backend.command("llama-bench")
    if len(cmd.argv) != 1:
        return {"error": f"the {args.backend} backend runs llama-bench through {cmd.argv[0]}: llama-optimus "
                         "needs a plain binary"}
    core.SEARCH_SPACE["gpu_layers"]["high"] = n_layers + 1  # what its -ngl estimate finds when all fits
    metric = {"tg": "tg", "pp": "pp", "balanced": "mean"}[args.objective]
    saved = dict(os.environ)
    os.environ.update(cmd.env)
    log = io.StringIO()
    started = time.monotonic()
    try:
        with contextlib.redirect_stdout(log):
            study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(
                multivariate=True, seed=args.seed))
            n_tokens = args.tg_ if metric != "pp" else args.pp_ // 2  # (it runs -p 2*n_tokens for pp)
            study.optimize(lambda t: core.objective_1(t, n_tokens, metric, args.reps, cmd.argv[0], model_path),
                           n_trials=budget)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    best = study.best_trial.params
    return {"params": best, "value": study.best_value, "wall_s": round(time.monotonic() - started, 1),
            "trials": len(study.trials), "failed": sum(1 for t in study.trials if not t.value)}


def one_workload(args, workload: str) -> dict:
    from halo_core.bench.compare import speed_change
    from halo_core.llama.profile import Settings
    from halo_core.models.header import read_header
    from halo_core.models.resolve import fetch_model
    from halo_core.optimize.run import OptimizeSpec, WORKLOADS, objective_value, pooled, run_optimize, search_space
    from halo_core.plugins import get_host
    from halo_core.store import from_dict

    pp, tg, depths = WORKLOADS[workload]
    args.pp_, args.tg_ = args.pp or pp, args.tg or tg
    depths = tuple(args.depths) if args.depths is not None else depths
    host = get_host()
    options = {"llama_cpp_dir": args.llama_cpp_dir} if args.llama_cpp_dir else None
    [backend] = host.available_backends([args.backend], options)
    model = fetch_model(args.model, host=host)
    n_layers = read_header(model.path).arch_key("block_count") or 0
    space = search_space(args.pp_, depths, str(backend.provenance().get("accel", "")))
    points = grid(space)
    budget = max(2, math.floor(args.share * len(points)))
    say = lambda msg: print(f"[{workload}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    say(f"space {space}: {len(points)} points; halo and llama-optimus get {budget} trials")

    started = time.monotonic()
    if args.grid_from:
        values, grid_wall = earlier_grid(args.grid_from, workload, points)
        say(f"grid pass from {args.grid_from}: {sum(1 for v in values if v)} of {len(points)} points measured")
    else:
        values = []
        for i, s in enumerate(points):
            try:
                v = objective_value(measure(args, s, args.reps, f"grid-{workload}-{i}", depths), args.objective)
            except RuntimeError as exc:
                v = None
                say(f"grid {i} {s.describe()}: failed: {exc}")
            values.append(v)
            say(f"grid {i + 1}/{len(points)} {s.describe()}: {v}")
        grid_wall = round(time.monotonic() - started, 1)
    best_i = max((i for i, v in enumerate(values) if v), key=lambda i: values[i])

    started = time.monotonic()
    run = run_optimize(OptimizeSpec(model=args.model, backend=args.backend, workload=workload, pp=args.pp_,
                                    tg=args.tg_, depths=depths, objective=args.objective, budget=budget,
                                    reps=args.reps, seed=args.seed, tag=f"vs-grid-{workload}",
                                    backend_options=options or {}))
    halo_wall = time.monotonic() - started
    halo_pick = from_dict(Settings, run.result["recommended"])
    say(f"halo optimize: {halo_pick.describe()} ({run.result['why']})")

    optimus = run_llama_optimus(args, budget, str(model.path), n_layers) if not args.no_optimus else {
        "error": "--no-optimus"}
    picks = {"defaults": (Settings(), None), "grid best": (points[best_i], None), "halo optimize": (halo_pick, None)}
    if "params" in optimus:
        p = optimus["params"]
        picks["llama-optimus"] = (Settings(batch=p["batch"], ubatch=p["u_batch"], threads=p["threads"]),
                                  p["gpu_layers"])
        say(f"llama-optimus: {picks['llama-optimus'][0].describe()} -ngl {p['gpu_layers']}")
    else:
        say(f"llama-optimus: {optimus['error']}")

    # picks that are the same setting are measured once and share the figures, so one setting
    # never shows two numbers (on a noisy CPU two measurements of it can differ by 10%+)
    key = lambda name: (picks[name][0].describe(), picks[name][1])  # noqa: E731
    distinct = list(dict.fromkeys(key(name) for name in picks))
    first = {k: next(name for name in picks if key(name) == k) for k in distinct}
    rounds: dict[tuple, list] = {k: [] for k in distinct}
    for r in range(args.rounds):
        for k in (distinct if r % 2 == 0 else distinct[::-1]):
            settings, ngl = picks[first[k]]
            rounds[k].append(measure(args, settings, args.confirm_reps,
                                     f"final-{workload}-{r}-{first[k].replace(' ', '-')}", depths, ngl))
    final = {name: pooled(rounds[key(name)]) for name in picks}
    value = {name: objective_value(res, args.objective) for name, res in final.items()}
    base = {r.test: r for r in final["defaults"]}
    verdicts = {}
    for name, res in final.items():
        verdicts[name] = {r.test: speed_change(base[r.test], r)[2] for r in res if r.test in base and name != "defaults"}
    ratio = lambda a, b: round(value[a] / value[b], 3) if value.get(a) and value.get(b) else None  # noqa: E731
    return {
        "workload": workload, "pp": args.pp_, "tg": args.tg_, "depths": list(depths), "objective": args.objective,
        "space": {k: list(v) for k, v in space.items()}, "grid_points": len(points), "budget": budget,
        "grid_wall_s": grid_wall, "grid_from": args.grid_from, "halo_wall_s": round(halo_wall, 1),
        "halo_trials": len(run.trials), "halo_run": str(run.path), "halo_why": run.result["why"],
        "llama_optimus": optimus,
        "grid_values": [{"settings": s.describe(), "value": v} for s, v in zip(points, values)],
        "picks": {name: {"settings": s.describe() + (f" -ngl {ngl}" if ngl is not None else ""),
                         "value": value[name], "vs_defaults": verdicts[name],
                         "same_as": first[key(name)] if first[key(name)] != name else None}
                  for name, (s, ngl) in picks.items()},
        "ratios": {"halo/grid": ratio("halo optimize", "grid best"),
                   "halo/llama-optimus": ratio("halo optimize", "llama-optimus"),
                   "halo/defaults": ratio("halo optimize", "defaults"),
                   "llama-optimus/grid": ratio("llama-optimus", "grid best")},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smoke")
    ap.add_argument("--backend", default="native")
    ap.add_argument("--llama-cpp-dir", default=None)
    ap.add_argument("--workloads", default="chat")
    ap.add_argument("--pp", type=int, default=None)
    ap.add_argument("--tg", type=int, default=None)
    ap.add_argument("--depths", type=lambda v: [int(x) for x in v.split(",") if x], default=None)
    ap.add_argument("--objective", default="tg", choices=("tg", "pp", "balanced"))
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--share", type=float, default=0.25)
    ap.add_argument("--confirm-reps", type=int, default=5)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-optimus", action="store_true")
    ap.add_argument("--grid-from", default=None, metavar="FILE",
                    help="the grid pass of an earlier run (its --out file): not measured again; its best "
                         "is re-measured beside the other picks")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    _setup_home()
    rows = [one_workload(args, w) for w in args.workloads.split(",")]
    print(f"{'workload':10} {'points':>6} {'budget':>6} {'pick':14} {'settings':44} {'t/s':>9} {'vs defaults':28}")
    for row in rows:
        for name, pick in row["picks"].items():
            v = pick["value"]
            print(f"{row['workload']:10} {row['grid_points']:>6} {row['budget']:>6} {name:14} {pick['settings'][:44]:44} "
                  f"{v if v is None else f'{v:9.2f}':>9} {', '.join(f'{k} {x}' for k, x in pick['vs_defaults'].items())}")
        print(f"{row['workload']:10} ratios: " + ", ".join(f"{k} {v}" for k, v in row["ratios"].items())
              + f"; wall: grid {row['grid_wall_s']} s{' (earlier run)' if row['grid_from'] else ''}, "
                f"halo {row['halo_wall_s']} s"
              + (f", llama-optimus {row['llama_optimus']['wall_s']} s" if "wall_s" in row["llama_optimus"] else
                 f"; llama-optimus: {row['llama_optimus'].get('error')}"))
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
