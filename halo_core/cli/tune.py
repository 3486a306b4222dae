"""`halo audit`, `halo verify`, `halo tune`, `halo rollback`: system tuning as a transaction."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..tune import tuning as lib
from ..evals.run import resolve_suites
from ..machine.gpu import NVIDIA
from ..machine.hostfacts import GIB
from ..records import Check, HostFacts, JournalInfo, MeasureSpec
from .common import emit_json, err_console, print_table, sigterm_as_interrupt, split_list

STYLE = {"PASS": "green", "WARN": "yellow", "FAIL": "red"}

root_option = click.option(
    "--root", "root", type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=Path("/"), show_default=True,
    help="Sysroot to read and change instead of this machine (commands are not run there).")


def _root_arg(root: Path) -> str:
    return "" if root.resolve() == Path("/") else f" --root {root}"


def _gib(n: int | None) -> str:
    if n is None:
        return "?"
    return f"{n / GIB:.1f} GiB" if n >= GIB else f"{n / (1 << 20):.0f} MiB"


def _gpu_row(f: HostFacts) -> str:
    """The amdgpu card, else the NVIDIA GPUs (the first one's facts and how many more)."""
    if f.amd_gpu:
        gpu = f.amd_gpu
        return (f"{gpu.card} {gpu.vendor}:{gpu.device} · VRAM {_gib(gpu.vram_used)} / {_gib(gpu.vram_total)}"
                f" · GTT {_gib(gpu.gtt_used)} / {_gib(gpu.gtt_total)}")
    nvidia = [g for g in f.gpus if g.vendor == NVIDIA]
    if not nvidia:
        return "no amdgpu or NVIDIA GPU"
    gpu = nvidia[0]
    more = f" · {len(nvidia) - 1} more" if len(nvidia) > 1 else ""
    return (f"{gpu.card} {gpu.name} · VRAM {_gib(gpu.vram_used)} / {_gib(gpu.vram_total)} · driver "
            f"{gpu.driver_version or '?'} · CUDA {gpu.cuda_version or '?'} · compute {gpu.compute_capability or '?'}"
            + more)


def checks_table(checks: list[Check]) -> Table:
    table = Table("", "check", "tuner", "seen", "fix")
    for c in checks:
        table.add_row(f"[{STYLE[c.status]}]{c.status}[/]", c.name, c.tuner, escape(c.detail),
                      escape(c.fix))
    return table


def _summary(checks: list[Check]) -> str:
    counts = {s: sum(c.status == s for c in checks) for s in STYLE}
    return (f"{counts['PASS']}/{len(checks)} PASS, {counts['WARN']} WARN, {counts['FAIL']} FAIL")


@click.command()
@root_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def audit(root, as_json):
    """One screen: what this machine is and runs, and how well it is tuned."""
    report = lib.audit(root)
    if as_json:
        passed, total = report.score
        emit_json({"facts": report.facts, "checks": report.checks, "skipped": report.skipped,
                   "readings": report.readings, "score": {"pass": passed, "total": total}})
        return
    f = report.facts
    rows = [
        ("host", f"{f.cpu_model or '?'} · {f.os_name or f.os_id or '?'}" + ("" if f.live else f" · sysroot {root}")),
        ("memory", f"{_gib(f.installed_ram)} installed · {_gib(f.mem_total)} seen by the OS · "
                   f"{_gib(f.mem_available)} available"),
        ("gpu", _gpu_row(f)),
        ("kernel", f"{f.kernel or '?'} · linux-firmware {f.firmware or '?'}"),
        ("cmdline", f.cmdline or "?"),
        ("vm", f"THP {f.thp_enabled or '?'} (defrag {f.thp_defrag or '?'}) · "
                   + " ".join(f"{k.removeprefix('vm.')}={v}" for k, v in f.sysctls.items())),
        ("vulkan", f"ICDs: {', '.join(f.vulkan_icds) or 'none'}"),
        # what plugins know (their host_facts hooks): tuned, power limits, ROCm, toolboxes
        *((label, line) for lines in f.extra.values() for label, line in lines.items()),
    ]
    console = Console()
    for name, value in rows:  # one line each: the whole audit fits one screen
        console.print(f"[bold]{name:<9}[/]{escape(value)}", no_wrap=True, overflow="ellipsis")
    console.print()
    tuner_w = max((len(c.tuner) for c in report.checks), default=0)
    name_w = max((len(c.name) for c in report.checks), default=0)
    for c in report.checks:
        console.print(f"[{STYLE[c.status]}]{c.status}[/]  {c.tuner:<{tuner_w}}  {c.name:<{name_w}}  "
                      f"{escape(c.detail)}", no_wrap=True, overflow="ellipsis")
    for line in lib.skipped_lines(report.skipped):  # the whole reason: halo audit --json
        console.print(escape(line), no_wrap=True, overflow="ellipsis", highlight=False)
    passed, total = report.score
    per_tuner = {}
    for c in report.checks:
        done, count = per_tuner.get(c.tuner, (0, 0))
        per_tuner[c.tuner] = (done + (c.status == "PASS"), count + 1)
    parts = [f"{t} {d}/{n}" for t, (d, n) in per_tuner.items()] + ["fixes: halo verify" + _root_arg(root)]
    console.print(f"\n[bold]score {passed}/{total}[/] · " + " · ".join(parts))


@click.command()
@root_option
@click.option("--only", multiple=True, help="Tuners to check (comma-separated or repeated).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def verify(ctx, root, only, as_json):
    """The checklist of the tuners that apply to this host (9 points on a Strix Halo): PASS,
    WARN or FAIL, and the fix.

    Exits 1 when a check FAILs, or when no tuner named in --only applies to this host.
    """
    selected = split_list(only) or None
    report = lib.verify_report(root, selected)
    if selected and len(report.skipped) == len(selected):
        raise click.ClickException("; ".join(lib.skipped_lines(report.skipped)))
    checks = list(report.checks)
    if as_json:
        emit_json(checks)
    else:
        if checks:
            print_table(checks_table(checks))
        for line in lib.skipped_lines(report.skipped):
            click.echo(line)
        click.echo(_summary(checks))
    if any(c.status == "FAIL" for c in checks):
        ctx.exit(1)


def _print_verdicts(info: JournalInfo, *, last: bool = False) -> None:
    for v in info.verdicts[-1:] if last else info.verdicts:
        mark = "rolled back" if v.worse else "kept"
        click.echo(f"measured {v.step}: {mark}: {v.detail}")


@click.command()
@click.option("--only", multiple=True, help="Tuners to run (comma-separated or repeated).")
@click.option("--apply", "do_apply", is_flag=True, help="Make the changes (root, or a --root).")
@click.option("--measure", is_flag=True,
              help="Apply step by step with a bench before and after each; roll back a step "
                   "that makes things worse beyond noise.")
@click.option("--resume", is_flag=True,
              help="With --measure, after the reboot: measure the steps that waited for it.")
@root_option
@click.option("--force", is_flag=True, help="Tune a host that is not an AMD APU.")
@click.option("--set", "settings", multiple=True, metavar="TUNER.KEY=VALUE",
              help="A tuner setting, e.g. kernel.gtt_gib=48 or power.watts=70.")
@click.option("--model", default=None,
              help="Bench model for --measure (default: the default model, `halo plugins` shows it).")
@click.option("--pp", type=click.IntRange(min=0), default=512, show_default=True)
@click.option("--tg", type=click.IntRange(min=0), default=128, show_default=True)
@click.option("--reps", type=click.IntRange(min=2), default=5, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the bench.")
@click.option("--min-effect", type=click.FloatRange(0, 1), default=0.05, show_default=True,
              help="Smallest relative slowdown beyond noise (bench compare's rule) that undoes a step.")
@click.option("--eval", "eval_suite", default=None, metavar="SUITE",
              help="With --measure: also run these eval suites (or preset) on a server of --model "
                   "before and after each step; keep a step only when it is faster beyond noise "
                   "and the paired test finds no answers worse.")
@click.option("--eval-limit", type=click.IntRange(min=1), default=20, show_default=True,
              help="Samples per suite for --eval.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None,
              help="Cap on generated tokens per --eval request (default: each suite's own).")
@click.option("-c", "--ctx", type=click.IntRange(min=256), default=8192, show_default=True,
              help="Context of the --eval server.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def tune(only, do_apply, measure, resume, root, force, settings, model, pp, tg, reps, threads,
         min_effect, eval_suite, eval_limit, max_tokens, ctx, as_json):
    """Show the tuning plan as a diff (dry run), or apply it as a transaction."""
    if resume and not measure:
        raise click.UsageError("--resume goes with --measure: halo tune --measure --resume")
    if eval_suite and not measure:
        raise click.UsageError("--eval goes with --measure: halo tune --measure --eval SUITE")
    if eval_suite and resume:
        raise click.UsageError("--resume measures with the journal's own --eval: give neither")
    if resume and (only or settings or force):
        raise click.UsageError("--resume takes no --only, --set or --force: it measures the "
                               "journal's waiting steps")
    if measure and pp == 0 and tg == 0:
        raise click.UsageError("--pp and --tg cannot both be 0")
    if eval_suite:
        resolve_suites(eval_suite)  # an unknown suite is an error before anything is measured
    status = (lambda msg: err_console.print(escape(msg))) if not as_json else None
    if resume:
        try:
            with sigterm_as_interrupt():  # SIGTERM (`kill`, a shutdown) stops it like Ctrl-C
                info = lib.resume_tuning(root, on_status=status)
        except KeyboardInterrupt:
            err_console.print("interrupted: the steps still wait for their measurement; run "
                              "halo tune --measure --resume again", highlight=False)
            sys.exit(130)
        if as_json:
            emit_json(info)
            return
        _print_verdicts(info, last=True)
        if info.verdicts and info.verdicts[-1].worse:
            click.echo("reboot again to bring back the previous kernel parameters")
        return
    plan = lib.plan_tuning(root, split_list(only) or None, settings=settings, force=force)
    if not (do_apply or measure):
        if as_json:
            emit_json({"dry_run": True, "plan": plan})
            return
        click.echo(lib.render_plan(plan), nl=False)
        if plan.changes:
            sudo = "sudo " if plan.live else ""
            click.echo(f"dry run: nothing written. Apply with: {sudo}halo tune{_root_arg(root)}"
                       f"{' --only ' + ','.join(split_list(only)) if only else ''} --apply")
        return
    spec = MeasureSpec(**({"model": model} if model else {}), pp=pp, tg=tg, reps=reps,
                       threads=threads, min_effect=min_effect, eval=eval_suite,
                       eval_limit=eval_limit, max_tokens=max_tokens, ctx=ctx) if measure else None
    if not as_json:
        click.echo(lib.render_plan(plan), nl=False)
    try:
        with sigterm_as_interrupt():  # SIGTERM during apply or measure rolls back like Ctrl-C
            info = lib.apply_tuning(plan, measure=spec, on_status=status)
    except KeyboardInterrupt:
        err_console.print("interrupted: what this run changed was rolled back "
                          f"(halo rollback{_root_arg(root)} --list shows the journal)", highlight=False)
        sys.exit(130)
    if as_json:
        emit_json({"dry_run": False, "plan": plan, "journal": info})
        return
    if info is None:
        click.echo("nothing to change: already tuned")
        return
    _print_verdicts(info)
    click.echo(f"applied {info.applied} change(s); journal {info.id}; undo with: "
               f"{'sudo ' if plan.live else ''}halo rollback{_root_arg(root)}")
    if lib.needs_reboot(info):
        then = " then: halo tune --measure --resume" + _root_arg(root) if info.pending_measure else ""
        click.echo(f"reboot for the kernel changes to take effect;{then}".rstrip(";"))


@click.command()
@root_option
@click.option("--journal", "journal_id", default=None, help="The journal to undo (default: newest).")
@click.option("--list", "list_", is_flag=True, help="List the journals instead.")
@click.option("--force", is_flag=True, help="Restore halo's backups over files edited since halo wrote them.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
def rollback(root, journal_id, list_, force, as_json):
    """Undo the newest tuning transaction (or finish one a crash interrupted)."""
    if list_:
        infos = lib.list_journals(root)
        if as_json:
            emit_json(infos)
            return
        table = Table("journal", "status", "changes", "applied", "undone", "waiting", "error")
        for i in infos:
            table.add_row(i.id, i.status, str(i.changes), str(i.applied), str(i.undone),
                          ", ".join(i.pending_measure), escape(i.error))
        print_table(table)
        return
    info = lib.rollback(root, journal_id, force=force)
    if as_json:
        emit_json(info)
        return
    click.echo(f"rolled back journal {info.id}: {info.undone} change(s) undone")
