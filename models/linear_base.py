"""A logistic-regression base that LightGBM boosts on top of.

Most of what a session's events say about its outcome adds up: every click,
zoom and search moves the visitor's intent a little, every slow hover moves
their hesitation. A sum of many small signals is what a logistic regression
expresses in one step and what shallow trees, which split one column at a
time, approximate with many. So the abandonment model is a logistic
regression over every column, with LightGBM learning what the regression
misses (non-linear shapes, interactions) as the residual: its log-odds are the
booster's initial score.

Each column enters as a signed log, ``sign(x) * log(1 + |x|)`` (counts and
durations are heavy-tailed), standardized on the training rows; a missing
value takes the training median and sets the column's missing indicator. The
regression is L2-regularized; its strength ``C`` is chosen by 5-fold
cross-validated log loss with a session's decision points kept in one fold
(they share a label, so a few hundred sessions are far less evidence than
their thousands of rows suggest, and an under-regularized fit is
over-confident). It is fitted on at most ``max_rows`` rows: it has two
parameters per column, so more rows only cost time.

``contributions`` splits the log-odds exactly into one term per column plus a
bias, so the scorer's per-feature explanations stay additive.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(2000, 3)); x[rng.random(2000) < 0.1, 2] = np.nan
>>> y = (rng.random(2000) < 1 / (1 + np.exp(-2 * x[:, 0]))).astype(int)
>>> base = fit_linear_base(x, y, seed=0)
>>> bool(base.coef[0] > 0.5 > abs(base.coef[1]))
True
>>> logit = base.logit(x[:5])
>>> bool(np.allclose(base.contributions(x[:5]).sum(axis=1) + base.bias, logit))
True
>>> bool(np.isclose(base.logit_row(x[3]), logit[3]))
True
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Regularization strengths (sklearn's ``C``) that cross-validation chooses from.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: Rows sampled for the fit when there are more.
DEFAULT_MAX_ROWS = 200_000
#: Rows sampled for choosing ``C`` when there are more.
DEFAULT_CV_ROWS = 40_000
#: ``C`` when there is too little data to cross-validate (the grid's most chosen value).
FALLBACK_C = 0.1


def _signed_log(x: np.ndarray) -> np.ndarray:
    return np.asarray(np.sign(x) * np.log1p(np.abs(x)), dtype=np.float64)


def signed_log_features(x: dict[str, float]) -> dict[str, float]:
    """The same transform for one feature dict (river's models learn on it).

    >>> signed_log_features({"a": 0.0, "b": math.e - 1, "c": -(math.e - 1)})
    {'a': 0.0, 'b': 1.0, 'c': -1.0}
    """
    return {k: math.copysign(math.log1p(abs(v)), v) for k, v in x.items()}


@dataclass(frozen=True)
class LinearBase:
    """Standardization and coefficients of the base regression; numpy in, log-odds out."""

    fill: np.ndarray  # training median of each signed-log column
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # per standardized column
    miss_coef: np.ndarray  # per missing indicator
    miss_mean: np.ndarray  # share of missing values of each column in training
    intercept: float
    c: float = 1.0  # the regularization it was fitted with

    @property
    def bias(self) -> float:
        """Log-odds of a row whose every term is at its training mean."""
        return float(self.intercept + self.miss_coef @ self.miss_mean)

    def _terms(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _standardize(_signed_log(x), self.fill, self.mean, self.scale)

    def contributions(self, x: np.ndarray) -> np.ndarray:
        """Log-odds contribution of each column of each row; they sum to ``logit - bias``."""
        z, miss = self._terms(np.atleast_2d(x))
        return np.asarray(z * self.coef + (miss - self.miss_mean) * self.miss_coef)

    def logit(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of each row of ``x``."""
        z, miss = self._terms(np.atleast_2d(x))
        return np.asarray(z @ self.coef + miss @ self.miss_coef + self.intercept)

    def logit_row(self, row: np.ndarray) -> float:
        """:meth:`logit` of one row, as a float."""
        return float(self.logit(row.reshape(1, -1))[0])

    def as_dict(self) -> dict[str, Any]:
        return {
            k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LinearBase:
        scalars = ("intercept", "c")
        arrays = {k: np.asarray(v, dtype=np.float64) for k, v in d.items() if k not in scalars}
        return cls(intercept=float(d["intercept"]), c=float(d.get("c", 1.0)), **arrays)


def _standardize(
    t: np.ndarray, fill: np.ndarray, mean: np.ndarray, scale: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Standardized signed-log values (missing ones filled) and the missing indicators."""
    miss = np.isnan(t)
    return (np.where(miss, fill, t) - mean) / scale, miss.astype(np.float64)


def _sample(n: int, at_most: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded sample of ``at_most`` of ``n`` rows (all when fewer)."""
    if n <= at_most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, at_most, replace=False))


def session_weights(groups: np.ndarray | None, n: int) -> np.ndarray:
    """Row weights that make every session (group) count once: 1 / its row count."""
    if groups is None:
        return np.ones(n)
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return np.asarray(1.0 / counts[inverse], dtype=np.float64)


def choose_c(
    design: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray | None,
    *,
    seed: int = 0,
) -> float:
    """The ``C`` of :data:`C_GRID` with the best 5-fold log loss, folds grouped by ``groups``.

    Decision points of one session share its label, so folds keep a session's
    points together (otherwise a fold would be scored on sessions it learnt),
    and fits and scores weigh every session once. With fewer than five
    sessions there are as many folds as sessions; with one, or when no fold
    has both outcomes to learn from, it is :data:`FALLBACK_C`. It fits
    ``len(C_GRID) * 5`` regressions: :func:`fit_linear_base` passes it at most
    :data:`DEFAULT_CV_ROWS` rows.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupKFold, KFold

    weight = session_weights(groups, len(y))
    units = len(y) if groups is None else len(np.unique(groups))
    folds = min(5, units)
    if folds < 2:
        return FALLBACK_C
    if groups is None:
        splits = KFold(folds, shuffle=True, random_state=seed).split(design)
    else:
        splits = GroupKFold(folds).split(design, y, groups)
    loss = np.zeros(len(C_GRID))
    scored = False
    for fit, held in splits:
        if len(np.unique(y[fit])) < 2:
            continue
        for i, c in enumerate(C_GRID):
            lr = LogisticRegression(C=c, max_iter=3000)
            lr.fit(design[fit], y[fit], sample_weight=weight[fit])
            p = lr.predict_proba(design[held])[:, 1]
            loss[i] += log_loss(y[held], p, sample_weight=weight[held], labels=[0, 1])
        scored = True
    return float(C_GRID[int(np.argmin(loss))]) if scored else FALLBACK_C


def fit_linear_base(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    seed: int = 0,
    c: float | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> LinearBase:
    """Fit the base regression on (a seeded sample of at most ``max_rows`` of) ``x``.

    ``c`` is chosen by :func:`choose_c` unless given. ``groups`` (the session of
    each row) keeps a session's rows in one cross-validation fold, and weighs
    every session once in the fit.
    """
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        raise ValueError(
            "the training rows hold only one outcome; a risk model needs both "
            "abandoned and purchased sessions"
        )
    keep = _sample(len(x), max_rows, seed)
    x, y = x[keep], y[keep]
    groups = None if groups is None else groups[keep]
    t = _signed_log(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns: filled with 0
        fill = np.nanmedian(t, axis=0)
    fill = np.where(np.isnan(fill), 0.0, fill)
    filled = np.where(np.isnan(t), fill, t)
    # A column with one value in training carries no information, and its float
    # spread (1e-16, not 0) would blow up any other value at serving: it is
    # centred on that value and left unscaled, so every row's term is 0 there.
    constant = np.ptp(filled, axis=0) == 0
    mean = np.where(constant, filled[0], filled.mean(axis=0))
    scale = np.where(constant, 1.0, filled.std(axis=0))
    z, miss = _standardize(t, fill, mean, scale)
    design = np.hstack([z, miss])
    weight = session_weights(groups, len(y))
    if c is None:
        cv = _sample(len(y), DEFAULT_CV_ROWS, seed)
        cv_groups = None if groups is None else groups[cv]
        # C multiplies the sum of the weighted losses: scale the C chosen on the
        # cross-validation sample to the fit's sum of weights, for the same strength.
        cv_weight = session_weights(cv_groups, len(cv)).sum()
        c = choose_c(design[cv], y[cv], cv_groups, seed=seed) * cv_weight / weight.sum()
    lr = LogisticRegression(C=c, max_iter=3000)
    lr.fit(design, y, sample_weight=weight)
    k = x.shape[1]
    coef = np.where(constant, 0.0, lr.coef_[0, :k]).astype(np.float64)
    miss_coef = lr.coef_[0, k:].astype(np.float64)
    return LinearBase(
        fill=fill,
        mean=mean,
        scale=scale,
        coef=coef,
        miss_coef=miss_coef,
        miss_mean=miss.mean(axis=0),
        intercept=_row_intercept(design @ np.concatenate([coef, miss_coef]), y),
        c=float(c),
    )


def _row_intercept(score: np.ndarray, y: np.ndarray, steps: int = 25) -> float:
    """The intercept that makes the mean predicted risk of the rows their outcome rate.

    The slopes are fitted with every session weighed once, which calibrates the
    regression per session; the scorer decides per decision point, so the
    intercept is fitted per row (maximum likelihood with the slopes fixed, by
    Newton's method).
    """
    b = float(np.log(max(y.mean(), 1e-6) / max(1 - y.mean(), 1e-6)))
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-(score + b)))
        grad = float(np.sum(y - p))
        hess = float(np.sum(p * (1 - p)))
        if hess <= 0:
            break
        step = grad / hess
        b += step
        if abs(step) < 1e-10:
            break
    return b
