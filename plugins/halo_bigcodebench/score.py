"""`python -m halo_bigcodebench.score WORKDIR MEMORY_MB`: bigcodebench's sanitize + evaluate.

Reads WORKDIR/replies.jsonl (task_id, raw_solution), writes WORKDIR/solutions.jsonl (the
sanitized code) and lets `bigcodebench.evaluate.evaluate(execution="local")` write
solutions_eval_results.json and solutions_pass_at_k.json beside it. Run with
BIGCODEBENCH_OVERRIDE_PATH set to the tasks (bigcodebench reads it at import).
"""

import json
import os
import sys
from pathlib import Path


def main(workdir: Path, memory_mb: int) -> None:
    from bigcodebench.evaluate import evaluate
    from bigcodebench.sanitize import sanitize

    problems = {}
    with open(os.environ["BIGCODEBENCH_OVERRIDE_PATH"], encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                task = json.loads(line)
                problems[task["task_id"]] = task
    samples = workdir / "solutions.jsonl"
    with open(workdir / "replies.jsonl", encoding="utf-8") as src, open(samples, "w") as dst:
        for line in src:
            reply = json.loads(line)
            entry_point = problems[reply["task_id"]]["entry_point"]
            code = sanitize(reply["raw_solution"], entry_point) if reply["raw_solution"] else ""
            dst.write(json.dumps({"task_id": reply["task_id"], "solution": code,
                                  "raw_solution": reply["raw_solution"]}) + "\n")
    for stale in ("solutions_eval_results.json", "solutions_pass_at_k.json"):
        (workdir / stale).unlink(missing_ok=True)  # evaluate() would stop to ask about them
    evaluate("instruct", "full", samples=str(samples), execution="local", pass_k="1",
             parallel=max(1, os.cpu_count() or 1), max_as_limit=memory_mb,
             max_data_limit=memory_mb)


if __name__ == "__main__":
    from halo_core.evalkit import child_main

    child_main(lambda: main(Path(sys.argv[1]), int(sys.argv[2])))
