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
from dataclasses import dataclass
from typing import Any

import numpy as np

#: Regularization strengths (sklearn's ``C``) that cross-validation chooses from.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
#: Rows sampled for the fit when there are more.
DEFAULT_MAX_ROWS = 200_000
#: Rows sampled for choosing ``C`` when there are more.
DEFAULT_CV_ROWS = 40_000


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
        t = _signed_log(x)
        miss = np.isnan(t)
        z = (np.where(miss, self.fill, t) - self.mean) / self.scale
        return z, miss.astype(np.float64)

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


def _design(t: np.ndarray, fill: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    miss = np.isnan(t)
    return np.hstack([(np.where(miss, fill, t) - mean) / scale, miss.astype(np.float64)])


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
    max_rows: int = DEFAULT_CV_ROWS,
) -> float:
    """The ``C`` of :data:`C_GRID` with the best 5-fold log loss, folds grouped by ``groups``.

    Decision points of one session share its label, so folds keep a session's
    points together (otherwise a fold would be scored on sessions it learnt),
    and fits and scores weigh every session once.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss
    from sklearn.model_selection import GroupKFold, KFold

    if len(design) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(design), max_rows, replace=False))
        design, y = design[keep], y[keep]
        groups = None if groups is None else groups[keep]
    weight = session_weights(groups, len(y))
    folds = 5
    if groups is None or len(np.unique(groups)) < folds:
        splits = KFold(folds, shuffle=True, random_state=seed).split(design)
    else:
        splits = GroupKFold(folds).split(design, y, groups)
    loss = np.zeros(len(C_GRID))
    for fit, held in splits:
        if len(np.unique(y[fit])) < 2:
            continue
        for i, c in enumerate(C_GRID):
            lr = LogisticRegression(C=c, max_iter=3000)
            lr.fit(design[fit], y[fit], sample_weight=weight[fit])
            p = lr.predict_proba(design[held])[:, 1]
            loss[i] += log_loss(y[held], p, sample_weight=weight[held], labels=[0, 1])
    return float(C_GRID[int(np.argmin(loss))])


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

    if len(x) > max_rows:
        keep = np.sort(np.random.default_rng(seed).choice(len(x), max_rows, replace=False))
        x, y = x[keep], y[keep]
        groups = None if groups is None else groups[keep]
    t = _signed_log(x)
    miss = np.isnan(t)
    with np.errstate(all="ignore"):
        fill = np.nanmedian(t, axis=0) if len(t) else np.zeros(x.shape[1])
    fill = np.where(np.isnan(fill), 0.0, fill)
    filled = np.where(miss, fill, t)
    mean = filled.mean(axis=0)
    scale = filled.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    design = _design(t, fill, mean, scale)
    if c is None:
        c = choose_c(design, y, groups, seed=seed)
    lr = LogisticRegression(C=c, max_iter=3000)
    lr.fit(design, y, sample_weight=session_weights(groups, len(y)))
    k = x.shape[1]
    return LinearBase(
        fill=fill,
        mean=mean,
        scale=scale,
        coef=lr.coef_[0, :k].astype(np.float64),
        miss_coef=lr.coef_[0, k:].astype(np.float64),
        miss_mean=miss.mean(axis=0).astype(np.float64),
        intercept=float(lr.intercept_[0]),
        c=float(c),
    )
