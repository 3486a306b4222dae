"""The statistics behind halo's comparisons. Everything is scipy's; nothing here is a
hand-written formula except the sample-size estimate, whose source is cited.

Speed (`halo bench compare`, serve-bench compare, `halo sweep`, `halo tune --measure`): one
"beyond noise" rule, `judge_speed` (Welch's t-test on repeated measurements, `compare_speed`):
faster or slower only when p < 0.05 and the change exceeds 1%, else within noise.

Quality (`halo sweep`, the quality gate of `halo tune --measure --eval`): intervals of a score
from per-sample outcomes, and the paired test of two settings on the same samples. A sample's
outcome is its score in [0, 1] (EvalSample.score). When every outcome is 0 or 1 (pass/fail)
the interval is Wilson's and the paired test is the exact McNemar test (a binomial test on the
discordant pairs); otherwise the interval is a bootstrap of the mean and the paired test an
exact sign-flip permutation test on the differences (McNemar's analogue for scores). The
interval of a difference is a paired bootstrap either way.
"""

from __future__ import annotations

import math
from statistics import mean, variance
from typing import Sequence

import attrs

from .errors import HaloError

ALPHA = 0.05
RESAMPLES = 9999
SEED = 0  # bootstrap and permutation draws are fixed: the same samples give the same numbers


def _scipy():
    try:
        import numpy as np
        from scipy import stats
    except ImportError:
        raise HaloError("halo's statistics need scipy (a dependency of halo-llm): pip install scipy") from None
    return np, stats


def is_binary(*outcomes: list[float]) -> bool:
    return all(v in (0.0, 1.0) for values in outcomes for v in values)


@attrs.frozen
class Interval:
    """The mean of per-sample outcomes with its 95% interval."""

    n: int
    mean: float | None
    low: float | None
    high: float | None
    method: str  # "wilson" | "bootstrap" | "" (no samples)


def interval(outcomes: list[float], confidence: float = 0.95) -> Interval:
    """Wilson's interval for pass/fail outcomes, else a percentile bootstrap of the mean."""
    n = len(outcomes)
    if n == 0:
        return Interval(0, None, None, None, "")
    np, stats = _scipy()
    mean = float(np.mean(outcomes))
    if is_binary(outcomes):
        ci = stats.binomtest(int(sum(outcomes)), n).proportion_ci(confidence, method="wilson")
        return Interval(n, mean, float(ci.low), float(ci.high), "wilson")
    if n == 1:
        return Interval(1, mean, None, None, "bootstrap")
    ci = stats.bootstrap((np.asarray(outcomes),), np.mean, confidence_level=confidence,
                         n_resamples=RESAMPLES, method="percentile", random_state=SEED).confidence_interval
    return Interval(n, mean, float(ci.low), float(ci.high), "bootstrap")


@attrs.frozen
class PairedTest:
    """Setting B against setting A on the same samples: delta = mean(B) - mean(A)."""

    n: int  # pairs
    delta: float | None
    low: float | None  # 95% paired-bootstrap interval of delta
    high: float | None
    test: str  # "mcnemar" | "sign-flip"
    p_value: float | None
    verdict: str  # "worse" | "better" | "no difference"
    worse: int  # pairs where B scored below A (McNemar's discordant pairs, for pass/fail)
    better: int
    needed: int | None  # pairs that would detect a difference of this size (80% power)


def _mean_diff(a, b, axis=-1):
    return (b - a).mean(axis=axis)


def paired_test(a: list[float], b: list[float], alpha: float = ALPHA) -> PairedTest:
    """Is B different from A on the same samples (outcomes in the same order)?

    The verdict is "worse" or "better" when the test's two-sided p-value is below `alpha`,
    else "no difference" (which, on few samples, means "cannot tell": see `needed`).
    """
    if len(a) != len(b):
        raise ValueError("paired outcomes must have the same length")
    n = len(a)
    worse = sum(1 for x, y in zip(a, b) if y < x)
    better = sum(1 for x, y in zip(a, b) if y > x)
    binary = is_binary(a, b)
    test = "mcnemar" if binary else "sign-flip"
    if n == 0:
        return PairedTest(0, None, None, None, test, None, "no difference", 0, 0, None)
    np, stats = _scipy()
    xa, xb = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    diffs = xb - xa
    delta = float(diffs.mean())
    if worse + better == 0:
        p = 1.0
    elif binary:
        p = float(stats.binomtest(better, worse + better, 0.5).pvalue)
    else:
        p = float(stats.permutation_test((xa, xb), _mean_diff, permutation_type="samples",
                                         vectorized=True, n_resamples=RESAMPLES,
                                         random_state=SEED).pvalue)
    low = high = None
    if n >= 2:
        ci = stats.bootstrap((xa, xb), _mean_diff, paired=True, vectorized=True,
                             n_resamples=RESAMPLES, method="percentile",
                             random_state=SEED).confidence_interval
        low, high = float(ci.low), float(ci.high)
    verdict = "no difference" if p >= alpha else ("worse" if delta < 0 else "better")
    if binary:
        needed = pairs_needed(abs(delta), (worse + better) / n, alpha)
    else:
        needed = pairs_needed_scores(abs(delta), float(diffs.std(ddof=1)) if n >= 2 else 0.0, alpha)
    return PairedTest(n, delta, low, high, test, p, verdict, worse, better, needed)


def pairs_needed(delta: float, discordant: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Pairs the McNemar test needs to detect a difference `delta` in pass rate, when a share
    `discordant` of the pairs disagree (pass on one side, fail on the other).

    Connor, R. J. (1987), "Sample size for testing differences in proportions for the
    paired-sample design", Biometrics 43(1):207-211: n = (z_{1-a/2} sqrt(psi) +
    z_{1-b} sqrt(psi - delta^2))^2 / delta^2, psi the discordant share, delta = p10 - p01.
    """
    if delta <= 0 or discordant <= 0 or delta > discordant:
        return None
    _np, stats = _scipy()
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    n = (za * math.sqrt(discordant) + zb * math.sqrt(discordant - delta ** 2)) ** 2 / delta ** 2
    return math.ceil(n)


def pairs_needed_scores(delta: float, sd: float, alpha: float = ALPHA, power: float = 0.8) -> int | None:
    """Pairs needed to detect a mean difference `delta` of scores whose per-pair differences
    have standard deviation `sd` (the normal approximation of the paired t-test:
    n = ((z_{1-a/2} + z_{1-b}) sd / delta)^2; e.g. Chow, Shao & Wang, "Sample Size
    Calculations in Clinical Research", 3rd ed., section 3.1)."""
    if delta <= 0 or sd <= 0:
        return None
    _np, stats = _scipy()
    za, zb = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return math.ceil(((za + zb) * sd / delta) ** 2)


# -- speed: before/after on repeated measurements ---------------------------------------------
# The one "beyond noise" rule of every speed comparison (halo bench compare, serve-bench compare,
# halo sweep's speeds, halo tune --measure): a change is faster or slower only when the test's
# two-sided p-value is below SPEED_ALPHA *and* the change exceeds SPEED_MIN_CHANGE_PCT.

SPEED_TEST = "welch"  # Welch's t-test on the samples: scipy.stats.ttest_ind(equal_var=False)
SPEED_ALPHA = ALPHA
SPEED_MIN_CHANGE_PCT = 1.0  # a change smaller than this is within noise whatever its p-value


@attrs.frozen
class SpeedComparison:
    """One speed after a change against before, judged by the one rule (see SPEED_TEST)."""

    before: float | None
    after: float | None
    change_pct: float | None
    p_value: float | None
    verdict: str  # faster | slower | within noise | untested (no p-value)
    test: str = SPEED_TEST
    alpha: float = SPEED_ALPHA
    min_change_pct: float = SPEED_MIN_CHANGE_PCT

    @property
    def rule(self) -> str:
        return speed_rule(self.test)


def speed_rule(test: str = SPEED_TEST) -> str:
    """The rule in words, as verdicts name it."""
    return f"{test} p < {SPEED_ALPHA:g} and change > {SPEED_MIN_CHANGE_PCT:g}%"


def welch_p(before: Sequence[float], after: Sequence[float]) -> float | None:
    """Two-sided p-value of Welch's t-test, or None with fewer than two samples a side."""
    if len(before) < 2 or len(after) < 2:
        return None
    if variance(before) + variance(after) == 0:  # scipy gives nan: no spread, so any difference is real
        return 0.0 if mean(after) != mean(before) else 1.0
    _np, stats = _scipy()
    return float(stats.ttest_ind(after, before, equal_var=False).pvalue)


def judge_speed(before: float | None, after: float | None, p_value: float | None,
                higher_is_better: bool = True, test: str = SPEED_TEST) -> SpeedComparison:
    """The rule itself, for a statistic and the p-value of `test` on it (see SPEED_TEST)."""
    change = 100.0 * (after - before) / before if before and after is not None else None
    verdict = "untested"
    if p_value is not None:
        verdict = "within noise"
        if p_value < SPEED_ALPHA and change is not None and abs(change) > SPEED_MIN_CHANGE_PCT:
            verdict = "faster" if (change > 0) == higher_is_better else "slower"
    return SpeedComparison(before, after, change, p_value, verdict, test)


def compare_speed(before: Sequence[float], after: Sequence[float],
                  higher_is_better: bool = True) -> SpeedComparison:
    """Means of repeated measurements before and after a change, judged by Welch's t-test."""
    return judge_speed(float(mean(before)) if before else None, float(mean(after)) if after else None,
                       welch_p(before, after), higher_is_better)
