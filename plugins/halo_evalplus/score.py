"""`python -m halo_evalplus.score DATASET SAMPLES BASE_ONLY`: evalplus's evaluate, in a child.

Run with HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH set (evalplus reads them at import).
It exits with os._exit so evalplus's 20-second watchdog thread does not hold the exit.
"""

import os
import sys

if __name__ == "__main__":
    from evalplus.evaluate import evaluate

    dataset, samples, base_only = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    try:
        evaluate(dataset, samples=samples, base_only=base_only, parallel=2)
    except BaseException as exc:  # report, then leave without waiting on evalplus's threads
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        sys.stderr.flush()
        os._exit(1)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
