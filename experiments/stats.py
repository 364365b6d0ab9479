"""The statistics of an A/B comparison, from scipy and statsmodels where they have them.

* sample-ratio mismatch: :func:`scipy.stats.chisquare` against the weights;
* lift of a proportion: statsmodels' ``confint_proportions_2indep`` (difference
  and ratio, Wald) and ``test_proportions_2indep``; Cohen's h by
  ``proportion_effectsize``;
* the Bayesian chance to beat control and the expected loss: Beta(1, 1)
  posteriors, by seeded draws from :mod:`scipy.stats`;
* CUPED: the arms' difference of covariate-adjusted means (closed form; it
  agrees with statsmodels' OLS on the centred covariate, which the tests check);
* always-valid intervals: the asymptotic confidence sequence of Waudby-Smith et
  al. (2021), as GrowthBook uses it, tuned for a planned sample size. No pinned
  library has it; the formula is in :func:`sequential_halfwidth`.

>>> round(srm_p_value([500, 500], [0.5, 0.5]), 3)
1.0
>>> d = proportion_lift(120, 1000, 100, 1000)
>>> round(d.lift, 3), round(d.ci_low, 4), round(d.ci_high, 4)
(0.02, -0.0074, 0.0474)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_effectsize,
)
from statsmodels.stats.proportion import (
    test_proportions_2indep as two_proportion_test,
)

ALPHA = 0.05
#: GrowthBook's bound for a sample-ratio mismatch.
SRM_ALPHA = 0.001


def srm_p_value(observed: list[int], weights: list[float]) -> float:
    """Chi-square test of the arms' sizes against their configured weights."""
    total = sum(observed)
    w = np.asarray(weights, dtype=float)
    expected = total * w / w.sum()
    if total == 0 or len(observed) < 2:
        return 1.0
    return float(stats.chisquare(observed, expected).pvalue)


@dataclass(frozen=True)
class Lift:
    """A treatment's conversion against control's."""

    lift: float  # absolute: rate_t - rate_c
    ci_low: float
    ci_high: float
    relative: float | None  # rate_t / rate_c - 1
    rel_low: float | None
    rel_high: float | None
    p_value: float
    cohens_h: float
    se: float


def proportion_lift(x_t: int, n_t: int, x_c: int, n_c: int, alpha: float = ALPHA) -> Lift:
    """Absolute and relative lift with Wald intervals, the two-proportion test, Cohen's h."""
    p_t, p_c = x_t / n_t, x_c / n_c
    low, high = confint_proportions_2indep(x_t, n_t, x_c, n_c, method="wald", alpha=alpha)
    p_value = float(two_proportion_test(x_t, n_t, x_c, n_c, method="wald").pvalue)
    if math.isnan(p_value):  # no variance at all (0 or all conversions in both)
        p_value = 1.0
    rel = rl = rh = None
    if x_c > 0 and x_t > 0:
        rl, rh = confint_proportions_2indep(
            x_t, n_t, x_c, n_c, method="log", compare="ratio", alpha=alpha
        )
        rel, rl, rh = p_t / p_c - 1, float(rl) - 1, float(rh) - 1
    se = math.sqrt(p_t * (1 - p_t) / n_t + p_c * (1 - p_c) / n_c)
    h = float(proportion_effectsize(p_t, p_c))
    return Lift(p_t - p_c, float(low), float(high), rel, rl, rh, p_value, h, se)


def chance_to_beat(
    x_t: int, n_t: int, x_c: int, n_c: int, draws: int = 200_000, seed: int = 0
) -> tuple[float, float]:
    """P(rate_t > rate_c) and the expected loss E[max(rate_c - rate_t, 0)] of shipping t.

    Beta(1 + x, 1 + n - x) posteriors; seeded draws, so the same counts give the
    same figures.
    """
    rng = np.random.default_rng(seed)
    t = stats.beta(1 + x_t, 1 + n_t - x_t).rvs(draws, random_state=rng)
    c = stats.beta(1 + x_c, 1 + n_c - x_c).rvs(draws, random_state=rng)
    return float(np.mean(t > c)), float(np.mean(np.maximum(c - t, 0.0)))


def sequential_halfwidth(se: float, n: int, planned_n: int, alpha: float = ALPHA) -> float:
    """Half-width of the always-valid interval of an estimate with standard error ``se``.

    The asymptotic confidence sequence (Waudby-Smith et al. 2021, eq. 7, as in
    GrowthBook): with ``sigma = se * sqrt(n)`` and ``rho`` tuned so the bound is
    tightest at ``planned_n``,
    ``sigma * sqrt(2 (n rho^2 + 1) / (n^2 rho^2) * log(sqrt(n rho^2 + 1) / alpha))``.
    Looking at it every day keeps the false-positive rate under ``alpha``.

    >>> round(sequential_halfwidth(0.01, 10_000, 10_000), 5)
    0.03035
    """
    if n <= 0:
        return math.inf
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / planned_n
    sigma = se * math.sqrt(n)
    return sigma * math.sqrt(
        2 * (n * rho2 + 1) / (n * n * rho2) * math.log(math.sqrt(n * rho2 + 1) / alpha)
    )


@dataclass(frozen=True)
class Adjusted:
    """The treatment effect on a metric, unadjusted and CUPED-adjusted."""

    effect: float
    se: float
    cuped_effect: float
    cuped_se: float
    theta: float

    @property
    def width_ratio(self) -> float:
        """Width of the CUPED interval over the unadjusted one (below 1: narrower)."""
        return self.cuped_se / self.se if self.se > 0 else 1.0


def cuped(y: np.ndarray, treated: np.ndarray, covariate: np.ndarray) -> Adjusted:
    """CUPED (Deng et al. 2013): ``y - theta (x - mean x)``, ``theta = cov(y, x) / var(x)``.

    The effect is the difference of the arms' means, its standard error
    ``sqrt(var_t / n_t + var_c / n_c)``, with and without the adjustment. In
    closed form with numpy, because it runs on every row (10M in bench); the
    tests check it against statsmodels' OLS with the centred covariate
    (heteroscedasticity-robust errors), which gives the same figures.
    """
    t = treated.astype(bool)
    x = covariate - covariate.mean()
    theta = float(np.dot(y - y.mean(), x) / np.dot(x, x)) if np.dot(x, x) > 0 else 0.0
    effect, se = _diff(y, t)
    adjusted, adjusted_se = _diff(y - theta * x, t)
    return Adjusted(effect, se, adjusted, adjusted_se, theta)


def _diff(y: np.ndarray, t: np.ndarray) -> tuple[float, float]:
    a, b = y[t], y[~t]
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    return float(a.mean() - b.mean()), se


def welch(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Difference of means ``a - b`` and Welch's two-sided p-value."""
    if len(a) < 2 or len(b) < 2:
        return float(np.mean(a) - np.mean(b)) if len(a) and len(b) else 0.0, 1.0
    res = stats.ttest_ind(a, b, equal_var=False)
    p = float(res.pvalue)
    return float(np.mean(a) - np.mean(b)), 1.0 if math.isnan(p) else p
