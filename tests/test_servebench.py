"""`halo bench serve` against a real llama-server on the smoke model: exact prompt token counts
at depth, concurrency 1 and 4, cache-hit flagging with the prompt cache left on, a server
killed mid-run (recorded errors) and the run resumed, the CLI, compare and report; and against
an OpenAI-compatible server that is not llama.cpp (tests/openai_stub.py: no tokenizer there)."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest

from conftest import wait_until
from halo_core.llama.server import ServerSpec, start_server
from halo_core.llama.process import free_port
from halo_core.servebench.share import format_serve_run
from halo_core.servebench import agentic
from halo_core.servebench.run import (
    RequestRecord, ServeBenchSpec, ServeRun, Stat, bootstrap_p, compare_serve_runs,
    find_serve_run, load_serve_run, matrix_server, plan, run_serve_bench, summarize,
)

pytestmark = pytest.mark.slow

PP, TG = 64, 8


def _smoke_server(model, ctx: int, parallel: int, extra: tuple[str, ...] = ()):
    """A real llama-server on the smoke model, its url yielded until the fixture ends."""
    started = start_server(ServerSpec(model=str(model.path), port=free_port(), ctx=ctx, parallel=parallel,
                                      extra=extra))
    try:
        yield started.info.url
    finally:
        started.stop()


@pytest.fixture(scope="module")
def server(smoke_model, llama_bin_dir):
    """One real llama-server with 4 slots for the module, answering in lower-case letters and
    spaces (a default --grammar): llama-server holds back a token that ends in an incomplete UTF-8
    character and sends it with the next, so the smoke model's sampled bytes of an emoji would put
    two tokens in one chunk (seen once in CI: 8 tokens in 2 chunks); ASCII text is one chunk a
    token, and the ITL counts below are exact."""
    yield from _smoke_server(smoke_model, 4 * 512, 4, ("--grammar", "root ::= [a-z ]*"))


@pytest.fixture(scope="module")
def matrix_run(server):
    """Depths 0 and 256 at concurrency 1 and 4, one round each, cache busted."""
    spec = ServeBenchSpec(endpoint=server, depths=(0, 256), pp=PP, tg=TG, concurrency=(1, 4), reps=1,
                          tag="matrix")
    cells = []
    return run_serve_bench(spec, on_cell=cells.append), cells


def test_matrix_records_exact_counts_and_server_timings(matrix_run):
    run, streamed = matrix_run
    assert (run.status, run.error) == ("complete", "")
    assert [c.cell for c in run.cells] == ["d0|pp64|tg8|c1", "d0|pp64|tg8|c4",
                                           "d256|pp64|tg8|c1", "d256|pp64|tg8|c4"]
    assert [c.cell for c in streamed] == [c.cell for c in run.cells]  # progress, cell by cell
    assert len(run.requests) == 1 + 4 + 1 + 4
    for r in run.requests:
        depth = int(r.cell.split("|")[0][1:])
        assert r.ok and r.error == "" and r.http_status == 200
        # halo's count before sending (/apply-template + /tokenize) is the server's own
        assert r.prompt_counted == r.prompt_tokens == r.timings["prompt_n"] == depth + PP
        assert r.completion_tokens == r.timings["predicted_n"] == TG
        assert r.cached_tokens == 0 == r.timings["cache_n"]  # unique prefix + cache_prompt false
        assert r.shared_tokens > 0  # the template's opening, before the unique prefix
        assert len(r.uid) == 12
        assert 0 < r.ttfr_s <= r.first_token_s <= r.ttft_s <= r.last_token_s <= r.e2e_s
        assert len(r.itl_s) == TG - 1 and all(g >= 0 for g in r.itl_s)
        assert r.pp_source == "server"
        assert r.pp_ts == pytest.approx(r.timings["prompt_per_second"], rel=1e-3)
        assert r.tg_ts == pytest.approx((TG - 1) / (r.last_token_s - r.first_token_s), rel=1e-2)
    assert len({r.uid for r in run.requests}) == len(run.requests)
    four = [r for r in run.requests if r.cell == "d0|pp64|tg8|c4"]
    assert max(r.start_s for r in four) < min(r.start_s + r.ttfr_s for r in four)  # all in flight at once
    for c in run.cells:
        assert (c.errors, c.cache_hits, c.cached_pct, c.pp_source) == (0, 0, 0.0, "server")
        assert c.prompt_tokens == c.depth + PP
        assert c.ttft_ms.n == c.requests == (c.concurrency or 0)
        assert c.ttft_ms.p50 <= c.ttft_ms.p95 <= c.ttft_ms.p99 <= c.ttft_ms.max
        assert c.itl_ms.n == c.requests * (TG - 1)
        assert c.req_per_s.mean > 0 and c.agg_ts.mean > 0


def test_run_directory_holds_what_the_numbers_came_from(matrix_run):
    run, _ = matrix_run
    state = json.loads((run.path / "run.json").read_text())
    assert (state["kind"], state["status"], state["servers"]) == ("serve", "complete", [])
    assert state["endpoint"]["kind"] == "llama-server" and state["endpoint"]["token_counts"] == "tokenize"
    system = json.loads((run.path / "system.json").read_text())
    assert system["server_props"]["total_slots"] == 4 and system["models"]["data"]
    lines = (run.path / "requests.jsonl").read_text().splitlines()
    assert len(lines) == 10 and json.loads(lines[0])["timings"]["prompt_n"] == PP
    assert [json.loads(line)["status"] for line in (run.path / "cells.jsonl").read_text().splitlines()] == ["ok"] * 4
    assert len(json.loads((run.path / "results.json").read_text())) == 4
    again = load_serve_run(run.path)  # summaries are recomputed from requests.jsonl
    assert again.cells == run.cells and again.requests == run.requests


def test_the_servers_own_metrics_and_where_the_time_went(matrix_run):
    """(#23) llama-server started with --metrics: its /metrics scraped during the run
    (server-metrics.jsonl, parsed by prometheus_client) and, per cell, its prompt and generation
    t/s and peak requests over the cell's window; each request's latency split into queue,
    prefill and decode from the server's timings."""
    run, _ = matrix_run
    state = json.loads((run.path / "run.json").read_text())
    assert state["server_metrics"] == "server-metrics.jsonl"
    csv_head = format_serve_run(run, "csv").splitlines()[0].split(",")
    assert {"server_predicted_ts", "server_deferred_max", "queue_ms_p50", "prefill_ms_mean"} <= set(csv_head)
    rows = [json.loads(line) for line in (run.path / "server-metrics.jsonl").read_text().splitlines()]
    assert len(rows) >= 2 * len(run.cells)  # a scrape at each cell's start and end, at least
    assert all(rows[i]["time"] <= rows[i + 1]["time"] for i in range(len(rows) - 1))
    last = rows[-1]["metrics"]
    # every request of the run (and the warm-up) is in the server's counters
    assert last["tokens_predicted_total"] >= sum(r.completion_tokens for r in run.requests)
    assert last["prompt_tokens_total"] >= sum(r.prompt_tokens for r in run.requests)
    for c in run.cells:
        assert c.server.scrapes >= 2 and c.server.predicted_ts > 0 and c.server.prompt_ts > 0
        assert c.server.processing_max <= 4 and c.server.deferred_max == 0
        mine = [r for r in run.requests if r.cell == c.cell]
        for r in mine:
            assert r.e2e_s * 1000 >= r.timings["prompt_ms"] + r.timings["predicted_ms"] - 1
        assert c.prefill_ms.n == c.decode_ms.n == c.queue_ms.n == len(mine)
        assert c.prefill_ms.mean == pytest.approx(np.mean([r.timings["prompt_ms"] for r in mine]), abs=0.01)
        assert c.queue_ms.min >= 0
        # halo's client: CPU seconds per 1,000 tokens, well under a second of one core per
        # second of generation (its tokens/s here are a few hundred)
        assert 0 < c.client_cpu_s_per_1k < 1000.0 / max(c.agg_ts.mean, 1.0)
    # the generation t/s the server saw over a cell agrees with its per-request timings
    one = run.cells[0]
    [r] = [r for r in run.requests if r.cell == one.cell]
    assert one.server.predicted_ts == pytest.approx(r.timings["predicted_per_second"], rel=0.25)


def test_prompt_cache_left_on_is_flagged(halo, server, matrix_run):
    done = halo("bench", "serve", "--endpoint", server, "--pp", str(PP), "--tg", str(TG), "--reps", "2",
                "--prompt-cache", "--tag", "cached", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    [cell] = out["cells"]
    run = load_serve_run(Path(out["path"]))
    first, second = run.requests
    # the same prompt twice: the first shares only the chat template's opening (SmolLM2's
    # default system turn) with earlier requests, which is no hit; the second is served from
    # the cache, and the cell says so
    assert first.uid == second.uid == "" and 0 < first.cached_tokens == first.shared_tokens
    assert second.cached_tokens == second.timings["cache_n"] >= PP - 2
    assert cell["cache_hits"] == 1 and cell["cached_pct"] > 15
    assert second.timings["prompt_n"] < PP  # what the server really computed
    assert "1 cache hit(s)" in done.stderr  # progress line on the terminal


def test_killed_server_records_errors_and_the_run_resumes(smoke_model, llama_bin_dir):
    spec = ServeBenchSpec(server=ServerSpec(model=str(smoke_model.path), port=0, ctx=2 * 512, parallel=2),
                          depths=(0,), pp=PP, tg=64, concurrency=(1, 2), reps=1, tag="killed")
    killed = threading.Event()

    def kill_mid_stream(cell) -> None:
        """After the first cell: SIGKILL the server as soon as it streams the next cell's tokens."""
        state = json.loads((find_serve_run("killed") / "run.json").read_text())
        url, pid = state["servers"][-1]["url"], state["servers"][-1]["pid"]

        def streaming() -> bool:
            try:
                slots = httpx.get(f"{url}/slots", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return any(s["is_processing"] and s["next_token"][0]["n_decoded"] >= 1 for s in slots)

        def killer() -> None:
            wait_until(streaming, 120, "the server did not stream the second cell", interval=0.01)
            os.kill(pid, signal.SIGKILL)
            killed.set()

        threading.Thread(target=killer, daemon=True).start()

    run = run_serve_bench(spec, on_cell=lambda c: kill_mid_stream(c) if c.concurrency == 1 else None)
    assert killed.is_set()
    assert run.status == "partial"
    assert run.error.startswith("the endpoint stopped answering (")
    assert run.error.endswith(f"resume with: halo bench serve --resume {run.path}")
    first, second = run.cells
    assert (first.errors, second.errors, second.requests) == (0, 2, 2)
    cut = [r for r in run.requests if r.cell == second.cell]
    assert all(not r.ok and r.error for r in cut)
    assert any(r.ttfr_s is not None for r in cut)  # it was killed while streaming
    state = json.loads((run.path / "run.json").read_text())
    assert state["status"] == "partial" and len(state["servers"]) == 1

    resumed = run_serve_bench(resume=run.path)
    assert (resumed.status, resumed.error) == ("complete", "")
    assert [c.errors for c in resumed.cells] == [0, 0]
    rows = [json.loads(line) for line in (run.path / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 1 + 2 + 2  # the cut attempt stays on disk; the new one counts
    assert resumed.requests[0] == run.requests[0]  # the finished cell was not run again
    state = json.loads((run.path / "run.json").read_text())
    assert len(state["servers"]) == 2 and len(state["resumed_at"]) == 1
    argv = state["servers"][0]["argv"]
    assert argv[argv.index("-np") + 1] == "2" and argv[argv.index("-c") + 1] == "1024"
    system = json.loads((run.path / "system.json").read_text())
    assert system["server_props"]["total_slots"] == 2 and system["backend"]["found_through"]
    log = (run.path / "server.log").read_text()  # both servers' logs, each behind its argv
    assert log.count("=== ") == 2 and log.count("llama_server: listening on") == 2


def test_a_server_that_dies_mid_search_leaves_a_run_that_resumes(smoke_model, llama_bin_dir):
    """(#23) --slots 1,2: the -np 2 server SIGKILLed while it streams its second level; the run
    ends partial with -np 1's search and choice kept; resumed, -np 1's levels are not run again
    and the choice covers both."""
    spec = ServeBenchSpec(server=ServerSpec(model=str(smoke_model.path), port=0), pp=PP, tg=64,
                          concurrency=(2,), reps=1, slo="ttft_p95=120s", capacity="concurrency",
                          slots=(1, 2), tag="slots-killed")
    killed = threading.Event()

    def kill_mid_stream(cell) -> None:
        state = json.loads((find_serve_run("slots-killed") / "run.json").read_text())
        url, pid = state["servers"][-1]["url"], state["servers"][-1]["pid"]

        def streaming() -> bool:
            try:
                slots = httpx.get(f"{url}/slots", timeout=2).json()
            except (httpx.HTTPError, ValueError):
                return False
            return any(s["is_processing"] and s["next_token"][0]["n_decoded"] >= 1 for s in slots)

        def killer() -> None:
            wait_until(streaming, 120, "the -np 2 server did not stream its second level", interval=0.01)
            os.kill(pid, signal.SIGKILL)
            killed.set()

        threading.Thread(target=killer, daemon=True).start()

    run = run_serve_bench(spec, on_cell=lambda c: kill_mid_stream(c) if (c.slots, c.concurrency) == (2, 1) else None)
    assert killed.is_set() and run.status == "partial", run.error
    assert run.error.endswith(f"resume with: halo bench serve --resume {run.path}")
    assert [r.slots for r in run.slot_choice.results] == [1] and run.slot_choice.best == 1
    kept = {c.cell: c for c in run.cells}
    assert kept["d0|pp64|tg64|np2|c2"].errors == 2
    resumed = run_serve_bench(resume=run.path)
    assert resumed.status == "complete", resumed.error
    assert [r.slots for r in resumed.slot_choice.results] == [1, 2]
    assert all(r.capacity.boundary == 2 for r in resumed.slot_choice.results)
    cells = [json.loads(line)["cell"] for line in (run.path / "cells.jsonl").read_text().splitlines()]
    assert cells.count("d0|pp64|tg64|np1|c1") == 1 and cells.count("d0|pp64|tg64|np2|c2") == 2


def test_cli_table_compare_and_report(halo, server, matrix_run, tmp_path):
    done = halo("bench", "serve", "--endpoint", server, "--depths", "0", "--pp", str(PP), "--tg", str(TG),
                "--concurrency", "2", "--rate", "4", "--requests", "2", "--reps", "1", "--tag", "serve-cli")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "TTFT ms p50/95/99" in done.stdout and "ITL ms p50/95/99" in done.stdout
    assert "where the time went" in done.stdout and "prefill ms p50" in done.stdout  # (#23)
    assert lines[-1].startswith("saved: ") and "/runs/serve/serve-cli-" in lines[-1]
    assert "depth 0 · c2: pp " in done.stderr and "depth 0 · 4 r/s: pp " in done.stderr
    run = load_serve_run(Path(lines[-1].removeprefix("saved: ")))
    assert [c.cell for c in run.cells] == ["d0|pp64|tg8|c2", "d0|pp64|tg8|r4"]
    paced = [r for r in run.requests if r.cell.endswith("r4")]
    assert paced[0].start_s < 0.01 < paced[1].start_s  # the second arrives at its Poisson time

    # show and list know serve-bench runs; piped, a table keeps its full width (no 80-column cut)
    shown = halo("bench", "show", "serve-cli", env={"COLUMNS": ""})
    assert shown.returncode == 0, shown.stderr
    assert "TTFT ms p50/95/99" in shown.stdout and "…" not in shown.stdout
    assert shown.stdout.splitlines()[-1] == f"path: {run.path}"
    listed = json.loads(halo("bench", "list", "--json").stdout)
    assert [(r["kind"], r["status"], r["results"], r["failed"]) for r in listed if r["path"] == str(run.path)] == [
        ("serve", "complete", 2, 0)]

    matrix = str(matrix_run[0].path)
    compared = halo("bench", "compare", matrix, "serve-cli", "--json")
    assert compared.returncode == 0, compared.stderr
    deltas = json.loads(compared.stdout)
    by = {(d["cell"], d["metric"]): d for d in deltas}
    assert by[("d0|pp64|tg8|c1", "TTFT p50 ms")]["verdict"] == "only before"
    assert by[("d0|pp64|tg8|c2", "tg t/s")]["verdict"] == "only after"
    assert {d["metric"] for d in deltas} == {"pp t/s", "tg t/s", "TTFT p50 ms", "TTFT p95 ms",
                                             "ITL p50 ms", "ITL p95 ms", "e2e p50 ms"}

    report = halo("bench", "report", matrix, "serve-cli", "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "TTFT p50 / p95 / p99 vs concurrency" in page and "tg t/s vs context depth" in page
    assert "TTFT p50 / p95 / p99 vs rate" in page
    assert page.count("<tr>") == 2 * (1 + 4 + 2)  # header + the cells of both runs, in each table
    assert "<h2>Where the time went</h2>" in page and "<th>server tg t/s</th>" in page
    from test_report import chromium

    dom = chromium(tmp_path, "--dump-dom", (tmp_path / "report" / "index.html").as_uri()).stdout
    assert "Where the time went" in dom and dom.count("<tr>") == page.count("<tr>")
    assert sorted(p.name for p in (tmp_path / "report").glob("*.png")) == [
        "depth-pp.png", "depth-tg.png", "itl-concurrency.png", "itl-rate.png", "ttft-concurrency.png",
        "ttft-rate.png"]


@pytest.mark.parametrize("args, code, message", [
    (["--concurrency", "0"], 2, "--concurrency values must be >= 1"),
    (["--rate", "0"], 2, "--rate values must be > 0"),
    (["--depths", "a"], 2, "--depths takes comma-separated whole numbers, not 'a'"),
    (["smoke", "--endpoint", "http://127.0.0.1:9"], 2, "give MODEL (or --preset) to start a server, or --endpoint URL, not both"),
    (["--endpoint", "http://127.0.0.1:9", "-np", "2"], 2, "server options (--backend, -c, -np, ... or args after --) need MODEL or --preset"),
    (["--endpoint", "http://127.0.0.1:9"], 1, "no OpenAI-compatible server at http://127.0.0.1:9 (ConnectError: "),
    (["--workload", "agentic", "--rate", "1"], 2, "--rate does not apply to --workload agentic: each "
                                                  "--concurrency level is that many sessions at once"),
    (["--workload", "agentic", "--turns", "0"], 2, "Invalid value for '--turns': 0 is not in the range x>=1."),
    (["--workload", "agentic", "--depths", "0,1024"], 2, "--depths does not apply to --workload agentic"),
    (["--workload", "agentic", "--tool-tokens", "900,100"], 2, "--tool-tokens takes LO,HI with LO <= HI, not '900,100'"),
    (["--turns", "3"], 2, "--turns and --tool-tokens need --workload agentic"),
    (["--workload", "chat"], 2, "Invalid value for '--workload': 'chat' is not 'agentic'."),
    (["--resume", "no-such-run"], 1, "no serve-bench run 'no-such-run' (not a run directory, run name or tag; "
                                     "`halo bench serve` writes them under "),
])
def test_bad_input_is_one_line(halo, home, args, code, message):
    done = halo("bench", "serve", *args)
    assert done.returncode == code
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith(f"Error: {message}") and "Traceback" not in done.stderr
    assert len(lines) == 1 or lines[0].startswith("Usage: halo bench serve")


def _request(cell: str, i: int, ttft: float, tg: float, gaps: list[float]) -> RequestRecord:
    return RequestRecord(cell=cell, attempt="a", rep=0, index=i, uid=f"u{i}", start_s=0.0, ok=True,
                         prompt_tokens=PP, completion_tokens=TG, ttfr_s=ttft, first_token_s=ttft,
                         ttft_s=ttft, last_token_s=ttft + sum(gaps), e2e_s=ttft + sum(gaps),
                         itl_s=gaps, pp_ts=PP / ttft, pp_source="server", tg_ts=tg)


def test_compare_calls_a_real_change_and_not_noise(tmp_path):
    rng = np.random.default_rng(1)
    [cell] = plan(ServeBenchSpec(pp=PP, tg=TG, reps=1, concurrency=(30,)))
    ttft = rng.normal(0.100, 0.005, 30)
    tg = rng.normal(50, 2, 30)
    gaps = rng.normal(0.02, 0.002, (30, TG - 1))

    def side(ttft, order) -> ServeRun:
        requests = [_request(cell.key, i, float(ttft[i]), float(tg[j]), [float(g) for g in gaps[j]])
                    for i, j in enumerate(order)]
        return ServeRun(tmp_path, ServeBenchSpec(), cells=[summarize(cell, requests)], requests=requests)

    # after: TTFT 20 ms lower; tg and the inter-token gaps the same values, shuffled over requests
    before, after = side(ttft, range(30)), side(ttft - 0.020 + rng.normal(0, 0.002, 30), rng.permutation(30))
    deltas = {d.metric: d for d in compare_serve_runs(before, after)}
    assert deltas["TTFT p50 ms"].verdict == deltas["TTFT p95 ms"].verdict == "faster"
    assert deltas["TTFT p50 ms"].change_pct < -15 and deltas["pp t/s"].verdict == "faster"
    for metric in ("tg t/s", "ITL p50 ms", "ITL p95 ms"):
        assert deltas[metric].verdict == "within noise" and deltas[metric].change_pct == 0, deltas[metric]
    assert compare_serve_runs(before, before)[0].verdict == "within noise"
    # a percentile of a handful of requests is not tested at all
    few = [np.array([0.1]), np.array([0.2])]
    assert bootstrap_p(few, few, 95) is None
    assert Stat.of([]) is None and Stat.of([2.0]).std == 0.0


def test_an_endpoint_without_tokenize_counts_through_usage():
    """A server that is not llama.cpp (no /props, /tokenize, timings; tests/openai_stub.py):
    prompts sized from tokens per word measured through `usage`, counted by the server, pp
    estimated from the time to the first token."""
    from openai_stub import TEMPLATE, StubServer

    with StubServer(token_delay=0.002) as url:
        run = run_serve_bench(ServeBenchSpec(endpoint=url, depths=(0, 256), pp=PP, tg=TG, concurrency=(2,),
                                             reps=2, tag="stub"))
    assert run.status == "complete" and run.model == "stub"
    state = json.loads((run.path / "run.json").read_text())
    assert state["endpoint"] == {"url": url, "model": "stub", "kind": "openai", "token_counts": "usage"}
    for r in run.requests:
        depth = int(r.cell.split("|")[0][1:])
        assert r.ok and r.prompt_counted is None and r.timings is None and r.cached_tokens is None
        assert abs(r.prompt_tokens - (depth + PP)) <= TEMPLATE  # sized from the measured tokens per word
        assert r.completion_tokens == TG and len(r.itl_s) == TG - 1
    for c in run.cells:
        assert c.pp_source == "estimated" and c.pp_ts.mean > 0 and c.cache_hits == 0
        assert c.itl_ms.p50 >= 1.5  # the stub's 2 ms per token, seen through the client
        assert c.server is None and c.prefill_ms is None  # no /metrics, no timings: unknown
    assert state["server_metrics"].startswith("none: GET /metrics: HTTP 404")
    assert not (run.path / "server-metrics.jsonl").exists()


def test_ttft_waits_for_the_first_content_token():
    """A thinking model (the stub streams 4 reasoning tokens, after an empty content chunk, 20 ms
    apart): TTFT is the first *content* token; generation speed counts every token."""
    from openai_stub import StubServer

    with StubServer(token_delay=0.02, reasoning=4) as url:
        run = run_serve_bench(ServeBenchSpec(endpoint=url, pp=PP, tg=TG, concurrency=(1,), reps=2,
                                             tag="thinking"))
    assert run.status == "complete"
    for r in run.requests:
        assert r.ttfr_s < r.first_token_s < r.ttft_s  # role chunk, first reasoning token, first content
        assert r.ttft_s - r.first_token_s == pytest.approx(4 * 0.02, abs=0.015)
        assert len(r.itl_s) == TG - 1 and r.tg_ts == pytest.approx(1 / 0.02, rel=0.25)
    [cell] = run.cells
    assert cell.ttft_ms.p50 - cell.ttfr_ms.p50 > 4 * 20 - 15


def test_power_and_tokens_per_joule_are_logged(halo, tmp_path):
    """Hardware metrics are sampled during the run (metrics.csv); each cell carries the mean
    power over its rounds and the generated tokens per joule (Strix Halo sysroot: 65 W)."""
    from openai_stub import StubServer
    from sysroot import strix_halo

    root = strix_halo(tmp_path / "root")
    with StubServer(token_delay=0.005) as url:
        done = halo("bench", "serve", "--endpoint", url, "--pp", str(PP), "--tg", "32", "--concurrency", "1,2",
                    "--reps", "2", "--root", str(root), "--tag", "power")
    assert done.returncode == 0, done.stderr
    assert " t/J " in done.stdout.replace("┃", " ")
    run = load_serve_run(Path(done.stdout.splitlines()[-1].removeprefix("saved: ")))
    rows = (run.path / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("time,") and "gpu_power_w" in rows[0] and len(rows) >= 2
    for c in run.cells:  # (read back: the power comes from cells.jsonl, the rest from the requests)
        assert c.power_w == 65.0
        assert c.tokens_per_joule == pytest.approx(c.agg_ts.mean / 65.0, abs=1e-3)
    report = halo("bench", "report", str(run.path), "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<th>W</th><th>t/J</th>" in page and "<td>65.0</td>" in page


def test_a_stream_chunk_of_any_shape_fails_its_request_only():
    """(#21) SSE chunks that are not what an OpenAI server sends end that request with an error
    (recorded), never the run with a traceback; odd usage/timings read as unknown."""
    from halo_core.servebench.run import _chunk, _Observed

    for chunk in ([], "text", 3, {"choices": "x"}, {"choices": ["x"]}, {"choices": [{"delta": "hi"}]},
                  {"choices": [{"delta": {}, "finish_reason": 5}]}, {"usage": [1]}, {"timings": "fast"},
                  {"error": "overloaded"}):
        seen = _Observed()
        assert _chunk(seen, chunk, 0.1) is False, chunk
    seen = _Observed()
    assert _chunk(seen, {"choices": [{"delta": {"content": "a"}}], "timings": {"prompt_ms": "x"},
                         "usage": {"prompt_tokens_details": "none"}}, 0.1)
    assert seen.tokens == [0.1] and seen.first == 0.1
    # llama-server's last chunk: no choices, the usage and timings
    assert _chunk(seen, {"choices": [], "usage": {"completion_tokens": 3}, "timings": {"predicted_n": 3}}, 0.2)
    assert seen.usage == {"completion_tokens": 3} and seen.timings == {"predicted_n": 3}


def test_a_model_whose_tokens_have_no_text_is_counted_by_the_server(home, llama_bin_dir):
    """(#23) A real llama-server on a model whose generated tokens decode to nothing (a synthetic
    model whose byte tokens and filler words are made control tokens: what happened on the H200
    before the fillers were words): the stream has no content, the requests still count, from the server's usage and
    timings; TTFT and ITL are unknown, not invented."""
    import gguf

    from halo_core.models.synth import synth_model

    made = synth_model(arch="llama", shape="tiny", name="tiny-silent")
    reader = gguf.GGUFReader(made.path, "r+")
    types = reader.fields["tokenizer.ggml.token_type"]
    for index in types.data[3:]:  # after <unk> <s> </s>: the bytes and the fillers
        types.parts[index][0] = 3  # control: decodes to no text (a prompt still tokenizes to bytes)
    del reader
    started = start_server(ServerSpec(model=str(made.path), port=free_port(), ctx=1024, parallel=1))
    try:
        url = started.info.url
        reply = httpx.post(f"{url}/v1/chat/completions", timeout=60, json={
            "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8, "seed": 1}).json()
        assert reply["choices"][0]["message"]["content"] == "" and reply["usage"]["completion_tokens"] >= 1
        run = run_serve_bench(ServeBenchSpec(endpoint=url, pp=PP, tg=TG, concurrency=(1,), reps=2,
                                             tag="silent"))
    finally:
        started.stop()
    assert run.status == "complete", [r.error for r in run.requests]
    for r in run.requests:
        assert r.ok and r.error == "" and r.completion_tokens == r.timings["predicted_n"] >= 1
        assert r.ttft_s is None and r.itl_s == ()
        if r.completion_tokens > 1:
            assert r.tg_ts == pytest.approx(r.timings["predicted_per_second"], rel=1e-3)
    [cell] = run.cells
    assert cell.ttft_ms is None or cell.ttft_ms.n == 0


def test_a_byte_level_vocabulary_gets_prompts_of_the_size_asked(home, llama_bin_dir):
    """(#23, found on the H200) A synthetic model's generated vocabulary is byte-level: every
    piece /tokenize returns is a byte, a space three of them. Pieces decoded one by one turned
    each into U+FFFD (three tokens again), so prompts came out ~20% short and now and then twice
    as long, which a server with just enough context refused (HTTP 400, read as saturation).
    The pieces' bytes are joined before decoding: every prompt is within a few tokens of depth +
    pp, counted as the server counts it."""
    from halo_core.models.synth import synth_model

    made = synth_model(arch="llama", shape="tiny", name="tiny-bytes")
    started = start_server(ServerSpec(model=str(made.path), port=free_port(), ctx=2 * 1024, parallel=2))
    try:
        run = run_serve_bench(ServeBenchSpec(endpoint=started.info.url, depths=(0, 256), pp=200, tg=4,
                                             concurrency=(2,), reps=2, tag="bytes"))
    finally:
        started.stop()
    assert run.status == "complete", run.error
    assert len(run.requests) == 8
    for r in run.requests:
        depth = int(r.cell.split("|")[0][1:])
        assert r.prompt_counted == r.prompt_tokens and abs(r.prompt_tokens - (depth + 200)) <= 3, r


def test_slos_give_goodput_and_a_verdict_per_cell(server):
    """(#23) --slo: a request is good when it meets every objective with its own values;
    goodput is good requests per second of a round; a cell meets the SLOs at their statistics.
    Against the real smoke server: generous limits every cell meets (goodput = req/s), and a
    TTFT no request can reach (no cell meets it, goodput 0, the miss says by how much)."""
    easy = run_serve_bench(ServeBenchSpec(endpoint=server, pp=PP, tg=TG, concurrency=(1, 2), reps=1,
                                          slo="ttft_p95=60s,itl_p99=10s,tg_min=0.01,e2e_max=120000ms",
                                          tag="slo-easy"))
    assert easy.status == "complete"
    for c in easy.cells:
        assert c.slo_met is True and c.slo_missed == () and c.good == c.requests
        assert c.goodput.mean == pytest.approx(c.req_per_s.mean)
    hard = run_serve_bench(ServeBenchSpec(endpoint=server, pp=PP, tg=TG, concurrency=(2,), reps=1,
                                          slo="ttft_p50=0.01ms", tag="slo-hard"))
    [c] = hard.cells
    assert c.slo_met is False and c.good == 0 and c.goodput.mean == 0.0
    assert len(c.slo_missed) == 1 and c.slo_missed[0].startswith("ttft_p50=0.01ms: ")
    assert load_serve_run(hard.path).cells == hard.cells  # the verdict is recomputed the same


@pytest.mark.parametrize("text, message", [
    ("ttft=2s", "bad SLO 'ttft=2s': write METRIC_STAT=LIMIT"),
    ("latency_p95=2s", "unknown SLO metric 'latency' in 'latency_p95=2s' (known: ttft, ttfr, e2e, itl, tg)"),
    ("ttft_p42=2s", "unknown statistic 'p42' for ttft in 'ttft_p42=2s' (known: p50, p90, p95, p99, max, mean)"),
    ("tg_max=20", "unknown statistic 'max' for tg in 'tg_max=20' (known: min, p1, p5, p10, p50, mean)"),
    ("tg_min=20ms", "bad SLO limit '20ms' in 'tg_min=20ms': tokens per second, a number"),
    ("ttft_p95=fast", "bad SLO limit 'fast' in 'ttft_p95=fast': a time such as 2s or 150ms"),
    ("ttft_p95=0s", "bad SLO limit '0s' in 'ttft_p95=0s': it must be > 0"),
    ("ttft_p95=1s,ttft_p95=2s", "an SLO is given twice"),
    (",", "--slo is empty"),
])
def test_a_bad_slo_is_one_line(halo, home, text, message):
    done = halo("bench", "serve", "--endpoint", "http://127.0.0.1:9", "--slo", text)
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr
    assert not (home / "runs" / "serve").exists()


def test_capacity_search_on_the_real_server(halo, server):
    """(#23) --capacity concurrency: doubling up to the ceiling when every level meets the SLOs
    (the result says capacity is at least the ceiling), and a stop at the first level when no
    level can meet them; the result is in run.json and read back; the CLI prints it."""
    easy = run_serve_bench(ServeBenchSpec(endpoint=server, pp=PP, tg=TG, concurrency=(4,), reps=2,
                                          slo="ttft_p95=120s", capacity="concurrency", tag="cap-easy"))
    assert easy.status == "complete" and [c.concurrency for c in easy.cells] == [1, 2, 4]
    cap = easy.capacity
    assert cap.boundary == 4 and [lv.level for lv in cap.levels] == [1, 2, 4]
    assert all(lv.met and lv.p_meet == 1.0 and lv.saturated == "" for lv in cap.levels)
    assert cap.interval == (4, 4) and cap.stopped.startswith("the ceiling meets the SLOs: capacity is at least 4")
    again = load_serve_run(easy.path)
    assert again.capacity == cap and again.cells == easy.cells
    # a search cut off after level 2 (its last cell line lost) resumes with level 4 only
    lines = (easy.path / "cells.jsonl").read_text().splitlines()
    (easy.path / "cells.jsonl").write_text("\n".join(lines[:2]) + "\n")
    resumed = run_serve_bench(resume=easy.path)
    assert [c.concurrency for c in resumed.cells] == [1, 2, 4] and resumed.capacity.boundary == 4
    attempts = [json.loads(line)["cell"] for line in (easy.path / "cells.jsonl").read_text().splitlines()]
    assert attempts == ["d0|pp64|tg8|c1", "d0|pp64|tg8|c2", "d0|pp64|tg8|c4"]

    done = halo("bench", "serve", "--endpoint", server, "--pp", str(PP), "--tg", str(TG), "--concurrency", "4",
                "--reps", "1", "--slo", "ttft_p50=0.01ms", "--capacity", "concurrency", "--tag", "cap-none")
    assert done.returncode == 0, done.stderr
    assert "capacity at ttft_p50=0.01ms: none" in done.stdout
    assert ("stopped: no level meets the SLOs: 1 concurrent requests already misses (ttft_p50=0.01ms: "
            in done.stdout)
    run = load_serve_run(Path(done.stdout.splitlines()[-1].removeprefix("saved: ")))
    assert [c.concurrency for c in run.cells] == [1]  # nothing above a level that misses


def test_slots_are_chosen_by_measurement(halo, smoke_model, llama_bin_dir):
    """(#23 item 2) --slots: the capacity search once per slot count, each against a server of
    its own (-np N, -c N x what a request needs), the best -np by capacity then goodput; a
    slot count whose server does not start is recorded and the others go on; the CLI prints it
    and --json carries it."""
    spec = ServeBenchSpec(server=ServerSpec(model=str(smoke_model.path), port=0), pp=PP, tg=TG,
                          concurrency=(2,), reps=1, slo="ttft_p95=120s", capacity="concurrency",
                          slots=(1, 2, 20_000_000), tag="slots")
    run = run_serve_bench(spec)
    assert run.status == "complete", run.error
    assert [(c.slots, c.concurrency) for c in run.cells] == [(1, 1), (1, 2), (2, 1), (2, 2)]
    assert {c.cell for c in run.cells} == {"d0|pp64|tg8|np1|c1", "d0|pp64|tg8|np1|c2",
                                           "d0|pp64|tg8|np2|c1", "d0|pp64|tg8|np2|c2"}
    argvs = [s["argv"] for s in json.loads((run.path / "run.json").read_text())["servers"]]
    assert [a[a.index("-np") + 1] for a in argvs] == ["1", "2"]
    assert [int(a[a.index("-c") + 1]) for a in argvs] == [256, 512]  # (64 + 8 + 64 a slot, 256 each)
    choice = run.slot_choice
    one, two, huge = choice.results
    assert (one.slots, one.ctx, two.slots, two.ctx) == (1, 256, 2, 512)
    assert one.capacity.boundary == two.capacity.boundary == 2  # the ceiling meets the SLOs
    assert huge.capacity is None and huge.error.startswith("the server did not start: ")
    # the rule, from the measured goodput: both hold the ceiling, so the one with more goodput
    assert choice.best == max((one, two), key=lambda r: (r.goodput, -r.slots)).slots
    assert choice.why.startswith(f"-np {choice.best}: 2 concurrent requests meet the SLOs")
    assert load_serve_run(run.path).slot_choice == choice
    assert (run.path / "server-np1.log").exists() and (run.path / "server-np2.log").exists()

    shown = halo("bench", "show", str(run.path))
    assert shown.returncode == 0, shown.stderr
    assert f"best -np: {choice.best} — " in shown.stdout and "-np 20000000 (-c " in shown.stdout
    assert "np2 c2" in shown.stdout  # the table's load column names the slot count
    as_json = json.loads(halo("bench", "show", str(run.path), "--format", "json").stdout)
    assert as_json["slots"]["best"] == choice.best and len(as_json["slots"]["results"]) == 3


@pytest.mark.parametrize("args, message", [
    (["--endpoint", "http://127.0.0.1:9", "--slo", "ttft_p95=1s", "--capacity", "concurrency", "--slots", "1,2"],
     "--slots needs MODEL (a server halo starts) and --capacity"),
    (["smoke", "--slots", "1,2"], "--slots needs MODEL (a server halo starts) and --capacity"),
    (["smoke", "--slo", "ttft_p95=1s", "--capacity", "concurrency", "--slots", "1,2", "-np", "4"],
     "--slots sets -np and -c for each slot count: leave -np and -c out"),
    (["smoke", "--slo", "ttft_p95=1s", "--capacity", "concurrency", "--slots", "2,2"],
     "--slots: a slot count is given twice"),
    (["smoke", "--slo", "ttft_p95=1s", "--capacity", "concurrency", "--slots", "0"], "--slots values must be >= 1"),
])
def test_bad_slots_are_one_line(halo, home, args, message):
    done = halo("bench", "serve", *args)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert not list((home / "runs").glob("serve/*"))


def test_a_load_the_real_server_cannot_hold_stops_the_search(halo, server):
    """(#23) Saturation shown on purpose: 4 slots, requests that wait for one longer than the
    client's --timeout fail (ReadTimeout), the level is saturated, nothing above it is tried, the
    failed requests are recorded and the run is complete (the stop is its finding)."""
    done = halo("bench", "serve", "--endpoint", server, "--pp", str(PP), "--tg", "32", "--concurrency", "32",
                "--reps", "1", "--slo", "ttft_p95=60s", "--capacity", "concurrency", "--timeout", "1",
                "--tag", "cap-saturated", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    cap = out["capacity"]
    saturated = [lv for lv in cap["levels"] if lv["saturated"]]
    assert saturated and "requests failed (ReadTimeout" in saturated[0]["saturated"]
    # in the order measured, nothing above a saturated level comes after it
    order = [int(json.loads(line)["cell"].rsplit("|c", 1)[1])
             for line in Path(out["path"], "cells.jsonl").read_text().splitlines()]
    hit = {lv["level"] for lv in saturated}
    for i, level in enumerate(order):
        if level in hit:
            assert all(later < level for later in order[i + 1:]), order
    assert "saturate (" in cap["stopped"] and out["status"] == "complete"
    records = [json.loads(line) for line in Path(out["path"], "requests.jsonl").read_text().splitlines()]
    assert any(not r["ok"] and r["error"].startswith("ReadTimeout") for r in records)


def test_the_search_doubles_then_bisects_and_stops():
    from halo_core.servebench.capacity import next_level

    seen: dict = {}
    truth = lambda level: level <= 6  # noqa: E731  (the load a server could hold)
    while (level := next_level("concurrency", seen, 1, 64)) is not None:
        seen[level] = truth(level)
    assert list(seen) == [1, 2, 4, 8, 6, 7]  # coarse 1, 2, 4, 8; then bisection 6, 7
    seen = {}
    while (level := next_level("rate", seen, 0.5, 16)) is not None:
        seen[level] = level <= 3.0
    assert list(seen)[:4] == [0.5, 1.0, 2.0, 4.0] and max(k for k, v in seen.items() if v) >= 2.7
    assert all(b / a > 1.0 for a, b in zip(sorted(seen), sorted(seen)[1:]))
    assert next_level("concurrency", {1: False}, 1, 64) is None  # the first level already misses


def test_a_level_the_server_cannot_hold_is_saturated():
    """Failed requests or queueing that grows round over round mark a level saturated (a miss
    that ends the search above it), whatever its SLO figures."""
    from halo_core.servebench.capacity import conclude, judge_level, saturation
    from halo_core.servebench.slo import parse_slos

    def req(rep, e2e, queue, ok=True):
        return RequestRecord(cell="d0|pp64|tg8|c2", attempt="a", rep=rep, index=0, uid="u", start_s=0.0, ok=ok,
                             error="" if ok else "HTTP 503: busy", e2e_s=e2e, ttft_s=0.1, tg_ts=50.0,
                             itl_s=(0.02,) * 7, timings={"prompt_ms": 50.0, "predicted_ms": (e2e - queue) * 1000 - 50})

    steady = [req(0, 1.0, 0.01), req(1, 1.0, 0.012), req(2, 1.0, 0.2)]
    growing = [req(0, 1.0, 0.01), req(1, 2.0, 0.5), req(2, 3.0, 1.5)]
    assert saturation(steady) == ""
    assert saturation(growing).startswith("queueing grew round over round (10 ms -> 1500 ms)")
    assert saturation([req(0, 1.0, 0.01), req(0, 1.0, 0.01, ok=False)]) == "1 of 2 requests failed (HTTP 503: busy)"
    slos = parse_slos("ttft_p95=1s")
    held, lost = judge_level(1, steady, slos, 2.0), judge_level(2, growing, slos, 1.0)
    assert held.met and not lost.met and lost.saturated
    result = conclude("concurrency", "ttft_p95=1000ms", [held, lost], 64)
    assert result.boundary == 1
    assert result.stopped.startswith("boundary found: 1 concurrent requests meet the SLOs, 2 saturate (queueing grew")


# -- --workload agentic (#23) -------------------------------------------------------------------

AGENTIC = dict(workload="agentic", turns=3, pp=800, tg=TG, tool_tokens=(32, 96), concurrency=(2,), reps=1)


@pytest.fixture(scope="module")
def agentic_server(smoke_model, llama_bin_dir):
    """A real llama-server with the slots and context `matrix_server` gives 2 agentic sessions."""
    parallel, ctx = matrix_server(ServeBenchSpec(**AGENTIC))
    yield from _smoke_server(smoke_model, ctx, parallel)


@pytest.fixture(scope="module")
def agentic_run(agentic_server):
    return run_serve_bench(ServeBenchSpec(endpoint=agentic_server, tag="agentic", **AGENTIC))


def test_the_agentic_generator_is_deterministic_and_keeps_the_prefix():
    """Sessions from the seed and index alone; each turn's messages start with the previous
    turn's, byte for byte; tool outputs and reply lengths in their documented ranges."""
    asked = []

    def text(n, rng):
        asked.append(n)
        return " word" * n

    make = lambda index, uid="u1": agentic.make_session(0, index, uid, 50, 6, 100, (32, 96), text)  # noqa: E731
    one, again, other = make(0), make(0, "u2"), make(1)
    assert [t.max_tokens for t in one.turns] == [t.max_tokens for t in again.turns]
    assert [t.message for t in one.turns] == [t.message for t in again.turns]
    assert [(t.tool, t.max_tokens) for t in one.turns] != [(t.tool, t.max_tokens) for t in other.turns]
    assert one.system.startswith("u1 ") and again.system.startswith("u2 ")  # the id first
    assert '"name": "read_file"' in one.system and '"name": "run_tests"' in one.system
    assert one.turns[0].tool == "" and one.turns[0].message in agentic.TASKS
    assert all(t.tool in {tool["name"] for tool in agentic.TOOLS} for t in one.turns[1:])
    assert all(32 <= n <= 96 for n in asked[1:])  # (the first: the notes, 50)
    replies = [f"reply {i}" for i in range(5)]
    for k in range(5):
        before, after = one.messages(replies[:k]), one.messages(replies[:k + 1])
        assert after[:len(before)] == before and after[len(before)]["role"] == "assistant"
        assert [m["role"] for m in after] == ["system"] + ["user", "assistant"] * (k + 1) + ["user"]
    draws = [agentic.reply_tokens(100, __import__("random").Random(i)) for i in range(2000)]
    assert min(draws) >= 50 and max(draws) <= 200 and 90 <= float(np.median(draws)) <= 110
    assert agentic.reply_tokens(2, __import__("random").Random(0)) >= 2
    # a slot holds the longest session: the first prompt, every tool output and reply at most
    assert agentic.longest_session(4096, 100, 6, (32, 96)) >= 4096 + 5 * 96 + 6 * 200


def test_agentic_sessions_reuse_the_prompt_cache_turn_by_turn(agentic_run, agentic_server):
    """2 sessions of 3 turns at once on the real server: a first turn of exactly pp tokens
    prefilled from scratch, then each turn served from the cache up to the previous turn's
    prompt and reply, replies exactly as long as the generator drew; each session on its own
    slot; per-turn summaries."""
    run = agentic_run
    # session s ran on slot s (id_slot): the slot holds its last prompt and reply (less the
    # reply's last token, never decoded)
    slots = httpx.get(f"{agentic_server}/slots", timeout=10).json()
    for s in (0, 1):
        last = next(r for r in run.requests if r.session == s and r.turn == 3)
        assert abs(slots[s]["n_prompt_tokens"] - (last.prompt_tokens + last.completion_tokens - 1)) <= 1
    assert (run.status, run.error) == ("complete", "")
    [cell] = run.cells
    assert cell.cell == "agentic3|pp800|tool32-96|tg8|c2" and cell.workload == "agentic"
    assert len(run.requests) == 6 and cell.errors == 0
    for s in (0, 1):
        turns = sorted((r for r in run.requests if r.session == s), key=lambda r: r.turn)
        assert [r.turn for r in turns] == [1, 2, 3] and len({r.uid for r in turns}) == 1
        drawn = agentic.make_session(0, s, "", 0, 3, TG, (32, 96), lambda n, rng: "")
        assert [r.completion_tokens for r in turns] == [t.max_tokens for t in drawn.turns]  # ignore_eos
        first = turns[0]
        assert first.prompt_counted == first.prompt_tokens == 800
        # a miss beyond the template's opening (the id's first token may match another's)
        assert first.shared_tokens > 0 and first.cached_tokens <= first.shared_tokens + 2
        for before, r in zip(turns, turns[1:]):
            assert r.cached_tokens == r.timings["cache_n"] and r.prompt_tokens == r.timings["prompt_n"] + r.cached_tokens
            # the previous prompt and reply came from the cache (its last token was never decoded)
            assert before.prompt_tokens + before.completion_tokens - 3 <= r.cached_tokens < r.prompt_tokens
            assert r.prompt_tokens - r.cached_tokens >= 32  # the tool output was prefilled
    assert {r.uid for r in run.requests if r.session == 0} != {r.uid for r in run.requests if r.session == 1}
    starts = [r for r in run.requests if r.turn == 1]
    assert max(r.start_s for r in starts) < min(r.start_s + r.ttfr_s for r in starts)  # both at once
    one, two, three = cell.per_turn
    assert [t.turn for t in cell.per_turn] == [1, 2, 3] and all(t.requests == 2 and t.errors == 0 for t in cell.per_turn)
    assert one.reuse_pct < 1 and two.reuse_pct > 50 and three.reuse_pct > 50
    assert one.prompt_tokens == 800 < two.cached_tokens < two.prompt_tokens < three.cached_tokens
    for t in cell.per_turn:
        assert t.ttft_ms.n == 2 and t.tg_ts.n == 2 and t.pp_ts.n == 2
    assert cell.cache_hits >= 4  # every later turn
    assert load_serve_run(run.path).cells == run.cells  # the per-turn rows come from requests.jsonl


def test_agentic_cli_json_show_and_report(halo, agentic_server, tmp_path):
    done = halo("bench", "serve", "--endpoint", agentic_server, "--workload", "agentic", "--turns", "3",
                "--concurrency", "2", "--tg", str(TG), "--reps", "1", "--pp", "800", "--tool-tokens", "32,96",
                "--tag", "agentic-cli", "--json")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["spec"]["workload"] == "agentic" and out["spec"]["turns"] == 3
    [cell] = out["cells"]
    assert [t["turn"] for t in cell["per_turn"]] == [1, 2, 3]
    assert cell["per_turn"][0]["reuse_pct"] < 1 < 50 < cell["per_turn"][1]["reuse_pct"]
    assert "agentic · c2: pp " in done.stderr and "cache reuse by turn 0% " in done.stderr

    shown = halo("bench", "show", "agentic-cli", env={"COLUMNS": ""})
    assert shown.returncode == 0, shown.stderr
    assert "per turn of the agentic sessions" in shown.stdout
    rows = [line for line in shown.stdout.splitlines() if line.startswith("│ c2 ")]
    assert len(rows) == 3 + 0  # one per turn (the cells table's row starts with the workload)
    assert any(line.startswith("│ agentic │ c2 ") for line in shown.stdout.splitlines())
    import csv

    [row] = csv.DictReader(halo("bench", "show", "agentic-cli", "--format", "csv").stdout.splitlines())
    assert row["workload"] == "agentic" and [t["turn"] for t in json.loads(row["per_turn"])] == [1, 2, 3]

    report = halo("bench", "report", "agentic-cli", "-o", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr
    page = (tmp_path / "report" / "index.html").read_text()
    assert "<h2>Turn by turn</h2>" in page and "<table id='turns'>" in page
    turns = page.split("<table id='turns'>")[1].split("</table>")[0]
    assert turns.count("<tr>") == 1 + 3 and "on: agentic sessions, each on its own slot" in page


def test_a_capacity_search_of_agentic_sessions(agentic_server):
    """--capacity concurrency with --workload agentic: levels are sessions at once, and say so."""
    run = run_serve_bench(ServeBenchSpec(endpoint=agentic_server, tag="agentic-cap", slo="ttft_p95=120s",
                                         capacity="concurrency", **AGENTIC))
    assert run.status == "complete", run.error
    cap = run.capacity
    assert [lv.level for lv in cap.levels] == [1, 2] and cap.boundary == 2 and cap.unit == "concurrent sessions"
    assert cap.stopped.startswith("the ceiling meets the SLOs: capacity is at least 2 concurrent sessions")
    assert all(c.per_turn and c.per_turn[-1].cached_tokens for c in run.cells)


def test_an_agentic_spec_refuses_what_does_not_apply():
    from halo_core.errors import HaloError
    from halo_core.servebench.run import check_spec

    for bad, message in ((dict(rates=(1.0,)), "--rate does not apply"), (dict(depths=(0, 512)), "--depths does not apply"),
                         (dict(turns=0), "turns must be >= 1"), (dict(tool_tokens=(5, 1)), "tool tokens are a range"),
                         (dict(workload="chat"), "unknown workload 'chat'")):
        with pytest.raises(HaloError, match=message):
            check_spec(ServeBenchSpec(**{**AGENTIC, **bad}))
    # a plain spec's cell keys are what they were; an agentic one's say what its sessions are
    assert [c.key for c in plan(ServeBenchSpec(pp=PP, tg=TG, concurrency=(2,)))] == ["d0|pp64|tg8|c2"]
    assert [c.key for c in plan(ServeBenchSpec(**AGENTIC))] == ["agentic3|pp800|tool32-96|tg8|c2"]
    parallel, ctx = matrix_server(ServeBenchSpec(**AGENTIC))
    assert parallel == 2 and ctx >= 2 * agentic.longest_session(800, TG, 3, (32, 96))
