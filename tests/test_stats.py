"""halo_core.stats: intervals and paired tests on known outcomes, and the sample-size formula
checked against the exact power of the McNemar test it is meant for."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats as sp

from halo_core.stats import interval, pairs_needed, pairs_needed_scores, paired_test


def test_interval_of_pass_fail_is_wilson():
    got = interval([1, 0, 1, 1, 0])
    assert (got.n, got.mean, got.method) == (5, 0.6, "wilson")
    assert (got.low, got.high) == pytest.approx((0.2307243, 0.8823792), abs=1e-6)
    assert interval([]).mean is None and interval([]).n == 0


def test_interval_of_scores_is_a_fixed_bootstrap():
    scores = [0.5, 1.0, 0.0, 0.25, 0.75, 1.0]
    got = interval(scores)
    assert got.method == "bootstrap" and got.mean == pytest.approx(0.5833333)
    assert 0.2 < got.low < got.mean < got.high <= 1.0
    assert interval(scores) == got  # the same samples give the same interval


def test_mcnemar_counts_only_discordant_pairs():
    before = [1] * 10 + [0] * 4
    after = [1] * 4 + [0] * 6 + [0] * 4  # 6 worse, none better, 8 ties
    t = paired_test(before, after)
    assert (t.test, t.n, t.worse, t.better) == ("mcnemar", 14, 6, 0)
    assert t.p_value == pytest.approx(0.03125)  # 2 * 0.5**6: exact binomial on 6 discordant pairs
    assert t.verdict == "worse" and t.delta == pytest.approx(-6 / 14)
    assert t.low < t.delta < t.high <= 0
    five = paired_test([1] * 5, [0] * 5)  # 2 * 0.5**5 = 0.0625: cannot tell on 5 pairs
    assert five.p_value == pytest.approx(0.0625) and five.verdict == "no difference"
    assert paired_test([0, 1, 1], [1, 1, 1]).verdict == "no difference"


def test_scores_use_an_exact_sign_flip_test():
    t = paired_test([1.0] * 8, [0.5] * 8)
    assert t.test == "sign-flip" and t.p_value == pytest.approx(2 / 256) and t.verdict == "worse"
    assert (t.delta, t.low, t.high) == pytest.approx((-0.5, -0.5, -0.5))
    better = paired_test([0.2, 0.4, 0.0, 0.5, 0.1, 0.3], [0.7, 0.9, 0.5, 1.0, 0.6, 0.8])
    assert better.verdict == "better" and better.p_value == pytest.approx(2 / 64)
    same = paired_test([0.5, 1.0, 0.25], [0.5, 1.0, 0.25])
    assert (same.p_value, same.verdict, same.needed) == (1.0, "no difference", None)
    with pytest.raises(ValueError):
        paired_test([1.0], [1.0, 0.0])


def mcnemar_power(n: int, p_worse: float, p_better: float, alpha: float = 0.05) -> float:
    """Exact power of the two-sided exact McNemar test on n pairs (equal-tailed p-values)."""
    psi = p_worse + p_better
    power = 0.0
    for d in range(1, n + 1):
        b = np.arange(d + 1)
        p = np.minimum(1.0, 2 * np.minimum(sp.binom.cdf(b, d, 0.5), sp.binom.sf(b - 1, d, 0.5)))
        power += sp.binom.pmf(d, n, psi) * sp.binom.pmf(b, d, p_worse / psi)[p < alpha].sum()
    return power


@pytest.mark.parametrize("drop, discordant", [(0.05, 0.10), (0.10, 0.30), (0.10, 0.20)])
def test_pairs_needed_gives_the_power_it_promises(drop, discordant):
    n = pairs_needed(drop, discordant)
    worse, better = (discordant + drop) / 2, (discordant - drop) / 2
    assert 0.75 < mcnemar_power(n, worse, better) < 0.85
    assert mcnemar_power(n // 2, worse, better) < 0.6  # n is not more than the 80% needs


def test_pairs_needed_edges_and_scores():
    assert pairs_needed(0.05, 0.10) == 312
    assert pairs_needed(0.0, 0.1) is None and pairs_needed(0.05, 0.0) is None
    assert pairs_needed_scores(0.1, 0.3) == 71  # ((1.960 + 0.842) * 0.3 / 0.1)^2 = 70.6
    assert pairs_needed_scores(0.1, 0.0) is None
