"""BigCodeBench (Instruct split) through the bigcodebench package: halo generates, bigcodebench
sanitizes and scores in a child Python.

Completions come from halo's concurrent client with bigcodebench's own chat prompt (its
instruction prefix + the task's `instruct_prompt`, as `bigcodebench.generate` sends to an
OpenAI-compatible server); only the tasks whose request ran are scored. The child (`python -m halo_bigcodebench.score`) extracts the code
with `bigcodebench.sanitize` and runs `bigcodebench.evaluate.evaluate(execution="local")`:
each solution runs its unittest TestCases in its own process, in a temporary directory, with
RLIMIT_AS / DATA / STACK limits, a per-task time limit and destructive calls disabled. The
remote executors (gradio, e2b) are never used.

Data (`--dataset bigcodebench=...`):
  hard   default: BigCodeBench-Hard (148 tasks), downloaded by bigcodebench from the HF Hub
  full   the whole benchmark (1,140 tasks)
  PATH   a .jsonl in BigCodeBench's format (task_id, complete_prompt, instruct_prompt,
         canonical_solution, code_prompt, test, entry_point)

Real tasks import about 70 libraries (pandas, numpy, scipy, sklearn, matplotlib, ...); a task
whose libraries are missing fails its ground truth too, which `gt_pass_rate` shows.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from halo_core.plugin_api import (
    Availability, ChatRequest, EvalResult, EvalSample, EvalSuite, HaloError, dist_version,
    hookimpl, needs, read_records, score_in_child, write_records,
)

# bigcodebench.generate's defaults for chat models
INSTRUCTION = ("Please provide a self-contained Python script that solves the following problem "
               "in a markdown code block:")
MAX_TOKENS = 1280
SCORE_TIMEOUT = 4 * 3600
MODULES = (("tree_sitter", "tree-sitter"), ("tree_sitter_python", "tree-sitter-python"),
           ("pqdm", "pqdm"), ("datasets", "datasets"), ("transformers", "transformers"),
           ("gradio_client", "gradio-client"), ("e2b", "e2b"), ("matplotlib", "matplotlib"),
           ("numpy", "numpy"))


def memory_limit_mb() -> int:
    """bigcodebench's 30 GiB address-space limit, capped at 3/4 of this machine's memory."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // (1 << 20)
    return min(30 * 1024, total * 3 // 4)


def hub_tasks(subset: str) -> list[dict]:
    """BigCodeBench from the HF Hub, through bigcodebench's own loader (and its cache)."""
    from bigcodebench.data import get_bigcodebench

    try:
        return list(get_bigcodebench(subset=subset).values())
    except Exception as exc:  # datasets / hub errors of every kind
        raise HaloError(f"could not load BigCodeBench ({subset}) from the Hugging Face Hub: "
                        f"{type(exc).__name__}: {exc}; pass --dataset bigcodebench=FILE.jsonl "
                        f"for a local copy") from exc


class BigCodeBench(EvalSuite):
    name = "bigcodebench"
    data = ("BigCodeBench-Hard from the HF Hub (network), full: all 1,140 tasks; or a local "
            "FILE. Real tasks import ~70 libraries")
    frameworks = ("bigcodebench", "datasets")
    description = "BigCodeBench-Instruct: library-heavy Python tasks, pass@1, scored by bigcodebench"

    def availability(self) -> Availability:
        found = needs(("bigcodebench", "bigcodebench"),
                      hint="pip install --no-deps bigcodebench==0.2.5 "
                           "(its own requirements pull vllm; docs/evals.md)")
        return needs(*MODULES) if found.available else found

    def tasks(self, choice: str | None) -> list[dict]:
        if choice in (None, "", "hard", "full"):
            return hub_tasks(choice or "hard")
        return read_records(choice, "bigcodebench dataset")

    def run(self, endpoint, *, limit=None, workdir=None, context=None) -> EvalResult:
        if context is None:
            raise HaloError("bigcodebench runs under `halo eval` (it needs halo's chat client)")
        workdir = Path(workdir)
        tasks = self.tasks(context.dataset)[:limit]
        if not tasks:
            raise HaloError("the bigcodebench dataset has no tasks")
        requests = [ChatRequest(t["task_id"], [{"role": "user", "content":
                                                f"{INSTRUCTION}\n{t['instruct_prompt'].strip()}\n"}],
                                max_tokens=context.max_tokens or MAX_TOKENS) for t in tasks]
        context.log(f"{len(requests)} tasks")
        replies = context.chat(requests)
        tasks = [t for t in tasks if t["task_id"] in replies]  # halo counts the rest as failed
        write_records(workdir / "problems.jsonl", tasks)
        write_records(workdir / "replies.jsonl",
                      [{"task_id": t["task_id"], "raw_solution": replies[t["task_id"]].content}
                       for t in tasks])
        context.log("scoring in bigcodebench's sandboxed subprocesses")
        limit_mb = memory_limit_mb()
        score_in_child("halo_bigcodebench.score", [str(workdir), str(limit_mb)],
                       env={"BIGCODEBENCH_OVERRIDE_PATH": str(workdir / "problems.jsonl")},
                       log=workdir / "bigcodebench.log", timeout=SCORE_TIMEOUT,
                       what="bigcodebench scoring", unsafe_local_exec=context.unsafe_local_exec)
        results = json.loads((workdir / "solutions_eval_results.json").read_text())["eval"]
        summary = json.loads((workdir / "solutions_pass_at_k.json").read_text())
        failed_gt = set(summary.get("failed_tasks", []))
        out = []
        for task in tasks:
            reply = replies[task["task_id"]]
            (res,) = results[task["task_id"]]
            passed = res["status"] == "pass"
            failing = ", ".join(sorted(res.get("details") or {}))
            out.append(EvalSample(task["task_id"], float(passed), passed,
                                  detail={"status": res["status"], "failing_tests": failing[:500],
                                          "ground_truth": "fail" if task["task_id"] in failed_gt else "pass",
                                          "attempts": str(reply.attempts),
                                          "seconds": str(reply.seconds)}))
        if failed_gt:
            context.log(f"{len(failed_gt)} of {len(tasks)} ground-truth solutions fail here "
                        f"(missing libraries?): {', '.join(sorted(failed_gt)[:5])}")
        scores = {"pass@1": float(summary["pass@1"]), "gt_pass_rate": float(summary["gt_pass_rate"])}
        return EvalResult(self.name, scores, out, framework_version=dist_version("bigcodebench"))


@hookimpl
def register_eval_suites(register):
    register(BigCodeBench())


__all__ = ["BigCodeBench"]
