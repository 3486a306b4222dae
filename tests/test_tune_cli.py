"""`halo audit / verify / tune / rollback` as a user runs them, on sysroots; a crash
mid-apply (SIGKILL between changes, or half-way through one) that `halo rollback` completes."""

from __future__ import annotations

import json
import re
import signal

import pytest

from halo_core.tune.journal import Journal

import sysroot
from sysroot import snapshot


def test_verify_json_and_exit_code(halo, ubuntu_root):
    done = halo("verify", "--root", str(ubuntu_root), "--json")
    assert done.returncode == 1  # some checks FAIL
    checks = json.loads(done.stdout)
    assert [(c["tuner"], c["name"], c["status"]) for c in checks] == [
        ("tuned", "tuned", "WARN"), ("kernel", "kernel", "FAIL"), ("kernel", "firmware", "FAIL"),
        ("kernel", "iommu", "FAIL"), ("kernel", "gtt-limit", "FAIL"), ("vram", "bios-vram", "FAIL"),
        ("vram", "gtt-size", "FAIL"), ("power", "power-limits", "WARN"), ("power", "memory-env", "WARN")]
    iommu = checks[3]
    assert iommu["fix"] == f"halo tune --root {ubuntu_root} --only kernel --apply"


def test_verify_table(halo, fedora_root):
    done = halo("verify", "--root", str(fedora_root))
    assert done.returncode == 1, done.stderr
    assert re.search(r"PASS\s+│\s+firmware\s+│\s+kernel\s+│\s+linux-firmware 20251111-1.fc43 \(not 20251125\)",
                     done.stdout)
    assert done.stdout.rstrip().endswith("3/9 PASS, 4 WARN, 2 FAIL")
    only = halo("verify", "--root", str(fedora_root), "--only", "vram")
    assert only.returncode == 1 and only.stdout.rstrip().endswith("1/2 PASS, 0 WARN, 1 FAIL")


def test_audit(halo, fedora_root):
    done = halo("audit", "--root", str(fedora_root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == (f"host     AMD RYZEN AI MAX+ 395 w/ Radeon 8060S · Fedora Linux 43 (Workstation Edition) "
                        f"· sysroot {fedora_root}")
    assert lines[1] == "memory   64.0 GiB installed · 62.2 GiB seen by the OS · 56.5 GiB available"
    assert lines[2] == "gpu      card1 0x1002:0x1586 · VRAM 98 MiB / 512 MiB · GTT 21 MiB / 31.1 GiB"
    assert "FAIL  kernel  gtt-limit     ttm.pages_limit not set" in done.stdout
    # what plugins know (their host_facts hooks) has a line each: tuned from halo_tuners, ROCm
    # from native; toolbox asks `toolbox list` on the live system only
    assert "tuned    throughput-performance" in lines and "rocm     none" in lines
    assert not any(line.startswith("toolboxes") for line in lines)
    assert lines[-1] == (f"score 3/9 · tuned 0/1 · kernel 2/4 · vram 1/2 · power 0/2 · fixes: halo verify "
                         f"--root {fedora_root}")
    assert lines[-3].startswith("not for this host: nvidia — NVIDIA GPUs are read through NVML")
    data = json.loads(halo("audit", "--root", str(fedora_root), "--json").stdout)
    assert data["score"] == {"pass": 3, "total": 9}
    assert data["skipped"] == [{"tuner": "nvidia", "hint": "", "reason": "NVIDIA GPUs are read through "
                                "NVML on the machine itself, not through a sysroot"}]
    assert data["facts"]["installed_ram"] == 64 << 30 and data["facts"]["gpus"][0]["card"] == "card1"
    assert data["facts"]["extra"]["tuners"]["tuned"] == "throughput-performance"


def test_audit_and_verify_of_a_host_that_is_no_amd_apu(halo, intel_root):
    done = halo("audit", "--root", str(intel_root))
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == f"score 0/0 · fixes: halo verify --root {intel_root}"
    assert "FAIL" not in done.stdout and "ryzenadj" not in "\n".join(lines[lines.index(""):])
    assert any(line.startswith("not for this host: tuned, kernel, vram, power — this host is not an AMD APU")
               for line in lines)
    data = json.loads(halo("audit", "--root", str(intel_root), "--json").stdout)
    assert data["score"] == {"pass": 0, "total": 0} and data["checks"] == []
    assert [s["tuner"] for s in data["skipped"]] == ["tuned", "kernel", "vram", "power", "nvidia"]
    verify = halo("verify", "--root", str(intel_root))
    assert verify.returncode == 0 and verify.stdout.endswith("0/0 PASS, 0 WARN, 0 FAIL\n")
    only = halo("verify", "--root", str(intel_root), "--only", "kernel")
    assert only.returncode == 1 and only.stderr.startswith(
        "Error: not for this host: kernel — this host is not an AMD APU (CPU: Intel(R) Core(TM) Ultra 7 155H")
    assert only.stderr.count("\n") == 1 and only.stdout == ""


def test_dry_run_prints_the_plan_as_a_diff_and_writes_nothing(halo, ubuntu_root):
    before = snapshot(ubuntu_root)
    done = halo("tune", "--root", str(ubuntu_root))
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert ("--- /etc/default/grub\n+++ /etc/default/grub\n@@ -7,7 +7,7 @@\n"
            " GRUB_TIMEOUT_STYLE=hidden\n GRUB_TIMEOUT=0\n") in out
    assert ('-GRUB_CMDLINE_LINUX_DEFAULT="quiet splash amd_iommu=pt amdgpu.gttsize=126976"\n'
            '+GRUB_CMDLINE_LINUX_DEFAULT="quiet splash amd_iommu=off ttm.pages_limit=32243712"\n') in out
    assert "$ update-grub   (recorded, not run: --root)\n" in out
    assert "~ vm.swappiness: 60 -> 1\n" in out
    assert "~ /sys/kernel/mm/transparent_hugepage/enabled: madvise -> always\n" in out
    assert ("+ link /etc/systemd/system/multi-user.target.wants/ryzenadj-llm.service -> "
            "/etc/systemd/system/ryzenadj-llm.service\n") in out
    assert "# tuned: nothing to change\n! tuned is not installed" in out
    assert out.endswith(f"dry run: nothing written. Apply with: halo tune --root {ubuntu_root} --apply\n")
    assert snapshot(ubuntu_root) == before


def test_apply_twice_then_rollback_is_byte_identical(halo, fedora_root):
    before = snapshot(fedora_root)
    first = halo("tune", "--root", str(fedora_root), "--apply")
    assert first.returncode == 0, first.stderr
    journal = re.search(r"applied 23 change\(s\); journal (\S+); undo with: halo rollback --root (\S+)\n",
                        first.stdout)
    assert journal and journal.group(2) == str(fedora_root)
    assert first.stdout.endswith("reboot for the kernel changes to take effect\n")
    assert snapshot(fedora_root) != before

    second = halo("tune", "--root", str(fedora_root), "--apply")
    assert second.returncode == 0 and second.stdout.endswith("nothing to change: already tuned\n")

    undo = halo("rollback", "--root", str(fedora_root))
    assert undo.returncode == 0, undo.stderr
    assert undo.stdout == f"rolled back journal {journal.group(1)}: 23 change(s) undone\n"
    assert snapshot(fedora_root) == before

    again = halo("rollback", "--root", str(fedora_root))
    assert again.returncode == 1
    assert again.stderr == f"Error: nothing to roll back: no applied journal for {fedora_root}\n"


@pytest.mark.parametrize("crash_after, begun, done", [("12", 12, 12), ("2.5", 3, 2)])
def test_crash_mid_apply_is_completed_by_rollback(halo, fedora_root, crash_after, begun, done):
    before = snapshot(fedora_root)
    crashed = halo("tune", "--root", str(fedora_root), "--apply", env={"HALO_TEST_CRASH_AFTER": crash_after})
    assert crashed.returncode == -signal.SIGKILL
    (journal,) = Journal.all(fedora_root)
    assert journal.status == "applying"
    assert (len(journal.begun()), len(journal.events("done"))) == (begun, done)
    assert snapshot(fedora_root) != before or crash_after == "2.5"  # 12: new folders too (tmpfiles.d)

    blocked = halo("tune", "--root", str(fedora_root), "--apply")
    assert blocked.returncode == 1
    assert blocked.stderr == (f"Error: journal {journal.path.name} was interrupted while applying: run "
                              f"`halo rollback --root {fedora_root}` to finish undoing it first\n")

    undo = halo("rollback", "--root", str(fedora_root))
    assert undo.returncode == 0, undo.stderr
    assert undo.stdout == f"rolled back journal {journal.path.name}: {begun} change(s) undone\n"
    assert snapshot(fedora_root) == before
    assert Journal(journal.path).status == "rolled-back"


def test_errors_are_one_line(halo, fedora_root, intel_root):
    done = halo("tune", "--root", str(intel_root))
    assert done.returncode == 1
    assert done.stderr == ("Error: this host is not an AMD APU (CPU: Intel(R) Core(TM) Ultra 7 155H; no amdgpu "
                           "device): halo tune is made for AMD APUs such as Strix Halo; pass --force to tune "
                           "it anyway\n")
    assert halo("tune", "--root", str(intel_root), "--force", "--only", "kernel").returncode == 0

    done = halo("tune", "--root", str(fedora_root), "--set", "kernel.gtt_gib=80", "--apply")
    assert done.returncode == 1
    assert done.stderr == ("Error: kernel.gtt_gib=80 does not fit the RAM: 64 GiB leaves at most 60 GiB to "
                           "the GPU (4 GiB stay with the OS)\n")

    sysroot.write(fedora_root, "/etc/default/grub", "GRUB_CMDLINE_LINUX=\"rhgb quiet\n")
    before = snapshot(fedora_root)
    done = halo("tune", "--root", str(fedora_root), "--apply")
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr == ('Error: /etc/default/grub: line 1: GRUB_CMDLINE_LINUX has no closing " (a value '
                           'over several lines is not supported): fix the file, then run halo tune again\n')
    assert snapshot(fedora_root) == before and Journal.all(fedora_root) == []


def test_usage_errors(halo, fedora_root):
    done = halo("tune", "--root", str(fedora_root), "--resume")
    assert done.returncode == 2
    assert "--resume goes with --measure: halo tune --measure --resume" in done.stderr
    done = halo("tune", "--root", str(fedora_root), "--measure", "--resume", "--only", "kernel")
    assert done.returncode == 2
    assert "--resume takes no --only, --set or --force" in done.stderr
    done = halo("tune", "--root", str(fedora_root / "missing"))
    assert done.returncode == 2 and "does not exist" in done.stderr


def test_rollback_with_nothing_to_undo_on_this_machine(halo):
    done = halo("rollback", "--journal", "nope")
    assert done.returncode == 1
    assert done.stderr.startswith("Error: nothing to roll back: no applied journal for /")


def test_rollback_list(halo, fedora_root):
    halo("tune", "--root", str(fedora_root), "--only", "tuned", "--apply")
    data = json.loads(halo("rollback", "--root", str(fedora_root), "--list", "--json").stdout)
    assert [(j["status"], j["changes"], j["applied"], j["undone"]) for j in data] == [("applied", 3, 3, 0)]


def test_rollback_refuses_to_undo_over_an_admins_later_edit(halo, fedora_root):
    """(#21) The journal records the sha256 of what halo wrote: a file edited since is left
    alone, the refusal shows the diff, and --force restores halo's backup over it."""
    before = snapshot(fedora_root)
    assert halo("tune", "--root", str(fedora_root), "--only", "kernel", "--apply").returncode == 0
    grub = fedora_root / "etc/default/grub"
    edited = grub.read_text() + 'GRUB_TERMINAL="serial"\n'
    grub.write_text(edited)
    refused = halo("rollback", "--root", str(fedora_root))
    assert refused.returncode == 1
    assert "/etc/default/grub changed since halo wrote it" in refused.stderr
    assert '+GRUB_TERMINAL="serial"' in refused.stderr and "halo rollback --force" in refused.stderr
    assert grub.read_text() == edited  # the admin's edit is still there
    forced = halo("rollback", "--root", str(fedora_root), "--force")
    assert forced.returncode == 0, forced.stderr
    assert snapshot(fedora_root) == before
