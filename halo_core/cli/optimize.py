"""`halo optimize MODEL`: search llama.cpp's settings for this model here, keep the best as a
profile (with several --backend, one per backend, and which is fastest); `halo optimize show
[RUN]`, `halo optimize compare RUN RUN...` (backends), `halo optimize report [RUN]` (a page),
`halo optimize list` (the profiles)."""

from __future__ import annotations

import shlex
from pathlib import Path

import attrs
import click
from rich.table import Table

from ..errors import HaloError
from .common import (backend_flags, backend_options, emit_json, err_console, print_table, sigterm_as_interrupt,
                     spinner_status)
from .serve import DefaultRunGroup


def _fmt(value, spec: str = ".2f") -> str:
    return "-" if value is None else f"{value:{spec}}"


@click.group(cls=DefaultRunGroup)
def optimize():
    """Find the fastest llama.cpp settings for a model on this machine (`halo optimize MODEL`),
    `halo optimize show [RUN]`, `halo optimize list`."""


@optimize.command("run")
@click.argument("model", required=False)
@click.option("--backend", "backends", multiple=True,
              help="Backend to measure on (default: the default backend); repeat it to search each and "
                   "compare them (one run and one profile per backend).")
@click.option("--workload", type=click.Choice(["chat", "long", "agentic"]), default="chat", show_default=True,
              help="chat: pp512/tg128; long: and tg at depth 16384; agentic: pp4096/tg256 and depth 8192.")
@click.option("--pp", type=click.IntRange(min=1), default=None, help="Prompt tokens (instead of the workload's).")
@click.option("--tg", type=click.IntRange(min=2), default=None, help="Generated tokens (instead of the workload's).")
@click.option("--depths", default=None, help="Long-context depths, comma-separated (instead of the workload's).")
@click.option("--objective", type=click.Choice(["tg", "pp", "balanced"]), default="tg", show_default=True)
@click.option("--budget", type=click.IntRange(min=1), default=12, show_default=True,
              help="Trials, the defaults included.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop starting trials after this many minutes.")
@click.option("--reps", "-r", type=click.IntRange(min=1), default=3, show_default=True,
              help="llama-bench repetitions per trial (the confirmation runs 5).")
@click.option("--allow-lossy", is_flag=True,
              help="Search K/V cache types too (f16, q8_0, q4_0); one is kept only when --eval finds no regression.")
@click.option("--eval", "eval_suite", default=None, metavar="SUITE",
              help="The suite (or preset) whose paired test gates a lossy setting (needed with --allow-lossy).")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Samples of --eval's suite, on each side.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, help="Reply length of --eval's requests.")
@click.option("--seed", type=int, default=0, show_default=True, help="The sampler's seed.")
@click.option("--tag", default="optimize", show_default=True, help="Run name prefix.")
@click.option("--resume", "resume", default=None, metavar="RUN", help="Continue this optimize run.")
@backend_flags
@click.option("--json", "as_json", is_flag=True, help="Print the run as JSON.")
def optimize_run(model, backends, workload, pp, tg, depths, objective, budget, minutes, reps, allow_lossy,
                 eval_suite, limit, max_tokens, seed, tag, resume, backend_opts, as_json):
    """Search -ub, -b, -fa (and -t on a CPU build; K/V cache types with --allow-lossy) with
    llama-bench trials at the workload (Optuna's TPE; the defaults first; dominated settings
    pruned), confirm the winner against the defaults by `halo bench compare`'s rule (a lossy
    one also by --eval's paired test), and write the profile `halo serve` uses."""
    from ..optimize.run import OptimizeSpec, compare_backends, run_optimize
    from .bench import _parse_numbers

    if not model and not resume:
        raise click.UsageError("give a MODEL (or --resume RUN)")
    if allow_lossy and not eval_suite:
        raise click.UsageError("--allow-lossy needs --eval SUITE: a setting that changes answers is kept only "
                               "when the suite's paired test finds no regression")
    if resume and backends:
        raise click.UsageError("--resume continues a run on its own backend: leave --backend out")
    if len(set(backends)) < len(backends):
        raise click.UsageError("each --backend once")
    specs = [None]
    if not resume:
        fields = dict(model=model, workload=workload,
                      pp=pp, tg=tg, depths=_parse_numbers(depths, "--depths") if depths is not None else None,
                      objective=objective, budget=budget, minutes=minutes, reps=reps, seed=seed, tag=tag,
                      backend_options=backend_options(backend_opts), allow_lossy=allow_lossy,
                      eval=eval_suite or "", limit=limit, max_tokens=max_tokens)
        specs = [OptimizeSpec(**fields, **({"backend": b} if b else {}))
                 for b in (backends or (None,))]
        if len(specs) > 1:  # one run per backend, each its own tag; all of them there before the first starts
            from ..plugins import get_host

            get_host().available_backends(list(backends), fields["backend_options"])
            specs = [attrs.evolve(spec, tag=f"{tag}-{spec.backend}") for spec in specs]

    def said(trial) -> None:
        value = f"{trial.value:.2f}" if trial.value is not None else "-"
        err_console.print(f"  trial {trial.number}: {trial.settings.describe()} · {trial.state} · {value}"
                          + (f" · {trial.error}" if trial.error else ""), highlight=False, soft_wrap=True)

    if len(specs) == 1:
        with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
            run = run_optimize(specs[0], resume=resume, on_status=spinner_status(spinner), on_trial=said)
        if as_json:
            emit_json(run)
            return
        show_run(run)
        return
    done, failed = [], []
    for spec in specs:
        err_console.print(f"{spec.backend}:", highlight=False)
        try:
            with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
                done.append(run_optimize(spec, on_status=spinner_status(spinner), on_trial=said))
        except HaloError as exc:  # its run is kept (resumable); the other backends go on
            failed.append((spec.backend, str(exc)))
            err_console.print(f"  {spec.backend} failed: {exc}", highlight=False, soft_wrap=True)
    comparison = None
    if len(done) > 1:
        err_console.print("comparing the backends' settings, interleaved", highlight=False)
        with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
            comparison = compare_backends(done, on_status=spinner_status(spinner))
    if as_json:
        emit_json({"runs": done, "comparison": comparison,
                   "failed": [{"backend": b, "error": e} for b, e in failed]})
    else:
        for run in done:  # (a run_optimize that returned is complete, its result there)
            click.echo(f"{run.spec.backend}: {run.path.name} · {_describe(run.result['recommended'])} · "
                       f"profile {run.profile}")
        if comparison:
            show_comparison(comparison, done[0].spec.model)
    if failed:
        raise HaloError("; ".join(f"{b} failed: {e}" for b, e in failed))


def _describe(settings: dict) -> str:
    from ..llama.profile import Settings
    from ..store import from_dict

    return from_dict(Settings, settings).describe()


def show_comparison(comparison: dict, model: str) -> None:
    """Backends ranked by their recommended settings' measurements, each against the fastest."""
    rows = Table("backend", "settings", f"{comparison['objective']} (geo. mean t/s)", "tests", "against the fastest",
                 title="backends")
    for row in comparison["backends"]:
        against = ", ".join(f"{n} {_fmt(v['change_pct'], '+.1f')}% ({v['verdict']})"
                            for n, v in row["against_fastest"].items())
        rows.add_row(row["backend"], _describe(row["recommended"]), _fmt(row["value"]),
                     ", ".join(f"{n} {v:.1f}" for n, v in row["tests"].items()), against or "fastest")
    print_table(rows)
    click.echo(comparison["why"])
    top = comparison["fastest"]
    if top:
        click.echo(f"serve with it: halo serve {shlex.quote(model)} --backend {top} (its profile's settings)")
    else:
        click.echo(f"each profile is used with its own --backend (halo serve {shlex.quote(model)} --backend B)")


def show_run(run) -> None:
    """An optimize run for people: its trials, the verdict, the profile and the command."""
    table = Table("trial", "settings", "state", f"{run.spec.objective} (geo. mean t/s)", "tests", "error",
                  title=f"{run.path.name} ({run.status})")
    for t in run.trials:
        tests = ", ".join(f"{k} {v:.1f}" for k, v in t.tests.items())
        table.add_row(str(t.number), t.settings.describe() if t.number else "defaults", t.state,
                      _fmt(t.value), tests, t.error)
    print_table(table)
    result = run.result or {}
    if result:
        rows = Table("test", "defaults t/s", "setting t/s", "change", "p", "verdict", title="confirmation")
        for name, v in (result.get("tests") or {}).items():
            rows.add_row(name, _fmt(v["defaults"]), _fmt(v["setting"]), _fmt(v["change_pct"], "+.1f") + "%",
                         _fmt(v["p_value"], ".3f"), v["verdict"])
        print_table(rows)
        gate = result.get("gate")
        if gate:
            rows = Table("suite", "samples", "Δ score", "95% interval", "test", "p", "verdict",
                         title=f"answers: the lossy setting against f16 ({'passed' if gate['passed'] else 'not kept'})")
            for name, v in gate["suites"].items():
                rows.add_row(name, str(v["n"]), _fmt(v["delta"], "+.3f"),
                             f"[{_fmt(v['low'], '+.3f')}, {_fmt(v['high'], '+.3f')}]", v["test"],
                             _fmt(v["p_value"], ".3g"), v["verdict"])
            print_table(rows)
            click.echo(f"gate: {gate['why']} (sweep {gate['sweep']})" if not gate["suites"] else f"gate sweep: {gate['sweep']}")
        click.echo(f"recommended: {_describe(result['recommended'])} — {result['why']}")
    if run.profile:
        click.echo(f"profile: {run.profile} (halo serve {shlex.quote(run.spec.model)} uses it)")
    if run.server_command:
        click.echo(f"command: {run.server_command}")
    if run.error:
        click.echo(f"error: {run.error}")
    click.echo(f"path: {run.path}")


def _run_path(run_ref) -> Path:
    """RUN (a path, run name or tag), or the latest optimize run."""
    from ..optimize.run import KIND, resolve_optimize_run
    from ..runs import list_runs

    if run_ref is not None:
        return resolve_optimize_run(run_ref)
    found = list_runs(KIND)
    if not found:
        raise HaloError("no optimize runs yet: run `halo optimize MODEL`")
    return found[-1]


@optimize.command("show")
@click.argument("run_ref", required=False, metavar="[RUN]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def optimize_show(run_ref, as_json):
    """An optimize run (default: the latest): trials, confirmation, profile."""
    from ..optimize.run import load_optimize_run

    run = load_optimize_run(_run_path(run_ref))
    if as_json:
        emit_json(run)
        return
    show_run(run)


@optimize.command("compare")
@click.argument("run_refs", nargs=-1, required=True, metavar="RUN RUN...")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def optimize_compare(run_refs, as_json):
    """Optimize runs of one model and workload on different backends: each one's recommended
    settings measured again, interleaved (2 rounds of 5 repetitions; a comparison cut short
    continues), and which is fastest, each against it by `halo bench compare`'s rule."""
    from ..optimize.run import compare_backends, load_optimize_run, resolve_optimize_run

    found = [load_optimize_run(resolve_optimize_run(ref)) for ref in run_refs]
    with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
        comparison = compare_backends(found, on_status=spinner_status(spinner))
    if as_json:
        emit_json(comparison)
        return
    show_comparison(comparison, found[0].spec.model)


@optimize.command("report")
@click.argument("run_ref", required=False, metavar="[RUN]")
@click.option("-o", "--output", type=click.Path(path_type=Path), default=None,
              help="Folder for index.html and its PNGs (default: the run's report/).")
def optimize_report(run_ref, output):
    """An optimize run as a page: trajectory, Pareto front of pp vs tg, the journey from the
    defaults, the answers gate, every trial and the llama-server command; prints its path."""
    from ..optimize.report import write_optimize_report
    from ..optimize.run import load_optimize_run

    click.echo(str(write_optimize_report(load_optimize_run(_run_path(run_ref)), output)))


@optimize.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def optimize_list(as_json):
    """The profiles `halo optimize` wrote ($HALO_HOME/profiles)."""
    from ..llama.profile import list_profiles

    found = list_profiles()
    if as_json:
        emit_json([{"path": p, "profile": prof} for p, prof in found])
        return
    if not found:
        click.echo("no profiles yet: run `halo optimize MODEL`")
        return
    table = Table("model", "backend", "workload", "settings", "measured", "created", "file")
    for path, prof in found:
        if prof is None:
            table.add_row("?", "?", "?", "unreadable", "", "", Path(path).name)
            continue
        settings = prof.settings.describe() + (f" -np {prof.slots.parallel} (bench serve --slots)" if prof.slots else "")
        table.add_row(prof.model, prof.backend, prof.workload, settings, prof.summary(), prof.created,
                      Path(path).name)
    print_table(table)
