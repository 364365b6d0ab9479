"""Off-policy evaluation: what a candidate policy would have earned, from the decision log.

A logged decision is a context ``x``, the action ``a`` the system took, the
probability ``mu(a | x)`` with which it took it (its propensity, marginal over
the experiment's arms) and the reward ``r`` that followed. A candidate policy
``pi`` gives a probability to every action at every logged context. Three
estimators of its value ``E[r]`` under ``pi``:

* **IPS** (inverse propensity scoring): the mean of ``pi(a | x) / mu(a | x) * r``.
  Unbiased whenever ``mu > 0`` wherever ``pi > 0``; its variance grows with
  the weights.
* **SNIPS** (self-normalised IPS): the same sum divided by the sum of the
  weights instead of ``n``. Slightly biased, much steadier on small logs.
* **DR** (doubly robust): a reward model ``q(x, a)`` gives the direct estimate
  ``sum_a pi(a | x) q(x, a)``; IPS corrects it with the model's error on the
  logged action. Unbiased if either the propensities or the model are right,
  and of lower variance than IPS when the model is good.

Each estimate is a mean of per-decision contributions, so its 95% interval is
the t interval of that mean (``statsmodels``' ``DescrStatsW``); SNIPS's is the
delta method's. The difference of two policies is estimated on the same
decisions, paired, which is what a promotion gate needs.

The reward model is fitted per action on the logged decisions with
cross-fitting (each fold's ``q`` comes from a model that never saw it), using
scikit-learn's ``HistGradientBoostingRegressor``.

Examples
--------
Two decisions, logged with probability 0.5 each; the candidate always picks
action 0:

>>> import numpy as np
>>> target = np.array([[1.0, 0.0], [1.0, 0.0]])
>>> action, propensity, reward = np.array([0, 1]), np.array([0.5, 0.5]), np.array([4.0, 2.0])
>>> ips(target, action, propensity, reward).value  # (1/0.5 * 4 + 0) / 2
4.0
>>> q = np.array([[3.0, 1.0], [3.0, 1.0]])
>>> doubly_robust(target, action, propensity, reward, q).value  # ((3 + 2 * (4 - 3)) + 3) / 2
4.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.weightstats import DescrStatsW

#: Confidence level of every interval.
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """One estimator's value of one policy, with its interval."""

    method: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    #: Effective sample size of the importance weights, ``(sum w)^2 / sum w^2``.
    ess: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check(
    target: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray
) -> np.ndarray:
    """The candidate's probability of each logged action; errors that say what is wrong."""
    n = len(action)
    if not (target.ndim == 2 and target.shape[0] == n == len(propensity) == len(reward)):
        raise ValueError(
            f"target must be (decisions, actions) and the logged arrays as long: got target "
            f"{target.shape}, {n} actions, {len(propensity)} propensities, {len(reward)} rewards"
        )
    if n < 2:
        raise ValueError("at least 2 logged decisions are needed for an interval")
    if not np.all((propensity > 0) & (propensity <= 1)):
        raise ValueError("every propensity must be in (0, 1]: the log cannot evaluate actions "
                         "it never risked")  # fmt: skip
    if not np.allclose(target.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("each row of target must be a probability distribution over the actions")
    return target[np.arange(n), action]


def _mean_interval(method: str, contrib: np.ndarray, weights: np.ndarray) -> Estimate:
    low, high = DescrStatsW(contrib).tconfint_mean(alpha=1 - LEVEL)
    ess = float(weights.sum() ** 2 / max(float((weights**2).sum()), 1e-300))
    return Estimate(method, float(contrib.mean()), float(low), float(high), len(contrib), ess)


def ips(
    target: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray
) -> Estimate:
    """Inverse propensity scoring: ``mean(pi(a|x) / mu(a|x) * r)``."""
    w = _check(target, action, propensity, reward) / propensity
    return _mean_interval("ips", w * reward, w)


def snips(
    target: np.ndarray, action: np.ndarray, propensity: np.ndarray, reward: np.ndarray
) -> Estimate:
    """Self-normalised IPS: ``sum(w r) / sum(w)``, its interval by the delta method."""
    w = _check(target, action, propensity, reward) / propensity
    n, total = len(w), float(w.sum())
    if total <= 0:
        raise ValueError("the candidate gives probability 0 to every logged action")
    value = float((w * reward).sum() / total)
    # Delta method for a ratio of means: the residuals w (r - value), scaled by mean(w).
    resid = w * (reward - value) / (total / n)
    half = stats.t.ppf(0.5 + LEVEL / 2, n - 1) * resid.std(ddof=1) / np.sqrt(n)
    ess = total**2 / float((w**2).sum())
    return Estimate("snips", value, value - half, value + half, n, ess)


def dr_contributions(
    target: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q: np.ndarray,
) -> np.ndarray:
    """Per-decision doubly robust terms: ``sum_a pi q + pi(a|x)/mu (r - q(x, a))``."""
    p_logged = _check(target, action, propensity, reward)
    if q.shape != target.shape:
        raise ValueError(f"q must have the target's shape {target.shape}, got {q.shape}")
    rows = np.arange(len(action))
    return (target * q).sum(axis=1) + p_logged / propensity * (reward - q[rows, action])


def doubly_robust(
    target: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q: np.ndarray,
) -> Estimate:
    """The doubly robust value of ``target`` with reward model ``q`` (``(decisions, actions)``)."""
    contrib = dr_contributions(target, action, propensity, reward, q)
    w = target[np.arange(len(action)), action] / propensity
    return _mean_interval("dr", contrib, w)


def dr_difference(
    new: np.ndarray,
    current: np.ndarray,
    action: np.ndarray,
    propensity: np.ndarray,
    reward: np.ndarray,
    q: np.ndarray,
) -> Estimate:
    """DR value of ``new`` minus that of ``current``, paired on the same decisions.

    >>> import numpy as np
    >>> a, mu, r = np.array([0, 1, 0, 1]), np.full(4, 0.5), np.array([1.0, 0.0, 1.0, 0.0])
    >>> q = np.tile([1.0, 0.0], (4, 1))
    >>> always0, always1 = np.tile([1.0, 0.0], (4, 1)), np.tile([0.0, 1.0], (4, 1))
    >>> dr_difference(always0, always1, a, mu, r, q).value
    1.0
    """
    diff = dr_contributions(new, action, propensity, reward, q) - dr_contributions(
        current, action, propensity, reward, q
    )
    rows = np.arange(len(action))
    w = np.abs(new[rows, action] - current[rows, action]) / propensity
    return _mean_interval("dr_difference", diff, w)


def fit_reward_model(
    x: np.ndarray, action: np.ndarray, reward: np.ndarray, n_actions: int, *, seed: int = 0
) -> np.ndarray:
    """Cross-fitted ``q(x, a)`` for every logged decision and every action: ``(n, actions)``.

    Two folds: each decision's row comes from models fitted on the other fold,
    one regressor per action. An action never logged in a fold gets that
    fold's mean reward.
    """
    from sklearn.ensemble import HistGradientBoostingRegressor

    n = len(action)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(n) % 2
    q = np.zeros((n, n_actions))
    for f in (0, 1):
        train, test = fold != f, fold == f
        fallback = float(reward[train].mean()) if train.any() else 0.0
        for a in range(n_actions):
            rows = train & (action == a)
            if rows.sum() < 20:
                q[test, a] = float(reward[rows].mean()) if rows.any() else fallback
                continue
            model = HistGradientBoostingRegressor(
                max_iter=100, learning_rate=0.1, min_samples_leaf=20, random_state=seed
            )
            model.fit(x[rows], reward[rows])
            q[test, a] = model.predict(x[test])
    return q
