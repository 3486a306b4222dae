"""The journal on the live path: commands run and are undone, the files they rewrite come back
byte for byte, kernel values are written and restored by value, a failing command rolls the
transaction back."""

from __future__ import annotations

import os
import re

import pytest

from halo_core import Change
from halo_core.tune import tuning as tune
from halo_core.errors import ToolFailed, TuneError
from halo_core.tune.journal import Journal
from halo_core.records import TunePlan, TuneStep

from conftest import write_tool


def live_plan(root, *changes) -> TunePlan:
    """A plan whose commands really run (live=True) but whose files live in a test folder."""
    return TunePlan(root, True, [TuneStep("test", changes)])


@pytest.fixture
def tools(tmp_path):
    append = write_tool(tmp_path / "append", 'printf "%s\\n" "$2" >> "$1"\n')
    fail = write_tool(tmp_path / "fail", 'echo "it broke" >&2\nexit 3\n')
    return append, fail


def test_a_command_runs_and_rollback_runs_its_undo_and_restores_what_it_wrote(tmp_path, tools):
    append, _ = tools
    root = tmp_path / "root"
    log = root / "var/lib/thing/state"
    log.parent.mkdir(parents=True)
    log.write_bytes(b"old\x00bytes\n")
    log.chmod(0o600)
    undo_marker = tmp_path / "undone"
    change = Change("test", "command", "append", "append a line", argv=[str(append), str(log), "ran"],
                    undo=[str(append), str(undo_marker), "undone"], writes=["/var/lib/thing/state"])
    journal = Journal.create(live_plan(root, change))
    journal.apply(0)
    assert log.read_bytes() == b"old\x00bytes\nran\n"
    assert journal.events("done")[0]["ran"] is True
    assert journal.undo() == []
    assert log.read_bytes() == b"old\x00bytes\n" and log.stat().st_mode & 0o777 == 0o600
    assert undo_marker.read_text() == "undone\n"
    assert journal.undo() == []  # undone once only
    assert undo_marker.read_text() == "undone\n"


def test_a_failing_command_is_one_line(tmp_path, tools):
    _, fail = tools
    journal = Journal.create(live_plan(tmp_path, Change("test", "command", "fail", "fails", argv=[str(fail)])))
    with pytest.raises(ToolFailed) as err:
        journal.apply(0)
    assert str(err.value) == f"{fail} exited with code 3: it broke"


def test_kernel_values_are_written_and_restored_by_value(tmp_path):
    thp = tmp_path / "sys/kernel/mm/transparent_hugepage/enabled"
    thp.parent.mkdir(parents=True)
    thp.write_text("always [madvise] never\n")
    change = Change("test", "sysfs", "/sys/kernel/mm/transparent_hugepage/enabled", "thp",
                    before="madvise", after="always")
    journal = Journal.create(live_plan(tmp_path, change))
    journal.apply(0)
    assert thp.read_text() == "always"  # what `echo -n always > .../enabled` writes
    assert journal.begun()[0]["value"] == "madvise" and journal.begun()[0]["backups"] == []
    journal.undo()
    assert thp.read_text() == "madvise"


@pytest.mark.skipif(os.geteuid() != 0, reason="applying to the live system needs root")
def test_a_failing_command_rolls_back_the_whole_transaction(tmp_path, tools):
    _, fail = tools
    conf = tmp_path / "etc/thing.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("a = 1\n")
    plan = live_plan(tmp_path,
                     Change("test", "file", "/etc/thing.conf", "edit", before="a = 1\n", after="a = 2\n"),
                     Change("test", "file", "/etc/new.conf", "new", before=None, after="b\n"),
                     Change("test", "command", "fail", "fails", argv=[str(fail)]))
    with pytest.raises(TuneError) as err:
        tune.apply_tuning(plan)
    assert re.fullmatch(rf"{fail} exited with code 3: it broke; everything this run changed was rolled "
                        rf"back \(journal \S+\)", str(err.value))
    assert conf.read_text() == "a = 1\n" and not (tmp_path / "etc/new.conf").exists()
    info = tune.list_journals(tmp_path)[0]
    assert (info.status, info.undone, info.error) == ("rolled-back", 3, f"{fail} exited with code 3: it broke")


@pytest.mark.skipif(os.geteuid() == 0, reason="runs as a normal user")
def test_the_live_system_needs_root(tmp_path):
    with pytest.raises(TuneError) as err:
        tune.apply_tuning(live_plan(tmp_path, Change("test", "command", "true", "x", argv=["true"])))
    assert str(err.value) == ("applying changes to this machine writes /etc and /sys: run it as root "
                              "(sudo), or pass --root DIR to work on a copy")


def test_generated_files_are_made_again_from_their_restored_sources(tmp_path):
    """(#21) A `regenerate` command (grub2-mkconfig) is not undone by restoring the bytes it
    replaced (they would name kernels that are gone since): rollback restores its sources and
    runs it again."""
    root = tmp_path / "root"
    source, generated = root / "etc/default/grub", root / "boot/grub2/grub.cfg"
    source.parent.mkdir(parents=True)
    generated.parent.mkdir(parents=True)
    source.write_text("CMDLINE=quiet\n")
    generated.write_text("made from CMDLINE=quiet for kernel 6.17 (since removed)\n")
    mkconfig = write_tool(tmp_path / "mkconfig", f'printf "made from %s for kernel 6.18\\n" "$(cat {source})" > {generated}\n')
    plan = live_plan(root, Change("test", "file", "/etc/default/grub", "cmdline", before="CMDLINE=quiet\n",
                                  after="CMDLINE=quiet amd_iommu=off\n"),
                     Change("test", "command", "mkconfig", "regenerate", argv=[str(mkconfig)],
                            writes=["/boot/grub2/grub.cfg"], regenerate=True))
    journal = Journal.create(plan)
    journal.apply(0)
    journal.apply(1)
    assert generated.read_text() == "made from CMDLINE=quiet amd_iommu=off for kernel 6.18\n"
    assert journal.undo() == []
    assert source.read_text() == "CMDLINE=quiet\n"
    assert generated.read_text() == "made from CMDLINE=quiet for kernel 6.18\n"  # not the 6.17 bytes
    # the source first, then the generated file made from it
    assert [(e["i"], e.get("regenerated", False)) for e in journal.events("undone")] == [(0, False), (1, True)]


def test_journals_are_ordered_by_sequence_not_by_the_clock(tmp_path, monkeypatch):
    """(#21) A journal made after a clock jump back is still the newest: ids begin with an
    increasing sequence number; older wall-clock ids sort before every numbered one."""
    monkeypatch.setenv("HALO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HALO_STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    first = Journal.create(TunePlan(root, False, [TuneStep("test", [
        Change("test", "file", "/etc/a.conf", "a", before=None, after="a\n")])]))
    old = first.path.parent / "29991231T000000Z"  # an older halo's id, stamped by a clock far ahead
    old.mkdir()
    (old / "journal.json").write_text((first.path / "journal.json").read_text())
    second = Journal.create(TunePlan(root, False, [TuneStep("test", [
        Change("test", "file", "/etc/b.conf", "b", before=None, after="b\n")])]))
    assert first.path.name.startswith("000001-") and second.path.name.startswith("000002-")
    assert [j.path.name for j in Journal.all(root)] == [second.path.name, first.path.name, old.name]


@pytest.mark.skipif(os.geteuid() != 0, reason="root's state folder")
def test_root_keeps_journals_only_in_a_folder_only_root_can_change(tmp_path, monkeypatch):
    """(#21) As root (`sudo -E` keeps the user's $HALO_HOME) the journals are not in $HALO_HOME;
    a state folder a user owns, or a link, is refused."""
    from halo_core.tune.journal import journal_root

    monkeypatch.setenv("HALO_HOME", str(tmp_path / "user-home"))
    monkeypatch.setenv("HALO_STATE_DIR", str(tmp_path / "state"))
    assert journal_root() == tmp_path / "state" / "journal"
    assert oct((tmp_path / "state" / "journal").stat().st_mode & 0o777) == "0o700"
    user_owned = tmp_path / "theirs"
    user_owned.mkdir()
    os.chown(user_owned, 65534, 65534)
    monkeypatch.setenv("HALO_STATE_DIR", str(user_owned))
    with pytest.raises(TuneError, match=r"is not a folder only root can change .*owner uid 65534"):
        journal_root()
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "state")
    monkeypatch.setenv("HALO_STATE_DIR", str(link))
    with pytest.raises(TuneError, match=r"link.* is not a folder only root can change \(a link"):
        journal_root()
    assert not (tmp_path / "user-home" / "journal").exists()


def test_only_the_newest_journal_resumes(tmp_path, monkeypatch):
    """(#21) An older journal waiting for its after-reboot measurement is not resumed (and so
    not partly undone) under a newer transaction on the same root."""
    from halo_core.records import JournalStatus

    monkeypatch.setenv("HALO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HALO_STATE_DIR", str(tmp_path / "state"))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)

    def journal(name):
        made = Journal.create(TunePlan(root, False, [TuneStep("test", [
            Change("test", "file", f"/etc/{name}.conf", name, before=None, after="x\n")])]))
        made.update(status=JournalStatus.APPLIED)
        return made

    older = journal("older")
    older.update(pending_measure=["kernel"])
    newer = journal("newer")
    with pytest.raises(TuneError, match=rf"^nothing to resume: journal {newer.path.name} is newer than the one "
                                        r"waiting for a measurement \(only the newest resumes\)$"):
        tune.resume_tuning(root)
    assert older.header["pending_measure"] == ["kernel"] and Journal(older.path).status == JournalStatus.APPLIED
