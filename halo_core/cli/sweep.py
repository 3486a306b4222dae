"""`halo sweep`: eval scores and speed of several server settings, with a paired test each."""

from __future__ import annotations

import sys

import click
from rich.markup import escape
from rich.table import Table

from ..sweep import run as lib
from ..errors import HaloError
from ..records import RunStatus
from ..llama.process import check_passthrough
from .common import PassThrough, backend_options, passthrough, emit_json, err_console, print_table, sigterm_as_interrupt
from .eval import _progress
from .serve import server_options, server_spec


def _table(sweep: lib.SweepRun) -> Table:
    table = Table("setting", "suite", "score [95%]", "n", "Δ [95%]", "p", "verdict", "pp t/s",
                  "tg t/s", "server tg t/s", "draft acc.", title=f"halo sweep (α = {sweep.alpha:g})")
    for result in sweep.results:
        speed = result.speed
        changes = {c.test: c for c in result.speed_changes}

        def ts(bench):
            if bench is None:
                return "-"
            change = changes.get(bench.test)
            return f"{bench.avg_ts:.2f}" + (f" ({change.change_pct:+.1f}%, {change.verdict})"
                                            if change and change.change_pct is not None else "")

        quality = {c.suite: c for c in result.quality}
        for score in result.scores or [None]:
            if score is None:
                table.add_row(escape(result.setting.name), "-", escape(f"{result.status}: {result.error}"),
                              *["-"] * 8)
                continue
            o, c = score.outcome, quality.get(score.suite)
            table.add_row(
                escape(result.setting.name), score.suite,
                f"{lib.fmt(o.mean)} [{lib.fmt(o.low)}, {lib.fmt(o.high)}]",
                f"{o.n}" + (f" (+{score.failed} failed)" if score.failed else ""),
                f"{c.paired.delta:+.3f} [{lib.fmt(c.paired.low)}, {lib.fmt(c.paired.high)}]" if c and c.paired.delta is not None else "-",
                lib.fmt(c.paired.p_value, 4) if c else "-", c.paired.verdict if c else "baseline" if result is sweep.results[0] else "-",
                ts(speed.pp if speed else None), ts(speed.tg if speed else None),
                lib.fmt(speed.server_gen_ts if speed else None, 2), lib.fmt(speed.draft_acceptance if speed else None))
    return table


def verdict_lines(sweep: lib.SweepRun) -> list[str]:
    """One line per setting and suite: the paired test's verdict in words."""
    lines = []
    for result in sweep.results[1:]:
        if result.status == lib.SettingStatus.FAILED:
            lines.append(f"{result.setting.name}: failed: {result.error}")
        for c in result.quality:
            t = c.paired
            line = (f"{result.setting.name} vs {c.baseline} · {c.suite}: {t.verdict} "
                    f"(Δ {t.delta:+.3f} [{lib.fmt(t.low)}, {lib.fmt(t.high)}], {t.test} p={lib.fmt(t.p_value, 4)}, "
                    f"{t.n} pairs: {t.worse} worse, {t.better} better"
                    + (f", {c.left_out} failed samples left out" if c.left_out else "") + ")")
            if t.verdict == "no difference" and t.needed:
                line += f"; ~{t.needed} pairs would detect a change of {abs(t.delta):.3f}"
            lines.append(line)
    return lines


@click.command(cls=PassThrough)
@click.argument("model", required=False)
@click.option("--vary", multiple=True, metavar="AXIS=V1,V2",
              help=f"Values to compare (repeatable; the first values make the baseline). Axes: "
                   f"{', '.join(lib.AXES)}. A model value may be a quantisation (Q8_0) that "
                   f"replaces the one in MODEL's name.")
@click.option("--suite", default="quick", show_default=True, help="Eval preset, suite, or a list.")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Samples per suite (with --until-decided, the most).")
@click.option("--until-decided", is_flag=True,
              help="Start at --step samples and double them until every paired test decides "
                   "or --limit is reached.")
@click.option("--step", type=click.IntRange(min=2), default=10, show_default=True,
              help="With --until-decided: samples of the first round.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Cap on generated tokens per request (default: each suite's own).")
@click.option("--timeout", type=click.FloatRange(min=1), default=300.0, show_default=True,
              help="Seconds per eval request.")
@server_options
@click.option("--seed", type=int, default=0, show_default=True, help="llama-server's sampling seed.")
@click.option("--pp", type=click.IntRange(min=1), default=512, show_default=True, help="llama-bench prompt tokens.")
@click.option("--tg", type=click.IntRange(min=1), default=128, show_default=True, help="llama-bench generated tokens.")
@click.option("--reps", type=click.IntRange(min=2), default=3, show_default=True, help="llama-bench repetitions.")
@click.option("--tag", default="sweep", show_default=True, help="Name of the run directory.")
@click.option("--resume", default=None, metavar="RUN", help="Continue a sweep cut short.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@passthrough
def sweep(model, vary, suite, limit, until_decided, step, max_tokens, timeout, seed, pp, tg, reps,
          tag, resume, as_json, extra, **server):
    """Eval scores and speed of server settings side by side, each against the first.

    The server options (--preset, --backend, -c, -np, --cache-type, --ngram, --no-think,
    --threads, --rpc, ...: `halo serve`'s) make every setting's base; a varied axis replaces
    its option's value. -np is also the number of concurrent eval requests. Anything after
    `--` goes to each llama-server as it is.

    \b
    halo sweep MODEL --vary kv=f16,q8_0,q4_0 --suite ifeval --limit 50
    halo sweep MODEL --vary kv=f16,q4_0 --vary ngram=off,on --suite code --until-decided
    halo sweep --preset coding --vary kv=q8_0,q4_0 --suite code
    halo sweep --resume RUN              continue a sweep cut short
    """
    spec = None
    if resume is None:
        if not (model or server["preset"]) or not vary:
            raise click.UsageError("give a MODEL and --vary AXIS=A,B (or --resume RUN)")
        if model and server["preset"]:
            raise click.UsageError("give a MODEL or --preset NAME, not both (the preset names its model)")
        try:
            axes = lib.parse_vary(vary)
            check_passthrough(extra)
        except HaloError as exc:
            raise click.UsageError(str(exc)) from None
        options = backend_options(server.pop("backend_opts"))
        base = server_spec(model, server.pop("preset"), extra=tuple(extra), **server)
        spec = lib.SweepSpec(server=base, vary=axes, suite=suite, limit=limit,
                             until_decided=until_decided, step=step, max_tokens=max_tokens,
                             timeout=timeout, seed=seed, pp=pp, tg=tg, reps=reps, tag=tag,
                             backend_options=options)
    elif model or vary or extra:
        raise click.UsageError("--resume takes no MODEL, --vary or llama-server arguments: the sweep's own are used")
    say = lambda msg: err_console.print(msg, highlight=False, markup=False)  # noqa: E731
    try:
        with sigterm_as_interrupt():
            run = lib.run_sweep(spec, resume=resume, on_status=say, on_progress=_progress)
    except KeyboardInterrupt:
        err_console.print("interrupted: finished settings are kept; continue with "
                          "`halo sweep --resume RUN`", highlight=False)
        sys.exit(130)
    try:
        report = lib.write_report(run)
    except HaloError as exc:  # matplotlib missing: the numbers are all in results.json
        report, note = None, str(exc)
    if as_json:
        emit_json({"path": run.path, "status": run.status, "error": run.error, "alpha": run.alpha,
                   "spec": run.spec, "results": run.results, "report": report})
    else:
        print_table(_table(run))
        for line in verdict_lines(run):
            click.echo(line)
        click.echo(f"report: {report}" if report else f"no report: {note}")
        click.echo(f"run: {run.path}")
    if run.status != RunStatus.COMPLETE:
        raise HaloError(f"sweep {run.status}: {run.error}")
