"""The one configurable default backend and model: config file, environment, built-in."""

from __future__ import annotations

import json

import pytest

from halo_core import BenchSpec, MeasureSpec
from halo_core.config import Defaults, defaults
from halo_core.errors import HaloError
from halo_core.llama.server import ServerSpec


@pytest.fixture
def config(tmp_path, monkeypatch):
    """Write $XDG_CONFIG_HOME/halo/config.toml; returns its path."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    path = tmp_path / "halo" / "config.toml"
    path.parent.mkdir()

    def write(text: str):
        path.write_text(text)
        return path
    return write


def test_built_in_then_file_then_environment(config, monkeypatch):
    assert defaults() == Defaults("native", "smoke", {"backend": "built-in", "model": "built-in"})
    path = config('[defaults]\nbackend = "vulkan-radv"\nmodel = "qwen3.5-35b-a3b-q4"\n[other]\nx = 1\n')
    assert defaults() == Defaults("vulkan-radv", "qwen3.5-35b-a3b-q4",
                                  {"backend": str(path), "model": str(path)})
    monkeypatch.setenv("HALO_BACKEND", "rocm-7.2.1")
    assert defaults() == Defaults("rocm-7.2.1", "qwen3.5-35b-a3b-q4",
                                  {"backend": "HALO_BACKEND", "model": str(path)})
    # every record that names no backend or model takes them
    assert BenchSpec().backends == ("rocm-7.2.1",) and BenchSpec().models == ("qwen3.5-35b-a3b-q4",)
    assert (MeasureSpec().backend, MeasureSpec().model) == ("rocm-7.2.1", "qwen3.5-35b-a3b-q4")
    assert ServerSpec("m").backend == "rocm-7.2.1"
    monkeypatch.setenv("HALO_CONFIG", str(path.parent / "elsewhere.toml"))
    with pytest.raises(HaloError, match=r"^HALO_CONFIG=.*elsewhere.toml: no such file$"):
        defaults()


@pytest.mark.parametrize("text, error", [
    ("[defaults]\nbackend = vulkan\n", r" is not valid TOML: Invalid value \(at line 2, column 11\)$"),
    ("[defaults]\nbakend = \"x\"\n", r": unknown key 'bakend' in \[defaults\] \(known: backend, model\)$"),
    ("[defaults]\nmodel = 3\n", r": \[defaults\] model must be a name in quotes, e.g. model = \"smoke\"$"),
    ("defaults = \"native\"\n", r": defaults must be a table \(\[defaults\]\)$"),
])
def test_a_bad_file_is_one_line(config, text, error):
    path = config(text)
    with pytest.raises(HaloError, match="^" + str(path).replace(".", r"\.") + error):
        defaults()


def test_the_cli_uses_and_shows_them(halo, tmp_path):
    (tmp_path / "halo").mkdir()
    (tmp_path / "halo" / "config.toml").write_text('[defaults]\nmodel = "no-such-model"\n')
    env = {"XDG_CONFIG_HOME": str(tmp_path), "HALO_BACKEND": "native"}
    done = halo("plugins", "--json", env=env)
    assert json.loads(done.stdout)["defaults"] == {
        "backend": "native", "model": "no-such-model",
        "origin": {"backend": "HALO_BACKEND", "model": str(tmp_path / "halo" / "config.toml")}}
    done = halo("plugins", env=env)
    assert done.stdout.splitlines()[-1] == (f"default backend: native (HALO_BACKEND) · default model: "
                                            f"no-such-model ({tmp_path / 'halo' / 'config.toml'})")
    done = halo("backends", "--json", env=env)
    assert [r["name"] for r in json.loads(done.stdout) if r["default"]] == ["native"]

    done = halo("bench", "run", env=env)  # the default model, which does not exist
    assert done.returncode == 1
    assert done.stderr.startswith("Error: unknown model 'no-such-model'")
    done = halo("serve", "smoke", env={**env, "HALO_BACKEND": "nope"})
    assert done.returncode == 1
    assert done.stderr.startswith("Error: unknown backend 'nope' (known: native")

    (tmp_path / "halo" / "config.toml").write_text("[defaults\n")
    for args in (["plugins"], ["bench", "run"]):
        done = halo(*args, env=env)
        assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
        assert done.stderr.startswith(f"Error: {tmp_path / 'halo' / 'config.toml'} is not valid "
                                      f"TOML: Expected ']' at the end of a table declaration")
