"""`python -m halo_bigcodebench.score WORKDIR MEMORY_MB`: bigcodebench's sanitize + evaluate.

Reads WORKDIR/replies.jsonl (task_id, raw_solution), writes WORKDIR/solutions.jsonl (the
sanitized code) and lets `bigcodebench.evaluate.evaluate(execution="local")` write
solutions_eval_results.json and solutions_pass_at_k.json beside it. Run with
BIGCODEBENCH_OVERRIDE_PATH set to the tasks (bigcodebench reads it at import).
"""

import os
import sys
from pathlib import Path

from halo_core.plugin_api import child_main, read_records, write_records


def main(workdir: Path, memory_mb: int) -> None:
    from bigcodebench.evaluate import evaluate
    from bigcodebench.sanitize import sanitize

    entry_points = {t["task_id"]: t["entry_point"]
                    for t in read_records(os.environ["BIGCODEBENCH_OVERRIDE_PATH"], "tasks")}
    samples = workdir / "solutions.jsonl"
    write_records(samples, [
        {"task_id": r["task_id"], "raw_solution": r["raw_solution"],
         "solution": sanitize(r["raw_solution"], entry_points[r["task_id"]]) if r["raw_solution"] else ""}
        for r in read_records(workdir / "replies.jsonl", "replies")])
    for stale in ("solutions_eval_results.json", "solutions_pass_at_k.json"):
        (workdir / stale).unlink(missing_ok=True)  # evaluate() would stop to ask about them
    evaluate("instruct", "full", samples=str(samples), execution="local", pass_k="1",
             parallel=max(1, os.cpu_count() or 1), max_as_limit=memory_mb,
             max_data_limit=memory_mb)


if __name__ == "__main__":
    child_main(lambda: main(Path(sys.argv[1]), int(sys.argv[2])))
