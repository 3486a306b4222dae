"""`halo eval`: run eval suites against a detected server; list, show and compare runs."""

from __future__ import annotations

import sys

import click
from rich.table import Table

from ..evals import run as evals
from ..errors import HaloError
from ..records import RunStatus
from .common import HaloGroup, emit_json, err_console, print_table


def _datasets(values: tuple[str, ...], suites: list[str]) -> dict[str, str]:
    """--dataset SUITE=PATH (repeatable), or a bare PATH when one suite runs."""
    found = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in suites:
            found[name] = path
        elif len(suites) == 1 and not (sep and name in evals.presets()):
            found[suites[0]] = value
        else:
            raise click.UsageError(f"--dataset {value}: use SUITE=PATH with one of "
                                   f"{', '.join(suites)}")
    return found


def _progress(suite: str, done: int, total: int) -> None:
    if sys.stderr.isatty() or done == total or done % 10 == 0:
        err_console.print(f"{suite}: {done}/{total} replies", highlight=False)


def _scores_table(run: evals.EvalRun) -> Table:
    table = Table("suite", "status", "scores", "samples", "failed")
    for suite, score in run.scores.items():
        shown = ", ".join(f"{k} {v:.3f}" for k, v in score.scores.items())
        table.add_row(suite, score.status, shown or score.error,
                      "-" if score.samples is None else str(score.samples),
                      str(score.failed) if score.samples is not None or score.failed else "-")
    return table


@click.group(cls=HaloGroup, invoke_without_command=True)
@click.option("--suite", default=None, help="Preset (quick, code, tooluse, full), suite, or a list.")
@click.option("--endpoint", default=None, help="OpenAI-compatible server URL (default: detect).")
@click.option("--model", default=None, help="Model id to request (default: from /v1/models).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="At most N samples per suite.")
@click.option("--concurrency", type=click.IntRange(min=1), default=None,
              help="Parallel requests (default: the server's slot count, else 1).")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds per request.")
@click.option("--retries", type=click.IntRange(min=0), default=3, show_default=True,
              help="Retries per request on connection errors and HTTP 5xx.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Cap on generated tokens per request (default: each suite's own).")
@click.option("--dataset", "datasets", multiple=True, metavar="[SUITE=]PATH",
              help="Local data for a suite instead of its default (repeatable).")
@click.option("--resume", default=None, metavar="RUN", help="Continue an interrupted run.")
@click.option("--unsafe-local-exec", is_flag=True,
              help="Where no sandbox (bubblewrap) can be had, score model-written code with your "
                   "own rights (never as root). Read docs/security.md first.")
@click.option("--api-key", envvar="HALO_API_KEY", default=None,
              help="The server's key, sent as a bearer token [env: HALO_API_KEY]; never saved.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def eval(ctx, suite, endpoint, model, limit, concurrency, timeout, retries, max_tokens, datasets,
         resume, unsafe_local_exec, api_key, as_json):
    """Evaluate the model behind an OpenAI-compatible server.

    \b
    halo eval --suite quick              humaneval+ and ifeval against a detected server
    halo eval --suite code --limit 20    the code suites on 20 samples each
    halo eval list | show RUN | compare RUN RUN
    halo eval suites                     what is installed, presets, where data comes from
    """
    if ctx.invoked_subcommand is not None:
        if suite or resume:
            raise click.UsageError("--suite/--resume go with `halo eval` itself, not a subcommand")
        return
    if not suite and not resume:
        raise click.UsageError("give --suite (quick, code, tooluse, full or a suite name) or --resume RUN")
    spec = None
    if resume is None:
        names = evals.resolve_suites(suite)
        spec = evals.EvalSpec(suites=names, selection=suite, limit=limit, concurrency=concurrency,
                              timeout=timeout, retries=retries, max_tokens=max_tokens,
                              datasets=_datasets(datasets, names), unsafe_local_exec=unsafe_local_exec)
    say = lambda msg: err_console.print(msg, highlight=False, markup=False)  # noqa: E731
    try:
        run = evals.run_eval(spec, endpoint=endpoint, model=model, resume=resume, on_status=say,
                             on_progress=_progress, api_key=api_key)
    except KeyboardInterrupt:
        err_console.print("interrupted: the partial run is kept; continue it with "
                          "`halo eval --resume RUN`", highlight=False)
        sys.exit(130)
    if as_json:
        emit_json({"path": run.path, "status": run.status, "error": run.error,
                   "endpoint": run.endpoint, "scores": run.scores})
        if run.status != RunStatus.COMPLETE:
            sys.exit(1)
        return
    print_table(_scores_table(run))
    click.echo(f"run: {run.path}")
    if run.status != RunStatus.COMPLETE:
        raise HaloError(f"run {run.status}: {run.error}; continue it with "
                        f"`halo eval --resume {run.path.name}`")


@eval.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def suites(as_json):
    """The registered suites: available here or not (and how to install), presets, data."""
    rows = evals.describe_suites()
    if as_json:
        emit_json(rows)
        return
    table = Table("suite", "available", "presets", "default data", "frameworks")
    for row in rows:
        table.add_row(row["name"], "yes" if row["available"] else f"no: {row['reason']}",
                      ", ".join(row["presets"]), row["data"],
                      ", ".join(f"{d} {v}" for d, v in row["frameworks"].items()))
    print_table(table)


@eval.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def list_(as_json):
    """Eval runs, oldest first: status, model, headline score per suite."""
    rows = []
    for path in evals.list_eval_runs():
        run = evals.load_eval_run(path)
        rows.append({"name": path.name, "status": run.status, "model": run.endpoint.get("model", ""),
                     "scores": {s: score.headline for s, score in run.scores.items()}})
    if as_json:
        emit_json(rows)
        return
    table = Table("run", "status", "model", "scores")
    for row in rows:
        shown = ", ".join(f"{s} {v:.3f}" if v is not None else f"{s} -" for s, v in row["scores"].items())
        table.add_row(row["name"], row["status"], row["model"], shown)
    print_table(table)


@eval.command()
@click.argument("run_ref")
@click.option("--samples", is_flag=True, help="Also list every sample.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def show(run_ref, samples, as_json):
    """One run: endpoint, status, scores per suite (and samples)."""
    run = evals.load_eval_run(evals.resolve_eval_run(run_ref))
    listed = {s: evals.load_samples(run.path, s) for s in run.scores} if samples else {}
    if as_json:
        emit_json({"path": run.path, "status": run.status, "error": run.error, "spec": run.spec,
                   "endpoint": run.endpoint, "scores": run.scores, "samples": listed})
        return
    click.echo(f"run: {run.path}\nstatus: {run.status}{' (' + run.error + ')' if run.error else ''}")
    click.echo(f"model: {run.endpoint.get('model', '?')} at {run.endpoint.get('base_url', '?')}")
    print_table(_scores_table(run))
    for suite, items in listed.items():
        table = Table("sample", "score", "passed", "error", title=suite)
        for item in items:
            table.add_row(item.id, f"{item.score:.3f}", "yes" if item.passed else "no", item.error)
        print_table(table)


@eval.command("compare")
@click.argument("runs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def compare_(runs, as_json):
    """Headline score per suite across runs."""
    paths = [evals.resolve_eval_run(r) for r in runs]
    rows = evals.compare_eval_runs(paths)
    if as_json:
        emit_json(rows)
        return
    table = Table("suite", *[p.name for p in paths])
    for row in rows:
        table.add_row(row["suite"], *["-" if v is None else f"{v:.3f}" + (
            f" ({row['failed'][name]} failed)" if row["failed"][name] else "")
            for name, v in row["runs"].items()])
    print_table(table)
