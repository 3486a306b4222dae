"""`halo audit`, `verify`, `tune` and `rollback` as library calls.

The tuners come from plugins (`get_host().all("tuners")`); this module plans with them,
validates, applies through the journal (journal.py), measures, and rolls back.
"""

from __future__ import annotations

import difflib
import math
import os
from pathlib import Path
from typing import Callable, Iterable

import attrs

from ..bench.run import run_bench
from ..errors import HaloError, TuneError, UnknownName
from ..evals.run import EvalSpec, resolve_suites, run_eval
from ..machine.hostfacts import is_live, read_facts
from ..interfaces import Tuner
from .journal import KERNEL_VALUES, OPEN, Journal, locked
from ..plugins import PluginHost, get_host
from ..llama.server import ServerSpec, start_server
from ..llama.process import free_port
from ..stats import compare_speed, speed_rule
from ..store import to_dict
from ..evals.compare import Comparison, compare_evals
from ..records import (
    AuditReport, BenchRun, BenchSpec, Change, ChangeKind, Check, HostFacts, JournalInfo, JournalStatus,
    MeasureSpec, Skipped, TunePlan, TuneStep, Verdict,
)

Status = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


def select_tuners(only: Iterable[str] | None = None, *, host: PluginHost | None = None) -> list[Tuner]:
    """The registered tuners in registration order, or those named in `only` (in that order)."""
    registered = (host or get_host()).all("tuners")
    if not only:
        return list(registered.values())
    picked = []
    for name in only:
        if name not in registered:
            raise UnknownName("tuner", name, list(registered))
        picked.append(registered[name])
    return picked


def _fitting(tuners: list[Tuner], facts: HostFacts) -> tuple[list[Tuner], list[Skipped]]:
    """The tuners that apply to the host `facts` describe, and the others with their reasons."""
    fit, skipped = [], []
    for tuner in tuners:
        answer = tuner.applies(facts)
        if answer.available:
            fit.append(tuner)
        else:
            skipped.append(Skipped(tuner.name, answer.reason, answer.hint))
    return fit, skipped


def _report(root: Path, only: Iterable[str] | None, host: PluginHost | None,
            facts: HostFacts) -> AuditReport:
    fit, skipped = _fitting(select_tuners(only, host=host), facts)
    checks, readings = [], {}
    for tuner in fit:
        checks += [attrs.evolve(c, tuner=tuner.name) for c in tuner.verify(Path(root))]
        found = tuner.readings(Path(root))
        if found is not None:
            readings[tuner.name] = found
    return AuditReport(facts, checks, skipped, readings)


def verify_report(root: Path = Path("/"), only: Iterable[str] | None = None, *,
                  host: PluginHost | None = None) -> AuditReport:
    """The checks of the selected tuners that apply to the host, and those that do not
    (skipped, with why); the facts are read once, from files and NVML, without the plugins'."""
    return _report(Path(root), only, host, read_facts(Path(root)))


def verify(root: Path = Path("/"), only: Iterable[str] | None = None, *,
           host: PluginHost | None = None) -> list[Check]:
    """Every selected tuner's checks of what is in effect, each tagged with its tuner; a
    tuner that does not apply to the host contributes none (see verify_report)."""
    return list(verify_report(root, only, host=host).checks)


def audit(root: Path = Path("/"), *, host: PluginHost | None = None) -> AuditReport:
    """Host facts (with what plugins know) plus the checks of every tuner that applies to the
    host, the tuners that do not, and the tuners' readings: `halo audit`."""
    host = host or get_host()
    return _report(Path(root), None, host, read_facts(Path(root), host=host))


def parse_settings(items: Iterable[str]) -> dict[str, dict[str, str]]:
    """["kernel.gtt_gib=48"] -> {"kernel": {"gtt_gib": "48"}}."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, eq, value = item.partition("=")
        tuner, dot, key = name.partition(".")
        if not (eq and dot and tuner and key):
            raise TuneError(f"bad setting '{item}': write TUNER.KEY=VALUE, e.g. kernel.gtt_gib=48")
        out.setdefault(tuner, {})[key] = value
    return out


def _refuse_misfits(skipped: list[Skipped], selected: int) -> None:
    """TuneError naming why, when a tuner of the `selected` says it does not apply to this host."""
    if not skipped:
        return
    first = skipped[0]
    names = [s.tuner for s in skipped if (s.reason, s.hint) == (first.reason, first.hint)]
    reason = first.reason
    if len(names) < selected:
        reason += f" (tuners {', '.join(names)})"
    raise TuneError(f"{reason}{'; ' + first.hint if first.hint else ''}; pass --force to tune it anyway"
                    + (", or leave them out with --only" if len(names) < selected else ""))


def plan_tuning(root: Path = Path("/"), only: Iterable[str] | None = None, *,
         settings: Iterable[str] = (), force: bool = False,
         host: PluginHost | None = None) -> TunePlan:
    """What `halo tune` would change: validated, nothing written.

    Without `only`, a tuner that does not apply to the host is left out (the plan lists it
    as skipped). Raises TuneError for a host a tuner named in `only` does not apply to, or
    that no tuner applies to (unless `force`), a setting or value a tuner rejects, or two
    tuners that would change the same target.
    """
    root = Path(root)
    tuners = select_tuners(only, host=host)
    skipped: list[Skipped] = []
    if not force:
        fit, skipped = _fitting(tuners, read_facts(root))
        if only:
            _refuse_misfits(skipped, len(tuners))
        elif not fit:  # no tuner is made for this host: the first one says why
            _refuse_misfits(skipped[:1], 1)
        tuners = fit
    by_name = {t.name: t for t in tuners}
    for name, values in parse_settings(settings).items():
        misfit = next((m for m in skipped if m.tuner == name), None)
        if misfit is not None:
            raise TuneError(f"setting for tuner '{name}', which does not apply to this host: "
                            f"{misfit.reason}; pass --force to tune it anyway")
        if name not in by_name:
            raise TuneError(f"setting for tuner '{name}', which is not selected "
                            f"(selected: {', '.join(by_name) or 'none'})")
        by_name[name] = by_name[name].configure(values)
    steps, owners = [], {}
    for tuner in by_name.values():
        changes = tuple(tuner.plan(root))
        for change in changes:
            key = (change.kind, change.target)
            if change.kind != ChangeKind.COMMAND and owners.setdefault(key, tuner.name) != tuner.name:
                raise TuneError(f"tuners '{owners[key]}' and '{tuner.name}' both change "
                                f"{change.target}: apply them one at a time with --only")
        steps.append(TuneStep(tuner.name, changes, tuner.guidance(root)))
    return TunePlan(root, is_live(root), steps, skipped)


# -- showing a plan ----------------------------------------------------------------------

def _show_change(change: Change, live: bool) -> list[str]:
    if change.kind == ChangeKind.FILE:
        before = (change.before or "").splitlines(keepends=True)
        after = (change.after or "").splitlines(keepends=True)
        old = change.target if change.before is not None else "/dev/null"
        new = change.target if change.after is not None else "/dev/null"
        lines = [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                 for line in difflib.unified_diff(before, after, old, new)]
        return "".join(lines).splitlines()
    if change.kind == ChangeKind.LINK:
        if change.after is None:
            return [f"- link {change.target} -> {change.before}"]
        return [f"+ link {change.target} -> {change.after}"]
    if change.kind in KERNEL_VALUES:
        return [f"~ {change.target}: {change.before} -> {change.after}"]
    lines = []
    note = "" if live else "   (recorded, not run: --root)"
    if change.argv:
        lines.append(f"$ {' '.join(change.argv)}{note}")
    if change.undo:
        lines.append(f"  rollback runs: {' '.join(change.undo)}")
    return lines


def render_plan(plan: TunePlan) -> str:
    """The plan as a diff: unified diffs for files, `~` for values, `$` for commands."""
    out = [f"# {line}" for line in skipped_lines(plan.skipped)]
    for step in plan.steps:
        head = f"# {step.tuner}: " + (f"{len(step.changes)} change(s)" if step.changes else "nothing to change")
        if step.needs_reboot:
            head += " (takes effect after a reboot)"
        out.append(head)
        for change in step.changes:
            out.append(f"# {change.description}")
            out += _show_change(change, plan.live)
        if step.guidance:
            out += [f"! {line}" for line in step.guidance.splitlines()]
        out.append("")
    return "\n".join(out)


def skipped_lines(skipped: Iterable[Skipped]) -> list[str]:
    """One line per reason: "not for this host: kernel, vram — this host is not ..."."""
    groups: dict[tuple[str, str], list[str]] = {}
    for s in skipped:
        groups.setdefault((s.reason, s.hint), []).append(s.tuner)
    return [f"not for this host: {', '.join(names)} — {reason}" + (f"; {hint}" if hint else "")
            for (reason, hint), names in groups.items()]


# -- applying ----------------------------------------------------------------------------

def _open_journal(root: Path) -> Journal | None:
    return next((j for j in Journal.all(root) if j.status in OPEN), None)


def _check_can_write(root: Path, live: bool) -> None:
    if live and os.geteuid() != 0:
        raise TuneError("applying changes to this machine writes /etc and /sys: run it as root "
                        "(sudo), or pass --root DIR to work on a copy")
    journal = _open_journal(root)
    if journal is not None:
        raise TuneError(f"journal {journal.path.name} was interrupted while "
                        f"{journal.status.replace('-', ' ')}: run `{'sudo ' if live else ''}halo rollback"
                        f"{'' if live else ' --root ' + str(root)}` to finish undoing it first")


def _measure(spec: MeasureSpec, label: str, host: PluginHost | None, status: Status) -> dict:
    """The bench, and with spec.eval the eval suites against a server started for them."""
    status(f"measuring ({label})")
    run = run_bench(BenchSpec(models=(spec.model,), backends=(spec.backend,), pp=spec.pp,
                              tg=spec.tg, reps=spec.reps, tag=f"tune-{label}",
                              threads=spec.threads), host=host, record=False)
    measured = {"run": str(run.path), "results": bench_results(run)}
    if spec.eval:
        status(f"evaluating {spec.eval} ({label})")
        server = start_server(ServerSpec(model=spec.model, backend=spec.backend, port=free_port(),
                                  ctx=spec.ctx, threads=spec.threads, extra=("--seed", "0")), host=host)
        try:
            evaluation = run_eval(EvalSpec(suites=resolve_suites(spec.eval, host), selection=spec.eval,
                                           limit=spec.eval_limit, concurrency=1,
                                           max_tokens=spec.max_tokens),
                                  endpoint=server.info.url, host=host)
        finally:
            server.stop()
        measured["eval"] = str(evaluation.path)
    return measured


def bench_results(run: BenchRun) -> list[dict]:
    """A bench run's results as the journal keeps them and the rule compares them."""
    return [{"test": r.test, "avg_ts": r.avg_ts, "stddev_ts": r.stddev_ts, "samples_ts": list(r.samples_ts)}
            for r in run.results]


@attrs.frozen
class _Speed:
    """Each common test judged by the speed rule, sorted by what the step's policy makes of it."""

    deltas: dict  # relative change per test
    verdicts: dict  # the rule's verdict per test
    worse: list[str]  # slower by the rule and by more than min_effect
    better: list[str]  # faster likewise
    small: list[str]  # slower or faster by the rule, by less than min_effect
    broken: list[str]  # a baseline test the after-run lacks, or a figure that is not finite


def _speed(before: list[dict], after: list[dict], min_effect: float) -> _Speed:
    speed = _Speed({}, {}, [], [], [], [])
    after_by_test = {r["test"]: r for r in after}
    for b in before:
        a = after_by_test.get(b["test"])
        if a is None:  # the after-run failed this test: a broken step is not "no change"
            speed.broken.append(f"{b['test']} not measured after the step")
            continue
        c = compare_speed(b.get("samples_ts") or [], a.get("samples_ts") or [])
        have_samples = c.before is not None and c.after is not None
        mean_b, mean_a = (c.before, c.after) if have_samples else (b.get("avg_ts"), a.get("avg_ts"))
        if not all(isinstance(m, (int, float)) and math.isfinite(m) for m in (mean_b, mean_a)):
            speed.broken.append(f"{b['test']} {mean_b} -> {mean_a} t/s is not a measurement")
            continue
        if mean_b <= 0:
            continue
        delta = (mean_a - mean_b) / mean_b
        speed.deltas[b["test"]] = delta
        speed.verdicts[b["test"]] = c.verdict
        shown = f"{b['test']} {mean_b:.2f} -> {mean_a:.2f} t/s ({delta:+.1%})"
        if c.verdict in ("slower", "faster") and abs(delta) <= min_effect:
            speed.small.append(f"{shown} {c.verdict} beyond noise")
        elif c.verdict in ("slower", "faster"):
            (speed.worse if c.verdict == "slower" else speed.better).append(shown)
    return speed


def _changes(speed: _Speed, quiet: str, small: str) -> str:
    """What the tests did when none decided the step: `quiet`, or the changes under min_effect."""
    if speed.small:
        return f"{small}: " + ", ".join(speed.small)
    return f"{quiet}: " + (", ".join(f"{t} {d:+.1%}" for t, d in speed.deltas.items()) or "no common tests")


def _judged(step: str, worse: bool, speed: _Speed, detail: str) -> Verdict:
    return Verdict(step, worse, speed.deltas, detail, speed_rule(), speed.verdicts)


def compare(step: str, before: list[dict], after: list[dict], min_effect: float = 0.05) -> Verdict:
    """Is `after` worse than `before` beyond noise? (rule: see MeasureSpec)."""
    speed = _speed(before, after, min_effect)
    if speed.broken:
        return _judged(step, True, speed, "measurement failed: " + ", ".join(speed.broken))
    if speed.worse:
        return _judged(step, True, speed, "worse beyond noise: " + ", ".join(speed.worse))
    return _judged(step, False, speed, _changes(speed, "within noise or better",
                                               f"under --min-effect {min_effect:.0%}"))


def gate(step: str, before: list[dict], after: list[dict], quality: list[Comparison],
         min_effect: float = 0.05) -> Verdict:
    """`halo tune --measure --eval`: keep a step only when it is faster beyond noise and no
    suite's paired test finds its answers worse (`quality`: after against before)."""
    speed = _speed(before, after, min_effect)
    regressed = [c for c in quality if c.paired.verdict == "worse"]
    answers = ", ".join(f"{c.suite} {c.paired.verdict} (Δ {c.paired.delta:+.3f}, {c.paired.test} "
                        f"p={c.paired.p_value:.4f}, {c.paired.n} pairs)" for c in quality) or "no common samples"
    reasons = []
    if speed.broken:
        reasons.append("measurement failed: " + ", ".join(speed.broken))
    if speed.worse:
        reasons.append("slower beyond noise: " + ", ".join(speed.worse))
    elif not speed.better:
        reasons.append(_changes(speed, "not faster beyond noise",
                                f"not faster by more than --min-effect {min_effect:.0%}"))
    if regressed:
        reasons.append("answers worse: " + answers)
    if reasons:
        return _judged(step, True, speed, "; ".join(reasons))
    return _judged(step, False, speed, "faster beyond noise: " + ", ".join(speed.better) + "; answers " + answers)


def _verdict(step: str, before: dict, after: dict, spec: MeasureSpec) -> tuple[Verdict, list[Comparison]]:
    if not spec.eval:
        return compare(step, before["results"], after["results"], spec.min_effect), []
    quality = compare_evals(Path(before["eval"]), Path(after["eval"]), baseline="before")
    return gate(step, before["results"], after["results"], quality, spec.min_effect), quality


def apply_tuning(plan: TunePlan, *, measure: MeasureSpec | None = None, on_status: Status | None = None,
          host: PluginHost | None = None) -> JournalInfo | None:
    """Apply a plan as one journaled transaction; None when there is nothing to change.

    Any error rolls back what was applied. With `measure`, the bench runs before the first
    step and after each step; a step worse beyond noise is rolled back on the spot, and steps
    that need a reboot wait for `resume()` after it.
    """
    status = on_status or _quiet
    root = plan.root
    with locked():
        _check_can_write(root, plan.live)
        if not plan.changes:
            return None
        baseline = _measure(measure, "baseline", host, status) if measure else None
        journal = Journal.create(plan, boot_id=read_facts(root).boot_id,
                                 measure=attrs.asdict(measure) if measure else None)
        if baseline:
            journal.event("measure", step=None, phase="baseline", **baseline)
        pending = []
        try:
            for step in plan.steps:
                if not step.changes:
                    continue
                status(f"applying {step.tuner}")
                for i in journal.step_changes(step.tuner):
                    journal.apply(i)
                if measure is None:
                    continue
                if step.needs_reboot:
                    pending.append(step.tuner)
                    continue
                after = _measure(measure, step.tuner, host, status)
                journal.event("measure", step=step.tuner, phase="after", **after)
                verdict, quality = _verdict(step.tuner, baseline, after, measure)
                journal.event("verdict", **attrs.asdict(verdict), quality=to_dict(quality))
                if verdict.worse:
                    status(f"rolling back {step.tuner}: {verdict.detail}")
                    _undo_or_raise(journal, journal.step_changes(step.tuner))
                else:
                    baseline = after
        except (HaloError, OSError, KeyboardInterrupt) as exc:
            message = str(exc) if isinstance(exc, HaloError) else f"{type(exc).__name__}: {exc}"
            journal.update(status=JournalStatus.ROLLING_BACK, error=message)
            errors = journal.undo()
            if errors:
                raise TuneError(f"{message}; rollback left changes in place ({errors[0]}): "
                                f"run `halo rollback` again once fixed") from exc
            journal.update(status=JournalStatus.ROLLED_BACK)
            if isinstance(exc, KeyboardInterrupt):
                raise
            raise TuneError(f"{message}; everything this run changed was rolled back "
                            f"(journal {journal.path.name})") from exc
        if baseline is not None:
            journal.event("measure", step=None, phase="final", **baseline)
        left = journal.info().applied  # measured steps that made things worse are undone
        journal.update(status=JournalStatus.APPLIED if left else JournalStatus.ROLLED_BACK,
                       pending_measure=pending)
        return journal.info()


def _undo_or_raise(journal: Journal, indexes: list[int] | None = None) -> None:
    errors = journal.undo(indexes)
    if errors:
        raise TuneError(f"rollback of journal {journal.path.name} failed: {errors[0]}")


def resume_tuning(root: Path = Path("/"), *, on_status: Status | None = None,
           host: PluginHost | None = None) -> JournalInfo:
    """After the reboot: measure the steps that waited for it, roll them back when worse."""
    status = on_status or _quiet
    root = Path(root)
    with locked():
        newest = next((j for j in Journal.all(root) if j.status != JournalStatus.ROLLED_BACK), None)
        journal = newest if newest is not None and newest.header.get("pending_measure") \
            and newest.status == JournalStatus.APPLIED else None
        if journal is None and any(j.header.get("pending_measure") for j in Journal.all(root)):
            raise TuneError(f"nothing to resume: journal {newest.path.name if newest else '?'} is newer "
                            f"than the one waiting for a measurement (only the newest resumes)")
        if journal is None:
            raise TuneError(f"nothing to resume: no journal of {root} waits for a measurement "
                            f"after a reboot")
        pending = journal.header["pending_measure"]
        if read_facts(root).boot_id == journal.header.get("boot_id"):
            raise TuneError(f"the {', '.join(pending)} changes of journal {journal.path.name} take "
                            f"effect after a reboot: reboot, then run halo tune --measure --resume")
        spec = MeasureSpec(**journal.header["measure"])
        before = next(e for e in reversed(journal.events("measure")) if e["phase"] == "final")
        after = _measure(spec, "+".join(pending), host, status)
        step = "+".join(pending)
        journal.event("measure", step=step, phase="after-reboot", **after)
        verdict, quality = _verdict(step, before, after, spec)
        journal.event("verdict", **attrs.asdict(verdict), quality=to_dict(quality))
        if verdict.worse:
            status(f"rolling back {step}: {verdict.detail}")
            _undo_or_raise(journal, [i for name in pending for i in journal.step_changes(name)])
        journal.update(pending_measure=[], status=JournalStatus.APPLIED if journal.info().applied
                       else JournalStatus.ROLLED_BACK)
        return journal.info()


def list_journals(root: Path | None = None) -> list[JournalInfo]:
    """Every journal (of one sysroot when given), newest first."""
    return [j.info() for j in Journal.all(root)]


def rollback(root: Path = Path("/"), journal_id: str | None = None, *, force: bool = False) -> JournalInfo:
    """Undo the newest transaction on `root` that is not rolled back yet (or finish one a
    crash interrupted): files come back byte for byte, values and commands are reversed,
    generated boot files are made again. A file edited since halo wrote it is refused (with
    the diff) unless `force`."""
    root = Path(root)
    with locked():
        candidates = [j for j in Journal.all(root) if j.status != JournalStatus.ROLLED_BACK]
        if not candidates:
            raise TuneError(f"nothing to roll back: no applied journal for {root.resolve()}")
        journal = candidates[0]
        if journal_id is not None and journal.path.name != journal_id:
            if any(j.path.name == journal_id for j in candidates):
                raise TuneError(f"journal {journal.path.name} is newer than {journal_id}: "
                                f"roll it back first")
            raise TuneError(f"no journal {journal_id} to roll back for {root.resolve()}")
        if journal.live and os.geteuid() != 0:
            raise TuneError("rolling back changes to this machine writes /etc and /sys: "
                            "run it as root (sudo)")
        journal.update(status=JournalStatus.ROLLING_BACK)
        errors = journal.undo(force=force)
        if errors:
            raise TuneError(f"rollback of journal {journal.path.name} left {len(errors)} "
                            f"change(s) in place: fix that and run halo rollback again\n" + "\n".join(errors))
        journal.update(status=JournalStatus.ROLLED_BACK)
        return journal.info()


def needs_reboot(info: JournalInfo) -> bool:
    journal = Journal(info.path)
    return any(journal.changes[i].needs_reboot for i in journal.begun())


__all__ = ["audit", "verify", "verify_report", "skipped_lines", "plan_tuning", "apply_tuning", "resume_tuning", "rollback",
           "list_journals", "render_plan", "compare", "gate", "parse_settings", "select_tuners"]
