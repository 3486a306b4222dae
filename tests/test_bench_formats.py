"""`halo bench show/compare --format md|csv|jsonl`: llama-bench's own tables, checked against
the real llama-bench printing the same measurements (`-oe md` / `-oe csv` beside halo's
`-o jsonl`), and comparisons and serve-bench cells in the same style."""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path

import pytest

from conftest import write_tool
from halo_core.llama.server import ServerSpec, start_server
from halo_core.llama.process import free_port

TINY = ["--pp", "16", "--tg", "4", "--reps", "2"]
NO_ROOFLINE = {"HALO_BANDWIDTH_GBS": "0"}  # llama-bench's columns alone: no % BW


def _saved(done) -> Path:
    assert done.returncode == 0, done.stderr
    return Path(re.search(r"^saved: (.+)$", done.stdout, re.M).group(1))


def _tee(tmp_path: Path, llama_bin_dir: Path, fmt: str) -> tuple[Path, Path]:
    """A llama.cpp dir whose llama-bench is the real one, also printing `fmt` on stderr into a
    file: llama-bench's own rendering of the very measurements halo records."""
    folder, capture = tmp_path / f"tee-{fmt}", tmp_path / f"llama-bench.{fmt}"
    folder.mkdir()
    (folder / "llama-server").symlink_to(llama_bin_dir / "llama-server")
    write_tool(folder / "llama-bench",
               f'real={llama_bin_dir / "llama-bench"}\n'
               'case " $* " in *" --help "*) exec "$real" "$@";; esac\n'
               f'exec "$real" "$@" -oe {fmt} 2>>{capture}\n')
    return folder, capture


def _show(halo, run: Path, fmt: str) -> str:
    done = halo("bench", "show", str(run), "--format", fmt)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("options", [
    [],
    ["--kv-types", "q8_0", "-b", "256", "-ub", "64", "--threads", "1"],
], ids=["defaults", "kv-batch-threads"])
def test_md_is_llama_benchs_own_table(halo, smoke_model, tmp_path, llama_bin_dir, options):
    folder, capture = _tee(tmp_path, llama_bin_dir, "md")
    run = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, *options,
                      "--llama-cpp-dir", str(folder), "--tag", f"md-{len(options)}", env=NO_ROOFLINE))
    theirs = capture.read_text()
    assert theirs.startswith("| model ") and "build: " in theirs
    assert _show(halo, run, "md") == theirs  # every line, the footer included
    if options:  # the columns llama-bench adds for what differs from its defaults
        header = theirs.splitlines()[0]
        assert all(f" {c} |" in header for c in ("n_batch", "n_ubatch", "type_k", "type_v", "threads"))


def test_halo_columns_follow_llama_benchs_unchanged(halo, smoke_model, tmp_path, llama_bin_dir):
    folder, capture = _tee(tmp_path, llama_bin_dir, "md")
    run = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, "--llama-cpp-dir", str(folder),
                      "--tag", "md-bw", env={"HALO_BANDWIDTH_GBS": "100"}))
    theirs = capture.read_text().splitlines()
    ours = _show(halo, run, "md").splitlines()
    results = json.loads((run / "results.json").read_text())
    assert len(ours) == len(theirs) == 2 + len(results) + 2
    assert ours[0] == theirs[0] + "       % BW |"
    assert ours[1] == theirs[1] + " ---------: |"
    for mine, llama, r in zip(ours[2:], theirs[2:], results):
        cell = "-" if r["bandwidth_pct"] is None else f"{r['bandwidth_pct']:.1f}"
        assert mine == llama + f" {cell:>10} |"
    assert [r["test"] for r in results] == ["pp16", "tg4"] and results[1]["bandwidth_pct"] > 0
    assert ours[-2:] == theirs[-2:] == ["", "build: unknown (0)"]


def test_csv_and_jsonl_are_llama_benchs(halo, smoke_model, tmp_path, llama_bin_dir):
    folder, capture = _tee(tmp_path, llama_bin_dir, "csv")
    run = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, "--llama-cpp-dir", str(folder),
                      "--tag", "csv"))
    theirs = capture.read_text()
    assert theirs.startswith("build_commit,build_number,")
    ours = _show(halo, run, "csv")
    assert ours == theirs
    rows = list(csv.DictReader(io.StringIO(ours)))
    results = json.loads((run / "results.json").read_text())
    assert [(row["n_prompt"], row["n_gen"]) for row in rows] == [("16", "0"), ("0", "4")]
    assert [float(row["avg_ts"]) for row in rows] == [r["avg_ts"] for r in results]

    jsonl = _show(halo, run, "jsonl")
    assert jsonl == (run / "raw.jsonl").read_text()  # llama-bench's lines, as it printed them
    assert [json.loads(line)["avg_ts"] for line in jsonl.splitlines()] == [r["avg_ts"] for r in results]


def test_synthetic_weights_are_a_column_not_a_changed_model_cell(halo, home, smoke_model, tmp_path,
                                                                  llama_bin_dir):
    made = json.loads(halo("models", "synth", "--arch", "llama", "--shape", "tiny", "--json").stdout)
    folder, capture = _tee(tmp_path, llama_bin_dir, "md")
    run = _saved(halo("bench", "run", "-m", f"{smoke_model.path},{made['ref']}", *TINY,
                      "--llama-cpp-dir", str(folder), "--tag", "synthetic", env=NO_ROOFLINE))
    # two llama-bench processes, two tables of the same columns: halo's one table has their rows
    theirs = [ln for ln in capture.read_text().splitlines() if ln.startswith("| ")]
    ours = _show(halo, run, "md").splitlines()
    assert theirs[0] == theirs[4] and theirs[1] == theirs[5]  # two headers, the same columns
    assert ours[0] == theirs[0] + " synthetic  |"
    assert ours[1] == theirs[1] + " ---------- |"
    rows = theirs[2:4] + theirs[6:8]
    assert ours[2:6] == [rows[0] + " no         |", rows[1] + " no         |",
                         rows[2] + " yes        |", rows[3] + " yes        |"]


def test_a_run_of_two_groups_is_one_table_with_their_rows(halo, smoke_model, tmp_path, llama_bin_dir):
    folder, capture = _tee(tmp_path, llama_bin_dir, "md")
    run = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, "--depths", "0,32",
                      "--ctx-prompt", "16", "--llama-cpp-dir", str(folder), "--tag", "groups", env=NO_ROOFLINE))
    theirs = [ln for ln in capture.read_text().splitlines() if ln.startswith("| ")]
    ours = _show(halo, run, "md").splitlines()
    assert len(theirs) == 2 + 2 + 2 + 4 and theirs[0] == theirs[4]  # std: 2 rows, ctx: 4
    assert ours[0] == theirs[0] + " group      |"
    assert ours[2:8] == [row + f" {group:<10} |" for row, group in
                         zip(theirs[2:4] + theirs[6:10], ["std"] * 2 + ["ctx"] * 4)]
    assert ours[7].split("|")[-4].strip() == "tg4 @ d32"


def test_compare_as_markdown_csv_and_jsonl(halo, smoke_model):
    before = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, "--tag", "cmp-a"))
    after = _saved(halo("bench", "run", "-m", str(smoke_model.path), "--pp", "16", "--tg", "0",
                        "--reps", "2", "--tag", "cmp-b"))
    deltas = json.loads(halo("bench", "compare", str(before), str(after), "--json").stdout)
    assert [d["verdict"] for d in deltas][1] == "only before"

    md = halo("bench", "compare", str(before), str(after), "--format", "md")
    assert md.returncode == 0, md.stderr
    lines = md.stdout.splitlines()
    assert lines[0] == ("| model                          | backend    | kv         |            test "
                        "| before t/s |  after t/s |     change | verdict    |")
    assert lines[1] == ("| ------------------------------ | ---------- | ---------- | --------------: "
                        "| ---------: | ---------: | ---------: | ---------- |")
    for line, d in zip(lines[2:], deltas, strict=True):
        change = "-" if d["change_pct"] is None else f"{d['change_pct']:+.1f}%"
        after_ts = "-" if d["after_ts"] is None else f"{d['after_ts']:.2f}"
        assert line == (f"| {d['model']:<30} | {d['backend']:<10} | {d['kv']:<10} | {d['test']:>15} "
                        f"| {d['before_ts']:>10.2f} | {after_ts:>10} | {change:>10} | {d['verdict']:<10} |")

    rows = list(csv.DictReader(io.StringIO(halo("bench", "compare", str(before), str(after),
                                                 "--format", "csv").stdout)))
    assert [(r["test"], r["verdict"], r["after_ts"]) for r in rows] == [
        (d["test"], d["verdict"], "" if d["after_ts"] is None else str(d["after_ts"])) for d in deltas]
    jsonl = halo("bench", "compare", str(before), str(after), "--format", "jsonl").stdout
    assert [json.loads(line) for line in jsonl.splitlines()] == deltas


def test_serve_bench_cells_and_compare(halo, smoke_model, llama_bin_dir):
    started = start_server(ServerSpec(model=str(smoke_model.path), port=free_port(), ctx=1024, parallel=1))
    try:
        args = ("bench", "serve", "--endpoint", started.info.url, "--pp", "16", "--tg", "4",
                "--concurrency", "1", "--reps", "1")
        first = _saved(halo(*args, "--tag", "fmt-serve-a"))
        second = _saved(halo(*args, "--tag", "fmt-serve-b"))
    finally:
        started.stop()
    cells = json.loads(halo("bench", "show", str(first), "--json").stdout)["cells"]
    md = _show(halo, first, "md").splitlines()
    assert md[0].startswith("|      depth | load       |     prompt |     pp t/s |     tg t/s |")
    assert md[1].startswith("| ---------: | ---------- | ---------: |")
    [row] = md[2:]
    cell = cells[0]
    assert row.startswith(f"| {cell['depth']:>10} | {'c1':<10} | {cell['prompt_tokens']:>10} "
                          f"| {cell['pp_ts']['mean']:>10.1f} | {cell['tg_ts']['mean']:>10.1f} |")
    assert row.endswith(f" | {'-':<10} | {cell['errors']:>10} |")

    [flat] = list(csv.DictReader(io.StringIO(_show(halo, first, "csv"))))
    assert flat["cell"] == cell["cell"] and float(flat["ttft_ms_p50"]) == cell["ttft_ms"]["p50"]
    assert [json.loads(line) for line in _show(halo, first, "jsonl").splitlines()] == cells

    deltas = json.loads(halo("bench", "compare", str(first), str(second), "--json").stdout)
    md = halo("bench", "compare", str(first), str(second), "--format", "md").stdout.splitlines()
    assert md[0] == "| cell       | metric     |     before |      after |     change |          p | verdict    |"
    assert len(md) == 2 + len(deltas)
    assert md[2].startswith(f"| {deltas[0]['cell']} | {deltas[0]['metric']:<10} | {deltas[0]['before']:>10.2f} |")


def test_a_run_without_llama_benchs_records_is_one_line(halo, smoke_model, tmp_path):
    run = _saved(halo("bench", "run", "-m", str(smoke_model.path), *TINY, "--tag", "no-raw"))
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    (copy / "raw.jsonl").unlink()
    for fmt in ("md", "csv", "jsonl"):
        done = halo("bench", "show", str(copy), "--format", fmt)
        assert done.returncode == 1 and done.stdout == ""
        assert done.stderr == (f"Error: 2 of the 2 results of {copy.name} have no llama-bench record in "
                               f"{copy / 'raw.jsonl'}: llama-bench's formats need them (--format table or "
                               f"json show the run)\n")
    assert halo("bench", "show", str(copy), "--format", "table").returncode == 0
    done = halo("bench", "show", str(copy), "--json", "--format", "md")
    assert done.returncode == 2 and done.stderr.endswith(
        "Error: --json is --format json: give one of --json and --format md\n")
