"""The statistics behind `halo sweep` and the quality gate of `halo tune --measure --eval`:
intervals of a score from per-sample outcomes, and the paired test of two settings on the
same samples. Everything is scipy's; nothing here is a hand-written formula except the
sample-size estimate, whose source is cited.

A sample's outcome is its score in [0, 1] (EvalSample.score). When every outcome is 0 or 1
(pass/fail) the interval is Wilson's and the paired test is the exact McNemar test (a binomial
test on the discordant pairs); otherwise the interval is a bootstrap of the mean and the paired
test an exact sign-flip permutation test on the differences (McNemar's analogue for scores).
The interval of a difference is a paired bootstrap either way.
"""

from __future__ import annotations

import math
from statistics import mean, variance

import attrs

from .errors import HaloError

ALPHA = 0.05
MIN_CHANGE_PCT = 1.0  # a speed change smaller than this is within noise whatever its p-value
RESAMPLES = 9999
SEED = 0  # bootstrap and permutation draws are fixed: the same samples give the same numbers


def _scipy():
    try:
        import numpy as np
        from scipy import stats
    except ImportError:
        raise HaloError("halo sweep's statistics need scipy: pip install 'halo-llm[eval]'") from None
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

def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (Lentz's method)."""
    tiny, qab, qap, qam = 1e-300, a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 300):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-12:
            break
    return h


def _incomplete_beta(a: float, b: float, x: float) -> float:
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                     + a * math.log(x) + b * math.log(1 - x))
    if x < (a + 1) / (a + b + 2):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1 - x) / b


def welch_p(before: list[float], after: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test, or None with fewer than two samples a side."""
    if len(before) < 2 or len(after) < 2:
        return None
    va, vb = variance(before) / len(before), variance(after) / len(after)
    diff = mean(after) - mean(before)
    if va + vb == 0:
        return 0.0 if diff else 1.0
    t = diff / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(before) - 1) + vb ** 2 / (len(after) - 1))
    return _incomplete_beta(df / 2, 0.5, df / (df + t * t))


def verdict(change_pct: float | None, p: float | None, higher_is_better: bool = True) -> str:
    """faster | slower (p < ALPHA and the change exceeds MIN_CHANGE_PCT) | within noise |
    untested (no p-value)."""
    if p is None:
        return "untested"
    if p < ALPHA and change_pct is not None and abs(change_pct) > MIN_CHANGE_PCT:
        return "faster" if (change_pct > 0) == higher_is_better else "slower"
    return "within noise"
