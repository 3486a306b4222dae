"""`python -m halo_evalplus.score DATASET SAMPLES BASE_ONLY`: evalplus's evaluate, in a child.

Run with HUMANEVAL_OVERRIDE_PATH / MBPP_OVERRIDE_PATH set (evalplus reads them at import).
"""

import sys

from halo_core.plugin_api import child_main


def main(dataset: str, samples: str, base_only: bool) -> None:
    from evalplus.evaluate import evaluate

    evaluate(dataset, samples=samples, base_only=base_only, parallel=2)


if __name__ == "__main__":
    child_main(lambda: main(sys.argv[1], sys.argv[2], sys.argv[3] == "1"))
