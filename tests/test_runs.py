"""The run lifecycle's lookups: every run.json says its kind; a ref that may name runs of
several kinds resolves to its own kind, and a tag two kinds share is refused with both named."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading

import pytest

from halo_core import resolve_kind
from halo_core.errors import HaloError
from halo_core.runs import RunState, kind_of, new_dir, new_run_dir, record_exit, runs_root


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HALO_HOME", str(tmp_path))
    return tmp_path


def make(kind: str, tag: str, stamp: str | None = None):
    path = new_dir(runs_root(kind), f"{tag}-{stamp}") if stamp else new_run_dir(kind, tag)
    RunState.new(path, {"tag": tag})
    return path


def test_every_new_run_records_its_kind(home):
    path = make("bench", "t")
    assert json.loads((path / "run.json").read_text())["kind"] == "bench"
    assert kind_of(path) == "bench"
    other = new_run_dir("bench", "u")
    RunState.new(other, {}, kind="serve")  # an explicit kind wins over the folder
    assert kind_of(other) == "serve"


def test_a_run_without_a_kind_takes_its_folders(home):
    path = make("serve", "old")
    data = json.loads((path / "run.json").read_text())
    del data["kind"]
    (path / "run.json").write_text(json.dumps(data))
    assert kind_of(path) == "serve"
    assert resolve_kind(str(path), ("bench", "serve")) == ("serve", path)


def test_a_tag_shared_by_two_kinds_is_refused_naming_both(home):
    bench, serve = make("bench", "t", "20261201T100000Z"), make("serve", "t", "20261201T110000Z")
    with pytest.raises(HaloError) as exc:
        resolve_kind("t", ("bench", "serve"))
    assert str(exc.value) == (f"tag 't' names a bench run ({bench}) and a serve run ({serve}): "
                              "give the run's directory name or path")
    # by name or path each is its own
    assert resolve_kind(bench.name, ("bench", "serve")) == ("bench", bench)
    assert resolve_kind(serve.name, ("bench", "serve")) == ("serve", serve)
    assert resolve_kind(str(serve), ("bench", "serve")) == ("serve", serve)


def test_a_tag_of_one_kind_resolves_to_it(home):
    make("bench", "a")
    serve = make("serve", "b")
    assert resolve_kind("b", ("bench", "serve")) == ("serve", serve)


def test_a_ref_naming_nothing_is_the_first_kinds_error(home):
    with pytest.raises(HaloError, match=r"^no bench run 'nope' \(not a run directory"):
        resolve_kind("nope", ("bench", "serve"))


def test_a_path_of_another_kind_is_refused(home):
    path = make("eval", "e")
    with pytest.raises(HaloError, match="is a eval run, not a bench or serve run"):
        resolve_kind(str(path), ("bench", "serve"))


def test_a_run_name_both_kinds_hold_asks_for_the_path(home):
    bench, serve = make("bench", "n", "20261201T100000Z"), make("serve", "n", "20261201T100000Z")
    with pytest.raises(HaloError) as exc:
        resolve_kind(bench.name, ("bench", "serve"))
    assert str(exc.value) == (f"run name '{bench.name}' names a bench run ({bench}) and a serve "
                              f"run ({serve}): give the run's path")


def test_an_older_run_outside_the_runs_folder_is_the_first_kind(home, tmp_path):
    path = make("bench", "copied")
    data = json.loads((path / "run.json").read_text())
    del data["kind"]
    moved = tmp_path / "elsewhere" / "before"
    moved.mkdir(parents=True)
    (moved / "run.json").write_text(json.dumps(data))
    assert resolve_kind(str(moved), ("bench", "serve")) == ("bench", moved)


@pytest.mark.parametrize("exc, status, error", [
    (KeyboardInterrupt(), "interrupted", "interrupted by the user"),
    (HaloError("bad model"), "failed", "bad model"),
    (ValueError("boom"), "failed", "ValueError: boom"),
])
def test_the_one_ladder(home, exc, status, error):
    state = RunState.new(new_run_dir("eval", "t"), {})
    with pytest.raises(type(exc)):
        try:
            raise exc
        except BaseException as caught:
            record_exit(caught, state.finish)
            raise
    again = RunState.load(state.path, "eval")
    assert (again.status, again.error) == (status, error)
    assert again.data["finished_at"]


def test_bench_show_compare_report_refuse_a_tag_shared_by_a_bench_and_a_serve_run(home, halo):
    bench, serve = make("bench", "both", "20261201T100000Z"), make("serve", "both", "20261201T110000Z")
    for command in (("show", "both"), ("compare", "both", "both"), ("report", "both")):
        done = halo("bench", *command)
        assert done.returncode == 1
        assert done.stderr.strip().splitlines()[-1] == (
            f"Error: tag 'both' names a bench run ({bench}) and a serve run ({serve}): "
            "give the run's directory name or path")


def test_a_run_being_written_is_not_written_twice(tmp_path, monkeypatch):
    """(#21) While one process writes a run, a second with the same tag and spec opens its
    own directory, and an explicit resume of it refuses; once it finishes, it can resume."""
    from halo_core.records import BenchSpec
    from halo_core.runs import open_run

    monkeypatch.setenv("HALO_HOME", str(tmp_path))
    spec = BenchSpec(models=("m",), tag="t")
    first = open_run("bench", spec, resume_tag=True)
    second = open_run("bench", spec, resume_tag=True)
    assert second.path != first.path and not second.resumed
    with pytest.raises(HaloError, match=rf"^run {first.path.name} is being written by another halo process"):
        open_run("bench", spec, resume=first.path)
    first.finish("interrupted")
    again = open_run("bench", spec, resume=first.path)
    assert again.resumed and again.path == first.path


@contextlib.contextmanager
def json_server(answer):
    """A loopback HTTP server answering every GET and POST with the JSON `answer(path, body)`
    returns (a server of any reply shape); yields its URL."""
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def _reply(self, body):
            data = json.dumps(answer(self.path, body)).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self._reply(None)

        def do_POST(self):
            self._reply(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()


SHAPES = {  # what a broken or hostile server may answer a chat request with
    "list": [], "string": "hello", "number": 3, "choices-str": {"choices": "x"},
    "choice-str": {"choices": ["x"]}, "message-str": {"choices": [{"message": "hi"}]},
    "content-int": {"choices": [{"message": {"content": 5}}]},
    "timings-list": {"choices": [{"message": {"content": "ok"}}], "timings": [1]},
    "good": {"choices": [{"message": {"content": "fine"}, "finish_reason": "stop"}]},
}


def test_a_reply_of_any_json_shape_fails_that_request_only():
    """(#21) Every reply shape a server can send fails its own request (recorded as an error),
    and the others go on: never an exception out of the client."""
    from halo_core.chat import ChatClient, ChatRequest
    from halo_core.records import Endpoint

    with json_server(lambda _path, body: SHAPES[body["messages"][0]["content"]]) as url:
        client = ChatClient(Endpoint(url, "m"), retries=0)
        replies = client.complete("s", [ChatRequest(k, [{"role": "user", "content": k}]) for k in SHAPES])
    assert replies["good"].content == "fine" and not replies["good"].error
    bad = {k: r.error for k, r in replies.items() if k != "good"}
    assert all(e.startswith("bad reply: ") for e in bad.values()), bad


def test_props_and_models_of_any_shape_read_as_unknown():
    """(#21) /props and /v1/models answering JSON of another shape: no props, no model ids,
    and a clear "no model" probe, never a traceback."""
    from halo_core.llama.endpoints import detect, server_props

    answers = {"/props": [1, 2], "/v1/models": {"data": ["not-an-object", 3]}}
    with json_server(lambda path, _body: answers.get(path, "nope")) as url:
        assert server_props(url) == {}
        found, probes = detect(url)
        answers["/v1/models"] = "a string"
        found_again, _ = detect(url)
    assert found is None and found_again is None
    assert probes[-1].detail.endswith("but /v1/models lists no model (pass --model)")
