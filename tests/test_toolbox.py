"""The toolbox backends, end to end through the `toolbox` test shim (tests/toolbox_shim.py):
real `toolbox list` parsing, real llama-bench and llama-server from the native build."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

import halo_toolbox
from conftest import wait_until

# what real toolbox (tabwriter, two spaces) prints, images first
TOOLBOX_LIST = """\
IMAGE ID      IMAGE NAME                                           CREATED
1b8b3d0c1d4e  docker.io/kyuz0/amd-strix-halo-toolboxes:rocm-7.2.4  2 weeks ago

CONTAINER ID  CONTAINER NAME         CREATED       STATUS   IMAGE NAME
5e3f8c1a9b2d  llama-rocm-7.2.4       2 weeks ago   exited   docker.io/kyuz0/amd-strix-halo-toolboxes:rocm-7.2.4
\x1b[32m0a1b2c3d4e5f  llama-vulkan-radv      3 months ago  running  docker.io/kyuz0/amd-strix-halo-toolboxes:vulkan-radv\x1b[0m
77aa88bb99cc  fedora-toolbox-43      5 days ago    created  registry.fedoraproject.org/fedora-toolbox:43
"""


def test_parse_list_reads_the_containers_table():
    rows = halo_toolbox.parse_list(TOOLBOX_LIST)
    assert [(c.id, c.name, c.created, c.status) for c in rows] == [
        ("5e3f8c1a9b2d", "llama-rocm-7.2.4", "2 weeks ago", "exited"),
        ("0a1b2c3d4e5f", "llama-vulkan-radv", "3 months ago", "running"),
        ("77aa88bb99cc", "fedora-toolbox-43", "5 days ago", "created"),
    ]
    assert rows[1].image == "docker.io/kyuz0/amd-strix-halo-toolboxes:vulkan-radv"


def test_families_come_from_the_conf():
    conf = halo_toolbox.load_conf()
    assert conf.family_of("llama-vulkan-radv").env == (("AMD_VULKAN_ICD", "RADV"),
                                                         ("RADV_PERFTEST", "nogttspill"))
    assert conf.family_of("llama-vulkan-amdvlk").env[0] == ("AMD_VULKAN_ICD", "AMDVLK")
    rocm = conf.family_of("llama-rocm-7.14")
    assert (rocm.name, rocm.bin_dir, rocm.ubatch, rocm.env) == (
        "rocm", "/usr/local/bin", 2048, (("ROCBLAS_USE_HIPBLASLT", "1"),))
    assert conf.family_of("llama-therock-nightly").name == "rocm"
    assert conf.family_of("fedora-toolbox-43") is None


def test_bad_conf_line_names_file_and_line():
    with pytest.raises(halo_toolbox.ConfError) as exc:
        halo_toolbox.parse_conf("# c\nfamily|x|llama-x*|/usr/bin|big|\n", "my.conf")
    assert str(exc.value) == "my.conf:2: UBATCH must be a whole number, not 'big'"


def test_user_conf_adds_a_family(home, toolbox, monkeypatch):
    home.mkdir(parents=True)
    (home / "toolboxes.conf").write_text(
        "family|vulkan-test|llama-rocm-7.14|/usr/sbin|256|GGML_VK_TEST=1\n")
    monkeypatch.setenv("TOOLBOX_SHIM_CONTAINERS", "llama-rocm-7.14")
    backends = {b.name: b for b in halo_toolbox.discover()}
    assert backends["rocm-7.14"].family.name == "vulkan-test"
    assert backends["rocm-7.14"].defaults().ubatch == 256


def test_map_path():
    # toolbox mounts the user's own home where it is, and the host's / under /run/host
    assert halo_toolbox.host_path("/home/me/models/x.gguf", home="/home/me") == "/home/me/models/x.gguf"
    assert halo_toolbox.host_path("/home/you/x.gguf", home="/home/me") == "/run/host/home/you/x.gguf"
    assert halo_toolbox.host_path("/home/me2/x.gguf", home="/home/me") == "/run/host/home/me2/x.gguf"
    assert halo_toolbox.host_path("/root/m/x.gguf", home="/root/") == "/root/m/x.gguf"
    assert halo_toolbox.host_path("/var/models/x.gguf", home="/root") == "/run/host/var/models/x.gguf"
    assert halo_toolbox.host_path("/tmp/x.gguf") == "/run/host/tmp/x.gguf"
    assert halo_toolbox.host_path("/run/host/tmp/x.gguf") == "/run/host/tmp/x.gguf"


def watchdog_argv(env: list[str], binary: str) -> list[str]:
    """What halo asks `toolbox run` to run: the family's env, the watchdog, the tool."""
    return ["env", *env, "bash", halo_toolbox.host_path(halo_toolbox.WATCHDOG), binary]


def test_backends_through_the_shim(halo, toolbox):
    done = halo("backends", "--json")
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    # discovered by family: the shim lists llama-rocm-7.14, which no conf line names
    for name in ("vulkan-radv", "rocm-7.2.1", "rocm-7.14"):
        assert rows[name]["available"], rows[name]
    assert "fedora-toolbox-43" not in rows and "toolbox-43" not in rows
    # the user's list wins: no stand-ins for the ROCm and RADV families the user has
    assert not {"rocm-7.2.4", "therock-nightly"} & set(rows)
    # a family the user has none of: the conf's container says how to create one
    assert rows["vulkan-amdvlk"] == {
        "name": "vulkan-amdvlk", "available": False,
        "description": "toolbox llama-vulkan-amdvlk (vulkan-amdvlk, /usr/sbin)",
        "reason": "container llama-vulkan-amdvlk missing: create it with `toolbox create "
                  "llama-vulkan-amdvlk --image docker.io/kyuz0/amd-strix-halo-toolboxes:vulkan-amdvlk`",
        "hint": "create it with `toolbox create llama-vulkan-amdvlk "
                "--image docker.io/kyuz0/amd-strix-halo-toolboxes:vulkan-amdvlk`",
        "options": {}, "llama_cpp": "", "default": False}
    # each available one with the build it runs (the shim runs the native build)
    assert rows["vulkan-radv"]["llama_cpp"] == rows["native"]["llama_cpp"]
    assert rows["native"]["llama_cpp"].startswith("0.6.0-dev (build ")


def test_backends_asks_each_build_its_version_once(halo, home, toolbox):
    """`llama-server --version` runs in each container once; later calls read it back (kept by
    the binary's cache key, as its flags are), so `halo backends` starts no container again."""
    def versions():
        return [c["container"] for c in map(json.loads, toolbox.read_text().splitlines())
                if c["argv"][-1:] == ["--version"]]

    first = halo("backends", "--json")
    assert first.returncode == 0, first.stderr
    asked = versions()
    assert sorted(asked) == ["llama-rocm-7.14", "llama-rocm-7.2.1", "llama-vulkan-radv"]
    again = halo("backends", "--json")
    assert again.returncode == 0, again.stderr
    assert versions() == asked  # no container was asked again
    assert json.loads(again.stdout) == json.loads(first.stdout)
    cache = json.loads((home / "cache" / "llama-flags.json").read_text())
    radv = [v for k, v in cache.items() if k.startswith("version|toolbox:llama-vulkan-radv:")]
    assert radv == [{r["name"]: r for r in json.loads(first.stdout)}["vulkan-radv"]["llama_cpp"]]


def test_toolbox_not_installed(halo, tmp_path):
    bare = tmp_path / "bin"
    bare.mkdir()
    done = halo("backends", "--json", env={"PATH": str(bare)})
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["vulkan-radv"]["available"] is False
    assert rows["vulkan-radv"]["reason"] == "toolbox not installed: sudo dnf install toolbox"
    done = halo("bench", "run", "--backend", "vulkan-radv", "--model", "smoke",
                env={"PATH": str(bare)})
    assert done.returncode == 1
    assert done.stderr.strip().endswith(
        "Error: backend 'vulkan-radv' is unavailable: toolbox not installed: sudo dnf install toolbox")


def _calls(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.parametrize("backend, container, env", [
    ("vulkan-radv", "llama-vulkan-radv", ["AMD_VULKAN_ICD=RADV", "RADV_PERFTEST=nogttspill"]),
    ("rocm-7.2.1", "llama-rocm-7.2.1", ["ROCBLAS_USE_HIPBLASLT=1"]),
])
def test_real_bench_in_each_family(halo, toolbox, smoke_model, backend, container, env):
    done = halo("bench", "run", "--backend", backend, "--model", "smoke", "--pp", "16",
                "--tg", "4", "--reps", "1", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "complete"
    assert [(r["backend"], r["test"]) for r in run["results"]] == [(backend, "pp16"), (backend, "tg4")]
    bench_calls = [c for c in _calls(toolbox) if "--help" not in c["argv"]]
    assert len(bench_calls) == 1
    call = bench_calls[0]
    assert (call["container"], call["cwd"]) == (container, "/")
    bin_dir = "/usr/sbin" if backend.startswith("vulkan") else "/usr/local/bin"
    assert call["argv"][:len(env) + 4] == watchdog_argv(env, f"{bin_dir}/llama-bench")
    model_arg = call["argv"][call["argv"].index("-m") + 1]
    assert model_arg == halo_toolbox.host_path(smoke_model.path)
    system = json.loads((Path(run["path"]) / "system.json").read_text())
    assert system["backends"][backend]["container"] == container


def test_bench_setup(halo, toolbox, smoke_model, monkeypatch):
    monkeypatch.setenv("TOOLBOX_SHIM_CONTAINERS", "llama-vulkan-radv,llama-rocm-7.14")
    done = halo("bench", "setup", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    rows = {b["name"]: b for b in report["backends"]}
    assert report["ready"] is True
    assert (rows["vulkan-radv"]["need"], rows["vulkan-radv"]["available"]) == ("required", True)
    assert rows["vulkan-radv"]["llama_cpp"] == rows["native"]["llama_cpp"]  # the shim runs the native build
    # any ROCm container meets "a ROCm image": the required 7.2.4 is not asked for
    assert (rows["rocm-7.14"]["need"], rows["rocm-7.14"]["available"]) == ("optional", True)
    assert "rocm-7.2.4" not in rows and "therock-nightly" not in rows
    models = {m["name"]: m for m in report["models"]}
    assert models["smoke"]["downloaded"] is True
    assert models["qwen3.5-35b-a3b-q4"]["downloaded"] is False

    monkeypatch.setenv("TOOLBOX_SHIM_CONTAINERS", "fedora-toolbox-43")
    done = halo("bench", "setup")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == (
        "setup incomplete: required backend(s) missing: rocm-7.2.4, vulkan-radv")
    assert "toolbox create llama-vulkan-radv --image" in done.stdout


def _servers_on(port: int) -> list[int]:
    """Pids of the llama-servers (run by the shim on this host) listening on `port`."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if entry.name.isdigit() and argv[0].endswith("/llama-server") and str(port) in argv:
            pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_stopping_halo_stops_the_tool_toolbox_run_leaves(halo, home, toolbox, smoke_model):
    """`toolbox run` passes no signal on (the shim neither): halo's tether lets go of the
    tool's stdin and the watchdog stops it, on `halo serve stop` and when the tether is killed."""
    from halo_core.llama.process import free_port, read_pid_files

    for how in ("serve stop", "SIGKILL"):
        port = free_port()
        done = halo("serve", str(smoke_model.path), "--backend", "vulkan-radv", "--port", str(port),
                    "-c", "2048", "--detach")
        assert done.returncode == 0, done.stderr
        assert len(_servers_on(port)) == 1
        [info] = read_pid_files()
        if how == "serve stop":
            assert halo("serve", "stop", "--port", str(port)).returncode == 0
        else:
            os.kill(info.pid, signal.SIGKILL)
            Path(info.pid_file).unlink()
        wait_until(lambda: not _servers_on(port), 15, f"llama-server still runs after {how}")
