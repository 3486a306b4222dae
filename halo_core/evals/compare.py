"""Two eval runs compared suite by suite, paired on the samples both scored (what `halo sweep`
and `halo tune --measure --eval` decide with)."""

from __future__ import annotations

from pathlib import Path

import attrs

from ..stats import ALPHA, PairedTest, paired_test
from .run import load_eval_run, load_samples


@attrs.frozen
class Comparison:
    """One suite of a setting against the baseline on the samples both scored."""

    suite: str
    baseline: str
    paired: PairedTest
    left_out: int  # samples whose request failed on either side


def compare_evals(base: Path, other: Path, alpha: float = ALPHA, baseline: str = "") -> list[Comparison]:
    """Each suite of the eval run `other` against the same suite of `base`, paired on the
    samples both scored; samples whose request failed on either side are left out."""
    out = []
    for suite in load_eval_run(base).spec.suites:
        a, b = load_samples(base, suite), load_samples(other, suite)
        ran_a = {s.id: s.score for s in a if not s.error}
        ran_b = {s.id: s.score for s in b if not s.error}
        common = [k for k in ran_a if k in ran_b]
        if not common:
            continue
        asked = {s.id for s in a} & {s.id for s in b}
        out.append(Comparison(suite, baseline, paired_test([ran_a[k] for k in common],
                                                           [ran_b[k] for k in common], alpha),
                              len(asked) - len(common)))
    return out
