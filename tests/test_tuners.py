"""Every built-in tuner on realistic Fedora and Ubuntu sysroots: plan -> apply -> verify ->
plan again (nothing) -> rollback -> the sysroot is byte-identical; plus the validation that
stops a plan before anything is written."""

from __future__ import annotations

import json
import types
from pathlib import Path

import pytest

from halo_core import Availability, BenchRun, BenchSpec, Change, Check, Tuner, hookimpl
from halo_core.tune import tuning as tune
from halo_core.errors import TuneError, UnknownName, UnknownState
from halo_core.records import ChangeKind, CheckStatus
from halo_core.store import to_json
from halo_core.tune.journal import Journal
from halo_core.plugins import PluginHost

import sysroot
from conftest import with_tuner
from sysroot import snapshot


def statuses(root, only=None) -> dict[str, str]:
    return {c.name: c.status for c in tune.verify(root, only)}


def details(root, only=None) -> dict[str, str]:
    return {c.name: c.detail for c in tune.verify(root, only)}


def cycle(root, tuner: str):
    """Apply one tuner; returns (journal info, snapshot before) after checking idempotence."""
    before = snapshot(root)
    info = tune.apply_tuning(tune.plan_tuning(root, [tuner]))
    assert tune.plan_tuning(root, [tuner]).changes == ()  # a second apply would change nothing
    assert tune.apply_tuning(tune.plan_tuning(root, [tuner])) is None
    return info, before


def undo_and_compare(root, before, info):
    rolled = tune.rollback(root)
    assert rolled.id == info.id and rolled.status == "rolled-back" and rolled.undone == info.applied
    assert snapshot(root) == before


# -- tuned ---------------------------------------------------------------------------------

def test_tuned_on_fedora(fedora_root):
    plan = tune.plan_tuning(fedora_root, ["tuned"])
    assert [(c.kind, c.target) for c in plan.changes] == [
        ("file", "/etc/tuned/active_profile"), ("file", "/etc/tuned/profile_mode"), ("command", "tuned-adm")]
    command = plan.changes[2]
    assert command.argv == ("tuned-adm", "profile", "accelerator-performance")
    assert command.undo == ("tuned-adm", "profile", "throughput-performance")  # the previous profile
    assert statuses(fedora_root, ["tuned"]) == {"tuned": "WARN"}

    info, before = cycle(fedora_root, "tuned")
    assert (fedora_root / "etc/tuned/active_profile").read_text() == "accelerator-performance\n"
    assert (fedora_root / "etc/tuned/profile_mode").read_text() == "manual\n"
    assert statuses(fedora_root, ["tuned"]) == {"tuned": "PASS"}
    assert info.applied == 3 and info.status == "applied"
    undo_and_compare(fedora_root, before, info)
    assert statuses(fedora_root, ["tuned"]) == {"tuned": "WARN"}


def test_tuned_not_installed_on_ubuntu(ubuntu_root):
    plan = tune.plan_tuning(ubuntu_root, ["tuned"])
    assert plan.changes == ()
    assert plan.steps[0].guidance.startswith("tuned is not installed: sudo dnf install tuned")
    (check,) = tune.verify(ubuntu_root, ["tuned"])
    assert (check.status, check.detail) == ("WARN", "tuned is not installed")
    assert tune.apply_tuning(plan) is None


# -- kernel --------------------------------------------------------------------------------

def test_kernel_on_fedora_edits_grub_and_plans_grub2_mkconfig(fedora_root):
    info, before = cycle(fedora_root, "kernel")
    grub = (fedora_root / "etc/default/grub").read_text()
    assert grub == sysroot.FEDORA_GRUB.replace(
        'GRUB_CMDLINE_LINUX="rhgb quiet"', 'GRUB_CMDLINE_LINUX="rhgb quiet amd_iommu=off ttm.pages_limit=15466496"')
    journal_changes = Journal(info.path).changes
    mkconfig = journal_changes[1]
    assert mkconfig.argv == ("grub2-mkconfig", "-o", "/boot/grub2/grub.cfg", "--update-bls-cmdline")
    assert mkconfig.writes == ("/boot/grub2/grub.cfg", "/boot/grub2/grubenv",
                               f"/boot/loader/entries/0f1b2c-{sysroot.FEDORA_KERNEL}.conf")
    assert all(c.needs_reboot for c in journal_changes)
    # what is in effect has not changed until the reboot
    found = tune.verify(fedora_root, ["kernel"])
    assert {c.name: (c.status, c.fix) for c in found}["iommu"] == ("WARN", "reboot")
    assert {c.name: (c.status, c.fix) for c in found}["gtt-limit"] == ("FAIL", "reboot")
    undo_and_compare(fedora_root, before, info)


def test_kernel_on_fedora_after_the_reboot(fedora_root):
    tune.apply_tuning(tune.plan_tuning(fedora_root, ["kernel"]))
    sysroot.reboot(fedora_root)
    assert statuses(fedora_root, ["kernel", "vram"]) == {
        "kernel": "PASS", "firmware": "PASS", "iommu": "PASS", "gtt-limit": "PASS",
        "bios-vram": "PASS", "gtt-size": "PASS"}
    assert details(fedora_root, ["vram"])["gtt-size"] == (
        "GTT 59.0 GiB, ttm.pages_limit 59.0 GiB: the GPU can use 59.0 GiB of 64.0 GiB RAM")


def test_kernel_on_ubuntu_fixes_the_typo_and_drops_gttsize(ubuntu_root):
    assert statuses(ubuntu_root, ["kernel"]) == {
        "kernel": "FAIL", "firmware": "FAIL", "iommu": "FAIL", "gtt-limit": "FAIL"}
    assert details(ubuntu_root, ["kernel"])["iommu"] == (
        "amd_iommu=pt on the kernel command line is not a valid option and is silently ignored: "
        "the IOMMU is still on")
    plan = tune.plan_tuning(ubuntu_root, ["kernel"])
    assert plan.changes[1].argv == ("update-grub",) and plan.changes[1].writes == ("/boot/grub/grub.cfg",)
    assert plan.steps[0].guidance == ("The BIOS still reserves 32.0 GiB as VRAM: lower it in the same reboot "
                                      "(see the vram tuner), since ttm.pages_limit counts on that RAM.")
    info, before = cycle(ubuntu_root, "kernel")
    assert (ubuntu_root / "etc/default/grub").read_text() == sysroot.UBUNTU_GRUB.replace(
        '"quiet splash amd_iommu=pt amdgpu.gttsize=126976"', '"quiet splash amd_iommu=off ttm.pages_limit=32243712"')
    undo_and_compare(ubuntu_root, before, info)

    tune.apply_tuning(tune.plan_tuning(ubuntu_root, ["kernel"]))
    sysroot.reboot(ubuntu_root)
    found = {c.name: c for c in tune.verify(ubuntu_root, ["kernel", "vram"])}
    assert {n: c.status for n, c in found.items()} == {
        "kernel": "FAIL", "firmware": "FAIL", "iommu": "PASS", "gtt-limit": "PASS",
        "bios-vram": "FAIL", "gtt-size": "FAIL"}
    # 123 GiB of GTT only fits once the BIOS gives the 32 GiB carve-out back
    assert found["gtt-size"].detail == ("GTT 123.0 GiB, ttm.pages_limit 123.0 GiB: more than the 94.5 GiB "
                                        "the OS has (lower the BIOS VRAM carve-out)")


def test_kernel_keeps_existing_options_and_quotes(fedora_root):
    grub = fedora_root / "etc/default/grub"
    grub.write_text(sysroot.FEDORA_GRUB.replace(
        'GRUB_CMDLINE_LINUX="rhgb quiet"',
        "GRUB_CMDLINE_LINUX='rhgb iommu=pt quiet'  # mine\nGRUB_CMDLINE_LINUX_DEFAULT=\"mitigations=off ttm.pages_limit=1\""))
    tune.apply_tuning(tune.plan_tuning(fedora_root, ["kernel"]))
    assert "GRUB_CMDLINE_LINUX='rhgb quiet'  # mine\n" in grub.read_text()
    assert 'GRUB_CMDLINE_LINUX_DEFAULT="mitigations=off amd_iommu=off ttm.pages_limit=15466496"\n' in grub.read_text()


def test_gtt_setting_is_validated_against_the_ram(fedora_root):
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(fedora_root, ["kernel"], settings=["kernel.gtt_gib=62"])
    assert str(err.value) == ("kernel.gtt_gib=62 does not fit the RAM: 64 GiB leaves at most 60 GiB "
                              "to the GPU (4 GiB stay with the OS)")
    plan = tune.plan_tuning(fedora_root, ["kernel"], settings=["kernel.gtt_gib=48"])
    assert "ttm.pages_limit=12582912" in plan.changes[0].after
    for setting, message in [
        ("kernel.gtt_gib=lots", "kernel.gtt_gib=lots is not a number of GiB"),
        ("kernel.size=4", "tuner 'kernel' has no setting 'size' (it has: gtt_gib)"),
        ("tuned.profile=x", "tuner 'tuned' has no setting 'profile'"),
        ("power.watts=200", "power.watts=200 is outside 15-120 W"),
        ("nodot=1", "bad setting 'nodot=1': write TUNER.KEY=VALUE, e.g. kernel.gtt_gib=48"),
    ]:
        with pytest.raises(TuneError) as err:
            tune.plan_tuning(fedora_root, settings=[setting])
        assert str(err.value) == message
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(fedora_root, ["tuned"], settings=["kernel.gtt_gib=48"])
    assert str(err.value) == "setting for tuner 'kernel', which is not selected (selected: tuned)"


@pytest.mark.parametrize("line, message", [
    ('GRUB_CMDLINE_LINUX="rhgb quiet\n',
     '/etc/default/grub: line 6: GRUB_CMDLINE_LINUX has no closing " (a value over several lines is not '
     'supported): fix the file, then run halo tune again'),
    ('GRUB_CMDLINE_LINUX="$(cat /etc/kernel/cmdline)"\n',
     "/etc/default/grub: line 6: GRUB_CMDLINE_LINUX runs a command substitution, which halo cannot edit "
     "safely: set the value literally, then run halo tune again"),
    ('GRUB_CMDLINE_LINUX="rhgb" quiet\n',
     "/etc/default/grub: line 6: GRUB_CMDLINE_LINUX has text after its value ('quiet'): fix the file, "
     "then run halo tune again"),
])
def test_malformed_grub_stops_the_plan_with_nothing_written(fedora_root, line, message):
    grub = fedora_root / "etc/default/grub"
    grub.write_text(sysroot.FEDORA_GRUB.replace('GRUB_CMDLINE_LINUX="rhgb quiet"\n', line))
    before = snapshot(fedora_root)
    journals = len(tune.list_journals())
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(fedora_root)
    assert str(err.value) == message
    assert snapshot(fedora_root) == before and len(tune.list_journals()) == journals


def test_not_an_amd_apu(intel_root):
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(intel_root)
    assert str(err.value) == ("this host is not an AMD APU (CPU: Intel(R) Core(TM) Ultra 7 155H; no amdgpu "
                              "device): halo tune is made for AMD APUs such as Strix Halo; pass --force to "
                              "tune it anyway")
    forced = tune.plan_tuning(intel_root, ["kernel"], force=True)
    assert "ttm.pages_limit=7077888" in forced.changes[0].after  # 32 GiB - 5 GiB


class Swappiness(Tuner):
    """A third-party tuner that fits any Linux host (the default `applies`)."""

    name = "swappiness"

    def verify(self, root):
        return []

    def plan(self, root):
        return [Change(self.name, "sysctl", "vm.swappiness", "lower swappiness", before="60",
                       after="10")]


class ServersOnly(Swappiness):
    name = "servers"

    def applies(self, facts):
        return Availability(False, f"{facts.cpu_model} is no server CPU", "run it on a server")


@pytest.fixture
def with_swappiness():
    host = PluginHost.from_entry_points()

    @hookimpl
    def register_tuners(register):
        register(Swappiness())
        register(ServersOnly())

    host.register(types.SimpleNamespace(register_tuners=register_tuners), "extra-tuners")
    return host


def test_each_tuner_says_which_hosts_it_applies_to(intel_root, with_swappiness):
    host = with_swappiness
    assert tune.plan_tuning(intel_root, ["swappiness"], host=host).changes[0].after == "10"
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(intel_root, ["swappiness", "kernel"], host=host)
    assert str(err.value) == (
        "this host is not an AMD APU (CPU: Intel(R) Core(TM) Ultra 7 155H; no amdgpu device): "
        "halo tune is made for AMD APUs such as Strix Halo (tuners kernel); pass --force to tune "
        "it anyway, or leave them out with --only")
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(intel_root, ["servers"], host=host)
    assert str(err.value) == ("Intel(R) Core(TM) Ultra 7 155H is no server CPU; run it on a server; "
                              "pass --force to tune it anyway")
    assert len(tune.plan_tuning(intel_root, ["servers", "kernel"], host=host, force=True).steps) == 2


def test_unknown_tuner(fedora_root):
    with pytest.raises(UnknownName) as err:
        tune.plan_tuning(fedora_root, ["turbo"])
    assert str(err.value) == "unknown tuner 'turbo' (known: kernel, nvidia, power, tuned, vram)"


# -- vram ----------------------------------------------------------------------------------

def test_vram_writes_nothing_and_guides(ubuntu_root, fedora_root):
    assert tune.plan_tuning(fedora_root, ["vram"]).changes == () and tune.plan_tuning(fedora_root, ["vram"]).steps[0].guidance == ""
    step = tune.plan_tuning(ubuntu_root, ["vram"]).steps[0]
    assert step.changes == ()
    assert step.guidance.startswith("The BIOS reserves 32.0 GiB of RAM as VRAM; halo cannot change BIOS settings.")
    assert "UMA Frame Buffer Size" in step.guidance and "512 MB" in step.guidance
    found = {c.name: c for c in tune.verify(ubuntu_root, ["vram"])}
    assert (found["bios-vram"].status, found["bios-vram"].detail) == (
        "FAIL", "BIOS VRAM carve-out 32.0 GiB is held back from the OS and GTT (512 MB is enough)")
    assert found["gtt-size"].detail == (
        "GTT 124.0 GiB, ttm.pages_limit 47.3 GiB: amdgpu.gttsize (deprecated) sets it instead")


# -- power ---------------------------------------------------------------------------------

@pytest.mark.parametrize("distro", ["fedora", "ubuntu"])
def test_power(distro, request):
    root = request.getfixturevalue(f"{distro}_root")
    ryzenadj = "/usr/local/bin/ryzenadj" if distro == "fedora" else "/usr/bin/ryzenadj"
    assert statuses(root, ["power"]) == {"power-limits": "WARN", "memory-env": "WARN"}
    info, before = cycle(root, "power")
    assert statuses(root, ["power"]) == {"power-limits": "PASS", "memory-env": "PASS"}

    assert (root / "proc/sys/vm/swappiness").read_text() == "1\n"
    assert (root / "sys/kernel/mm/transparent_hugepage/enabled").read_text() == "always\n"
    assert (root / "sys/kernel/mm/transparent_hugepage/defrag").read_text() == "defer+madvise\n"
    assert (root / "etc/sysctl.d/99-llm-inference.conf").read_text().endswith(
        "vm.swappiness = 1\nvm.dirty_ratio = 40\nvm.dirty_background_ratio = 10\n"
        "vm.max_map_count = 500000\nvm.zone_reclaim_mode = 0\n")
    assert (root / "etc/environment.d/radv-llm.conf").read_text() == "RADV_PERFTEST=nogttspill\n"
    unit = (root / "etc/systemd/system/ryzenadj-llm.service").read_text()
    assert (f"ExecStart={ryzenadj} --stapm-limit=85000 --fast-limit=85000 --slow-limit=85000 "
            f"--apu-slow-limit=85000\n") in unit
    wants = root / "etc/systemd/system/multi-user.target.wants/ryzenadj-llm.service"
    assert wants.is_symlink() and str(wants.readlink()) == "/etc/systemd/system/ryzenadj-llm.service"
    assert (root / "etc/systemd/system/suspend-then-hibernate.target.wants/ryzenadj-resume.service").is_symlink()
    commands = [c for c in Journal(info.path).changes if c.kind == "command"]
    assert [(c.argv, c.undo) for c in commands] == [
        ((), ("systemctl", "daemon-reload")),
        (("systemctl", "daemon-reload"), ()),
        ((ryzenadj, "--stapm-limit=85000", "--fast-limit=85000", "--slow-limit=85000",
          "--apu-slow-limit=85000"), ()),
    ]
    undo_and_compare(root, before, info)


def test_power_adds_nogttspill_to_an_existing_radv_perftest(fedora_root):
    sysroot.write(fedora_root, "/etc/environment.d/radv-llm.conf", "# mine\nRADV_PERFTEST=sam\n")
    tune.apply_tuning(tune.plan_tuning(fedora_root, ["power"]))
    assert (fedora_root / "etc/environment.d/radv-llm.conf").read_text() == "# mine\nRADV_PERFTEST=sam,nogttspill\n"


def test_power_watts_setting(fedora_root):
    plan = tune.plan_tuning(fedora_root, ["power"], settings=["power.watts=70"])
    assert plan.changes[-1].argv[1:] == ("--stapm-limit=70000", "--fast-limit=70000",
                                         "--slow-limit=70000", "--apu-slow-limit=70000")


# -- everything together -------------------------------------------------------------------

def test_all_tuners_then_reboot_is_nine_of_nine(fedora_root):
    assert statuses(fedora_root) == {
        "tuned": "WARN", "kernel": "PASS", "firmware": "PASS", "iommu": "WARN", "gtt-limit": "FAIL",
        "bios-vram": "PASS", "gtt-size": "FAIL", "power-limits": "WARN", "memory-env": "WARN"}
    before = snapshot(fedora_root)
    info = tune.apply_tuning(tune.plan_tuning(fedora_root))
    assert info.applied == 23
    assert tune.plan_tuning(fedora_root).changes == ()
    rolled = tune.rollback(fedora_root)
    assert rolled.undone == 23 and snapshot(fedora_root) == before

    tune.apply_tuning(tune.plan_tuning(fedora_root))
    sysroot.reboot(fedora_root)
    report = tune.audit(fedora_root)
    assert report.score == (9, 9)
    assert [c.tuner for c in report.checks] == ["tuned"] + ["kernel"] * 4 + ["vram"] * 2 + ["power"] * 2


NINE = [("tuned", "tuned", "WARN"), ("kernel", "kernel", "PASS"), ("kernel", "firmware", "PASS"),
        ("kernel", "iommu", "WARN"), ("kernel", "gtt-limit", "FAIL"), ("vram", "bios-vram", "PASS"),
        ("vram", "gtt-size", "FAIL"), ("power", "power-limits", "WARN"), ("power", "memory-env", "WARN")]
"""The stock Fedora Strix Halo's checks, as they were before tuners said where they apply."""


def test_a_strix_halo_audit_keeps_its_nine_checks_and_skips_only_nvidia(fedora_root):
    report = tune.audit(fedora_root)
    assert [(c.tuner, c.name, c.status) for c in report.checks] == NINE
    assert [s.tuner for s in report.skipped] == ["nvidia"] and report.score == (3, 9)
    assert report.readings == {}
    plan = tune.plan_tuning(fedora_root)  # nvidia is left out, not refused
    assert [s.tuner for s in plan.steps] == ["tuned", "kernel", "vram", "power"]
    assert [s.tuner for s in plan.skipped] == ["nvidia"]
    assert tune.render_plan(plan).startswith("# not for this host: nvidia — NVIDIA GPUs are read through "
                                             "NVML on the machine itself, not through a sysroot\n# tuned: ")


def test_a_host_that_is_no_amd_apu_skips_the_amd_tuners(intel_root, with_swappiness):
    report = tune.audit(intel_root)
    assert report.checks == () and report.score == (0, 0)
    amd = "this host is not an AMD APU (CPU: Intel(R) Core(TM) Ultra 7 155H; no amdgpu device): " \
          "halo tune is made for AMD APUs such as Strix Halo"
    assert [(s.tuner, s.reason) for s in report.skipped][:4] == [
        ("tuned", amd), ("kernel", amd), ("vram", amd), ("power", amd)]
    assert tune.skipped_lines(report.skipped)[0] == f"not for this host: tuned, kernel, vram, power — {amd}"
    assert tune.verify(intel_root, ["kernel"]) == []
    # a tuner made for any host still checks and plans there, the others are left out
    report = tune.audit(intel_root, host=with_swappiness)
    assert "swappiness" not in {s.tuner for s in report.skipped}
    assert {s.tuner for s in report.skipped} >= {"servers", "tuned", "kernel"}
    plan = tune.plan_tuning(intel_root, host=with_swappiness)
    assert [s.tuner for s in plan.steps] == ["swappiness"]
    with pytest.raises(TuneError, match=r"^setting for tuner 'kernel', which does not apply to this host: "
                                        r"this host is not an AMD APU"):
        tune.plan_tuning(intel_root, settings=["kernel.gtt_gib=48"], host=with_swappiness)


class Planning(Tuner):
    """A test tuner that checks nothing and plans one Change(name, *args), made when planned."""

    def __init__(self, name: str, *args, **kwargs):
        self.name, self.args, self.kwargs = name, args, kwargs

    def verify(self, root):
        return []

    def plan(self, root):
        return [Change(self.name, *self.args, **self.kwargs)]


def test_two_tuners_changing_one_file_is_refused(fedora_root):
    host = with_tuner(Planning("grubby", "file", "/etc/default/grub", "mine", before="x", after="y"))
    with pytest.raises(TuneError) as err:
        tune.plan_tuning(fedora_root, ["kernel", "grubby"], host=host)
    assert str(err.value) == ("tuners 'kernel' and 'grubby' both change /etc/default/grub: apply them "
                              "one at a time with --only")


def test_states_are_types():
    """Change kinds, check and run statuses are enums: the plain strings still work and JSON
    keeps them; any other value fails where the record is made, naming the known ones."""
    change = Change("t", "sysctl", "vm.swappiness", "lower swappiness", before="60", after="10")
    assert change.kind is ChangeKind.SYSCTL and f"{change.kind}" == "sysctl"
    assert json.loads(to_json(change))["kind"] == "sysctl"
    check = Check("swappiness", "PASS", "vm.swappiness=10")
    assert check.status is CheckStatus.PASS and json.loads(to_json(check))["status"] == "PASS"
    with pytest.raises(UnknownState) as err:
        Change("t", "sysctrl", "vm.swappiness", "a typo")
    assert str(err.value) == "unknown change kind 'sysctrl' (known: file, link, sysfs, sysctl, command)"
    with pytest.raises(ValueError, match=r"^unknown check status 'OK' \(known: PASS, WARN, FAIL\)$"):
        Check("swappiness", "OK", "vm.swappiness=10")
    with pytest.raises(ValueError, match=r"^unknown run status 'done' \(known: running, complete, "):
        BenchRun(path=Path("run"), spec=BenchSpec(models=["smoke"]), status="done")


def test_a_tuner_planning_an_unknown_kind_fails_before_anything_is_applied(fedora_root):
    typo = Planning("typo", "sysctrl", "vm.swappiness", "lower swappiness", after="10")
    before = snapshot(fedora_root)
    with pytest.raises(UnknownState, match="^unknown change kind 'sysctrl'"):
        tune.plan_tuning(fedora_root, ["tuned", "typo"], host=with_tuner(typo))
    assert snapshot(fedora_root) == before and tune.list_journals(fedora_root) == []


def test_a_file_changed_after_planning_is_not_overwritten(fedora_root):
    plan = tune.plan_tuning(fedora_root, ["tuned"])
    (fedora_root / "etc/tuned/active_profile").write_text("powersave\n")
    with pytest.raises(TuneError) as err:
        tune.apply_tuning(plan)
    assert str(err.value).startswith("/etc/tuned/active_profile changed since the plan was made; run halo "
                                     "tune again; everything this run changed was rolled back (journal ")
    assert (fedora_root / "etc/tuned/active_profile").read_text() == "powersave\n"
    assert tune.list_journals(fedora_root)[0].status == "rolled-back"
