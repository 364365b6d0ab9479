"""The uplift model: which adjustment raises a visitor's expected net revenue most.

A **T-learner** on LightGBM, trained from the decision log (the batch
alternative to the contextual bandit): for each treatment the log holds
enough sessions of, one binary classifier of P(purchase | context). Each is
trained on the sessions that got that treatment, weighted by the inverse of
the probability with which they got it (``treatment_propensity``), so that
rule arms, which treat by context, do not bias it towards the visitors they
pick. The expected net revenue of treatment *k* for a visitor is

    P(purchase | x, k) * cart value * (1 - discount of k / 100)

and the uplift policy picks the highest, ``none`` unless a treatment beats
it by more than ``min_gain``: the discount's cost is in the formula, so the
gain is net of the margin given away.

It is measured with the **Qini curve** and the **AUUC** of each treatment
against ``none``, on cross-fitted predictions (no session is scored by a model
that saw it), weighted by the inverse propensities (:func:`qini_curve`).
scikit-uplift's metrics (0.5.1) take neither weights nor a revenue outcome, and
the log's assignment is not uniform, so these few lines of numpy do it.

>>> percent_of("show_discount_popup@15"), percent_of("emphasize_cta")
(15.0, 0.0)
>>> f, g = qini_curve(np.array([0.9, 0.1, 0.5, 0.3]), np.array([1, 1, 0, 0]),
...                   np.array([10.0, 0.0, 0.0, 5.0]), np.ones(4))
>>> f.tolist(), g.round(3).tolist()
([0.0, 0.25, 0.5, 0.75, 1.0], [0.0, 2.5, 2.5, 1.875, 1.25])
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from models.card import ModelCard

UPLIFT = "microtune-uplift"
NONE = "none"
#: A treatment needs this many logged sessions to get a model of its own.
MIN_ROWS = 40
#: Uplift is a small difference of two noisy rates: small, strongly regularized
#: trees (bench/bench_policy.py and tests/test_uplift.py measured 15 leaves of 30
#: rows losing a third of the oracle's gain that these keep).
PARAMS: dict[str, Any] = {
    "objective": "binary",
    "learning_rate": 0.03,
    "num_leaves": 4,
    "lambda_l2": 10.0,
    "feature_fraction": 0.9,
    "verbose": -1,
    "deterministic": True,
    "num_threads": 1,
}
ROUNDS = 100


def min_leaf(rows: int) -> int:
    """A leaf holds at least 5% of a treatment's sessions (and 20)."""
    return max(20, rows // 20)


def percent_of(key: str) -> float:
    """The discount a treatment key gives, in percent (0 without one)."""
    total = 0.0
    for part in key.split("+"):
        action, _, pct = part.partition("@")
        if action == "show_discount_popup":
            total = max(total, float(pct or 10.0))
    return total


@dataclass
class UpliftModel:
    """One purchase model per treatment; ``card.params['treatments']`` names them."""

    card: ModelCard
    boosters: list[Any]
    min_gain: float = 0.0

    @property
    def treatments(self) -> list[str]:
        return list(self.card.params["treatments"])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """P(purchase) under each treatment: ``(rows, treatments)``."""
        x = np.atleast_2d(np.asarray(x, dtype=float))
        return np.column_stack([b.predict(x) for b in self.boosters])

    def expected_revenue(self, x: np.ndarray, cart_value: np.ndarray) -> np.ndarray:
        """Expected net revenue under each treatment: ``(rows, treatments)``."""
        keep = np.array([1.0 - percent_of(k) / 100.0 for k in self.treatments])
        return self.predict(x) * np.asarray(cart_value, dtype=float)[:, None] * keep

    def choose(self, x: np.ndarray, cart_value: np.ndarray) -> np.ndarray:
        """Each visitor's treatment index: the best, when it beats ``none`` by ``min_gain``."""
        return best_treatment(self.expected_revenue(x, cart_value), self.treatments, self.min_gain)


def best_treatment(value: np.ndarray, treatments: list[str], min_gain: float = 0.0) -> np.ndarray:
    """The argmax of ``value`` per row, or ``none`` unless the best gains more than ``min_gain``.

    >>> best_treatment(np.array([[10.0, 12.0], [10.0, 10.5]]), ["none", "cta"], 1.0).tolist()
    [1, 0]
    """
    best = value.argmax(axis=1)
    if NONE in treatments:
        j = treatments.index(NONE)
        gain = value[np.arange(len(value)), best] - value[:, j]
        best = np.where(gain > min_gain, best, j)
    return best


def fit_uplift(
    x: np.ndarray,
    treatment: list[str],
    propensity: np.ndarray,
    purchased: np.ndarray,
    *,
    columns: list[str],
    window: dict[str, Any],
    seed: int = 0,
    min_gain: float = 0.0,
    treatments: list[str] | None = None,
) -> UpliftModel:
    """A T-learner on the logged sessions (``none`` must be among the treatments).

    Treatments with fewer than :data:`MIN_ROWS` sessions are left out (the
    card lists them under ``params['too_few']``), unless ``treatments`` names
    the ones to fit.
    """
    import lightgbm as lgb

    kept = treatments or modelled_treatments(treatment)
    keys, counts = np.unique(np.asarray(treatment, dtype=object), return_counts=True)
    t = np.asarray(treatment, dtype=object)
    boosters = []
    for key in kept:
        mine = t == key
        data = lgb.Dataset(x[mine], purchased[mine].astype(float), weight=1.0 / propensity[mine])
        params = {**PARAMS, "seed": seed, "min_data_in_leaf": min_leaf(int(mine.sum()))}
        boosters.append(lgb.train(params, data, num_boost_round=ROUNDS))
    card = ModelCard(
        kind="uplift-t-learner",
        feature_service="decision-log",
        columns=list(columns),
        training_window=window,
        params={
            "treatments": kept,
            "sessions": {k: int(c) for k, c in zip(keys, counts, strict=True)},
            "too_few": sorted(str(k) for k in keys if str(k) not in kept),
            "lightgbm": {**PARAMS, "rounds": ROUNDS, "seed": seed},
            "min_gain": min_gain,
            "value": "P(purchase | x, k) * cart_value * (1 - discount % / 100)",
        },
    )
    return UpliftModel(card, boosters, min_gain)


def modelled_treatments(treatment: list[str]) -> list[str]:
    """``none`` first, then every treatment with at least :data:`MIN_ROWS` sessions.

    >>> modelled_treatments(["none"] * 50 + ["cta"] * 45 + ["x"] * 3)
    ['none', 'cta']
    """
    keys, counts = np.unique(np.asarray(treatment, dtype=object), return_counts=True)
    kept = [str(k) for k, c in zip(keys, counts, strict=True) if c >= MIN_ROWS]
    if NONE not in kept:
        raise ValueError(f"the uplift model needs at least {MIN_ROWS} sessions without treatment")
    return [NONE, *sorted(k for k in kept if k != NONE)]


def cross_fitted(
    x: np.ndarray,
    treatment: list[str],
    propensity: np.ndarray,
    purchased: np.ndarray,
    *,
    columns: list[str],
    folds: int = 2,
    seed: int = 0,
) -> tuple[list[str], np.ndarray]:
    """Each session's P(purchase) under each treatment from a model that did not see it.

    Returns the treatments (:func:`modelled_treatments`) and ``(rows, treatments)``.
    """
    keys = modelled_treatments(treatment)
    rng = np.random.default_rng(seed)
    fold = rng.permutation(len(x)) % folds
    models = [
        fit_uplift(
            x[fold != f],
            [treatment[i] for i in np.flatnonzero(fold != f)],
            propensity[fold != f],
            purchased[fold != f],
            columns=columns,
            window={},
            seed=seed,
            treatments=keys,
        )
        for f in range(folds)
    ]
    out = np.zeros((len(x), len(keys)))
    for f, m in enumerate(models):
        out[fold == f] = m.predict(x[fold == f])
    return keys, out


def qini_curve(
    score: np.ndarray, treated: np.ndarray, outcome: np.ndarray, weight: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve: targeting the top fraction ``f`` by ``score``, the incremental
    outcome per session of the whole population.

    ``treated`` is 1 for sessions that got the treatment, 0 for those that got
    none; ``weight`` (inverse propensities) makes both groups stand for the
    population. At each cut the gain is the treated group's weighted outcome
    minus the untreated group's, scaled to the treated group's weight
    (Radcliffe's Qini), divided by the population's total weight.
    """
    order = np.argsort(-score, kind="stable")
    t = treated[order].astype(bool)
    w, y = weight[order], outcome[order]
    wt, wc = np.cumsum(w * t), np.cumsum(w * ~t)
    yt, yc = np.cumsum(w * y * t), np.cumsum(w * y * ~t)
    with np.errstate(invalid="ignore", divide="ignore"):
        gain = np.where(wc > 0, yt - yc * wt / wc, yt)
    total = w.sum()
    fraction = np.concatenate([[0.0], np.cumsum(w) / total])
    return fraction, np.concatenate([[0.0], gain / total])


def auuc(fraction: np.ndarray, gain: np.ndarray) -> float:
    """Area between a Qini curve and random targeting (the straight line to its end),
    in outcome per session: above 0, the ranking finds the visitors it helps.

    >>> auuc(np.array([0.0, 0.5, 1.0]), np.array([0.0, 2.0, 2.0]))
    0.5
    """
    line = fraction * gain[-1]
    return float(np.trapezoid(gain - line, fraction))
