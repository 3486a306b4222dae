"""`halo optimize MODEL`: search llama.cpp's settings for this model here, keep the best as a
profile; `halo optimize show [RUN]`, `halo optimize report [RUN]` (a page), `halo optimize list`
(the profiles)."""

from __future__ import annotations

import shlex
from pathlib import Path

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
@click.option("--backend", default=None, help="Backend to measure on (default: the default backend).")
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
def optimize_run(model, backend, workload, pp, tg, depths, objective, budget, minutes, reps, allow_lossy,
                 eval_suite, limit, max_tokens, seed, tag, resume, backend_opts, as_json):
    """Search -ub, -b, -fa (and -t on a CPU build; K/V cache types with --allow-lossy) with
    llama-bench trials at the workload (Optuna's TPE; the defaults first; dominated settings
    pruned), confirm the winner against the defaults by `halo bench compare`'s rule (a lossy
    one also by --eval's paired test), and write the profile `halo serve` uses."""
    from ..optimize.run import OptimizeSpec, run_optimize
    from .bench import _parse_numbers

    if not model and not resume:
        raise click.UsageError("give a MODEL (or --resume RUN)")
    if allow_lossy and not eval_suite:
        raise click.UsageError("--allow-lossy needs --eval SUITE: a setting that changes answers is kept only "
                               "when the suite's paired test finds no regression")
    spec = None
    if not resume:
        fields = dict(model=model, workload=workload,
                      pp=pp, tg=tg, depths=_parse_numbers(depths, "--depths") if depths is not None else None,
                      objective=objective, budget=budget, minutes=minutes, reps=reps, seed=seed, tag=tag,
                      backend_options=backend_options(backend_opts), allow_lossy=allow_lossy,
                      eval=eval_suite or "", limit=limit, max_tokens=max_tokens)
        if backend:
            fields["backend"] = backend
        spec = OptimizeSpec(**fields)

    def said(trial) -> None:
        value = f"{trial.value:.2f}" if trial.value is not None else "-"
        err_console.print(f"  trial {trial.number}: {trial.settings.describe()} · {trial.state} · {value}"
                          + (f" · {trial.error}" if trial.error else ""), highlight=False, soft_wrap=True)

    with sigterm_as_interrupt(), err_console.status("starting", spinner="dots") as spinner:
        run = run_optimize(spec, resume=resume, on_status=spinner_status(spinner), on_trial=said)
    if as_json:
        emit_json(run)
        return
    show_run(run)


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
        from ..llama.profile import Settings
        from ..store import from_dict

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
        chosen = from_dict(Settings, result["recommended"])
        click.echo(f"recommended: {chosen.describe()} — {result['why']}")
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
