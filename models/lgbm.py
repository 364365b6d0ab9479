"""LightGBM abandonment-risk model: training, calibration, explanations and plots.

Training uses the time split from :mod:`models.dataset`: early stopping on
validation AUC, classes weighted to balance (abandonment is the majority
class). The booster is trained on top of a logistic regression over the same
columns (:mod:`models.linear_base`): it starts every row from the
regression's log-odds and learns only what the regression misses. Class
weights shift every raw log-odds by exactly ``log(scale_pos_weight)``; the
model undoes that shift, which restores calibration without fitting anything.
The result is then checked on the validation window and recalibrated with Platt
scaling only when its expected calibration error exceeds ``ece_tolerance``
(0.1, i.e. grossly off): a single day's base rate swings by several points, and
a Platt fit on it carries that day's rate into every prediction. Measured:
hold-out ECE 0.045 with Platt against 0.025 without (``bench/bench_models.py``
data), and 0.078 against 0.032 on the demo's week, whose validation day had a
0.59 abandonment rate against 0.64 in training and 0.67 in the hold-out.
Platt scaling is monotonic, so it never changes the ranking (AUC). Once
early stopping has chosen the rounds, the same recipe is fitted again on the
training and validation windows together (``refit``), so the model returned
also learns from the latest labelled day. Metrics are reported on the
held-out window.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import lightgbm as lgb
import numpy as np

from models.card import ModelCard, RiskModel
from models.fastpredict import SingleRowPredictor
from models.lgbm_dask import boost_dask
from models.linear_base import LinearBase, fit_linear_base
from models.metrics import expected_calibration_error, score

DEFAULT_PARAMS: dict[str, Any] = {
    "objective": "binary",
    "metric": "auc",
    "first_metric_only": True,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "verbose": -1,
    "deterministic": True,
    "force_row_wise": True,
    "num_threads": 2,
}


#: The trees learn the linear base's residual, mostly noise: a leaf needs the
#: evidence of a few hundred sessions, or it fits the validation day
#: (docs/models.md, "Leaves of a few hundred sessions"). ``min_data_in_leaf`` is
#: that many sessions' worth of rows (:func:`leaf_rows`).
MIN_LEAF_SESSIONS = 350


def leaf_rows(n_rows: int, groups: np.ndarray | None) -> int:
    """``min_data_in_leaf`` for ``n_rows`` training rows: :data:`MIN_LEAF_SESSIONS` sessions.

    A session of the generated logs has about 5.7 decision points, so a leaf
    there needs about 2,000 rows; with one row per session (``groups`` None,
    as in the UCI data) it needs 350.

    >>> leaf_rows(10_000, None)
    350
    >>> leaf_rows(6, np.array(["a", "a", "a", "b", "b", "b"]))
    1050
    """
    per_session = 1.0 if groups is None else n_rows / max(len(np.unique(groups)), 1)
    return max(1, round(MIN_LEAF_SESSIONS * per_session))


#: Above this many training rows, trees grow larger and learn faster: small,
#: slow trees suit a week of one site (tens of thousands of decision points)
#: but would need thousands of rounds on millions.
LARGE_DATA_ROWS = 50_000
LARGE_DATA_PARAMS: dict[str, Any] = {
    "learning_rate": 0.15,
    "num_leaves": 31,
    "bagging_fraction": 0.5,
    "max_bin": 63,
}


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


@dataclass
class LgbmRiskModel:
    """A trained booster plus its calibration and card. Numpy in, probabilities out."""

    booster: lgb.Booster
    card: ModelCard
    platt: tuple[float, float] = (1.0, 0.0)
    #: log(scale_pos_weight): class weighting shifts every raw logit by exactly this.
    prior_shift: float = 0.0
    #: The regression the booster was trained on top of (its initial score), if any.
    base: LinearBase | None = None

    def _offset(self, x: np.ndarray) -> np.ndarray | float:
        """What turns the booster's raw score into the model's log-odds.

        Without a base: minus the class-weight shift. With one, training started
        every row from ``base + prior_shift``, so the weighted model's log-odds are
        ``booster + base + prior_shift`` and the model's are ``booster + base``.
        """
        if self.base is None:
            return -self.prior_shift
        return self.base.logit(x)

    def raw(self, x: np.ndarray) -> np.ndarray:
        """Probabilities of the weighted model with the class-weight shift undone."""
        raw = np.asarray(self.booster.predict(x, raw_score=True, num_threads=1), dtype=np.float64)
        z = raw + self._offset(x)
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def predict(self, x: np.ndarray) -> np.ndarray:
        a, b = self.platt
        z = a * _logit(self.raw(x)) + b
        return np.asarray(1.0 / (1.0 + np.exp(-z)), dtype=np.float64)

    def predict_one(self, features: dict[str, Any]) -> float:
        return float(self.predict(self.card.vector(features))[0])

    def predict_row(self, row: np.ndarray) -> float:
        """:meth:`predict` of one row through LightGBM's single-row fast path."""
        fast = self.__dict__.get("_fast_raw")
        if fast is None:
            fast = self.__dict__["_fast_raw"] = SingleRowPredictor(self.booster, "raw")
        z = fast(row) + (self.base.logit_row(row) if self.base else -self.prior_shift)
        p = min(max(1.0 / (1.0 + math.exp(-z)), 1e-6), 1 - 1e-6)
        a, b = self.platt
        return 1.0 / (1.0 + math.exp(-(a * math.log(p / (1 - p)) + b)))

    def contributions_row(self, row: np.ndarray) -> np.ndarray:
        """Signed log-odds contributions of one row, in column order (no bias term).

        The booster's SHAP values plus, with a base, the base's exact linear terms.
        """
        fast = self.__dict__.get("_fast_contrib")
        if fast is None:
            fast = self.__dict__["_fast_contrib"] = SingleRowPredictor(self.booster, "contrib")
        trees = np.asarray(fast(row))[:-1]
        return trees + self.base.contributions(row)[0] if self.base else trees

    def contribution_matrix(self, x: np.ndarray) -> np.ndarray:
        """:meth:`contributions_row` of every row of ``x``: rows by columns."""
        trees = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=1))[:, :-1]
        return trees + self.base.contributions(x) if self.base else trees

    def contributions(self, x: np.ndarray) -> list[dict[str, float]]:
        """Signed per-feature contributions (log-odds, before calibration) of each row."""
        return [
            dict(zip(self.card.columns, row.tolist(), strict=True))
            for row in self.contribution_matrix(x)
        ]

    def __getstate__(self) -> dict[str, Any]:
        # With a base, the booster alone scores only a residual: it is stored under
        # another key, so that code older than the base fails to load the model
        # (KeyError "model") instead of scoring with the residual alone.
        key = "model" if self.base is None else "residual_model"
        return {
            key: self.booster.model_to_string(),
            "card": self.card.as_dict(),
            "platt": self.platt,
            "prior_shift": self.prior_shift,
            "base": self.base.as_dict() if self.base else None,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.booster = lgb.Booster(model_str=state.get("model") or state["residual_model"])
        self.card = ModelCard.from_dict(state["card"])
        a, b = state["platt"]
        self.platt = (float(a), float(b))
        self.prior_shift = float(state["prior_shift"])
        base = state.get("base")
        self.base = LinearBase.from_dict(base) if base else None


def fit_platt(y: np.ndarray, p: np.ndarray) -> tuple[float, float]:
    """Logistic regression of the label on the logit of ``p``: (slope, intercept)."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e6, max_iter=1000)
    lr.fit(_logit(p).reshape(-1, 1), y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


@dataclass
class TrainResult:
    model: LgbmRiskModel
    metrics: dict[str, float]
    best_iteration: int
    recalibrated: bool


def train_lgbm(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_valid: np.ndarray,
    y_valid: np.ndarray,
    card: ModelCard,
    *,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    ece_tolerance: float = 0.1,
    max_rounds: int = 2000,
    linear_base: bool = True,
    groups: np.ndarray | None = None,
    valid_groups: np.ndarray | None = None,
    refit: bool = True,
    client: Any = None,
) -> TrainResult:
    """Train with early stopping on the validation window, calibrate, then refit.

    With ``linear_base`` (the default) the booster starts every row from a
    logistic regression's log-odds (:mod:`models.linear_base`) instead of the
    base rate, and learns the rest. ``groups`` (each training row's session)
    keeps a session's rows in one fold when the base's regularization is
    chosen, and weighs every session once in its fit; it also sets the trees'
    leaf size (:func:`leaf_rows`).

    With ``refit`` (the default), once early stopping has chosen the number of
    rounds and the calibration check has passed, the same recipe is fitted
    again on the training and validation rows together, for that many rounds,
    so the model also learns from the most recent labelled day. ``valid_groups``
    are then the validation rows' sessions (required with ``groups``). The
    ``valid_*`` metrics are always those of the model fitted on the training
    rows alone, the only ones measured on rows the model did not learn from.

    With a Dask ``client``, the trees are boosted on its cluster
    (:func:`models.lgbm_dask.boost_dask`).
    A model that needed Platt scaling is not refitted: the scaling was fitted
    to that model's validation predictions.
    """
    for name, ids, rows in (("groups", groups, y_train), ("valid_groups", valid_groups, y_valid)):
        if ids is not None and len(ids) != len(rows):
            raise ValueError(
                f"{name} has {len(ids)} entries for {len(rows)} rows; "
                "pass the session id of every row"
            )
    if refit and (groups is None) != (valid_groups is None):
        raise ValueError(
            "pass the sessions of both windows (groups and valid_groups) or of neither: "
            "the refit weighs the sessions of both"
        )
    scale = LARGE_DATA_PARAMS if len(y_train) > LARGE_DATA_ROWS else {}
    fixed = {**DEFAULT_PARAMS, **scale, "seed": seed}
    p = _fit_params(fixed, params or {}, y_train, groups)
    base = fit_linear_base(x_train, y_train, groups=groups, seed=seed) if linear_base else None
    boost = _boost if client is None else partial(_boost_on_dask, client)
    model = boost(p, card, x_train, y_train, base, max_rounds, valid=(x_valid, y_valid))
    booster = model.booster
    raw_valid = model.raw(x_valid)
    ece_before = expected_calibration_error(y_valid, raw_valid)
    recalibrated = ece_before > ece_tolerance
    if recalibrated:
        model.platt = fit_platt(y_valid, raw_valid)
    after = model.predict(x_valid)
    rounds = int(booster.best_iteration or booster.current_iteration())
    metrics = {
        "best_iteration": float(rounds),
        "valid_ece_raw": ece_before,
        **score(y_valid, after).as_dict("valid_"),
    }
    refitted = refit and not recalibrated
    if refitted:
        x_all = np.vstack([x_train, x_valid])
        y_all = np.concatenate([y_train, y_valid])
        ids = None if groups is None else np.concatenate([groups, valid_groups])
        p = _fit_params(fixed, params or {}, y_all, ids)
        # The base keeps the selection fit's C: the same prior, with the validation
        # window's sessions also weighing against it (not C times the sum of
        # weights, the rule fit_linear_base applies between its cross-validation
        # sample and its fit). With 5 training days the selection trees may not
        # split at all; the refit's larger leaves may then split once or twice at
        # the learning rate of 0.03, unvalidated.
        if base is not None:
            base = fit_linear_base(x_all, y_all, groups=ids, seed=seed, c=base.c)
        model = boost(p, card, x_all, y_all, base, rounds)
        after = model.predict(x_valid)
    metrics["refit"] = float(refitted)
    # Where it was boosted: the Dask cluster's workers, or 0 for this process.
    metrics["dask_workers"] = float(
        0 if client is None else len(client.scheduler_info()["workers"])
    )
    metrics["fit_rows"] = float(len(y_train) + (len(y_valid) if refitted else 0))
    # The parameters of the model returned: after a refit, its leaf size and class weight.
    card.params = {k: v for k, v in p.items() if k != "verbose"} | {
        "linear_base": linear_base,
        "refit": refitted,
    }
    card.thresholds = risk_thresholds(after)
    return TrainResult(model, metrics, rounds, recalibrated)


def _fit_params(
    fixed: dict[str, Any], explicit: dict[str, Any], y: np.ndarray, groups: np.ndarray | None
) -> dict[str, Any]:
    """LightGBM parameters for fitting on ``y``: leaf size and class weight follow the rows.

    ``explicit`` (the caller's ``params``) wins over both.
    """
    pos = max(float(y.sum()), 1.0)
    neg = max(float(len(y) - y.sum()), 1.0)
    return {
        **fixed,
        "min_data_in_leaf": leaf_rows(len(y), groups),
        "scale_pos_weight": neg / pos,
        **explicit,
    }


def _boost(
    params: dict[str, Any],
    card: ModelCard,
    x: np.ndarray,
    y: np.ndarray,
    base: LinearBase | None,
    rounds: int,
    *,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
) -> LgbmRiskModel:
    """Boost ``rounds`` trees on ``x``, each row starting from the base's log-odds.

    Class weights shift the weighted loss's log-odds by ``log(scale_pos_weight)``:
    the trees start from ``base + shift`` and the model takes the shift out again.
    With ``valid``, training stops 50 rounds after the last gain in its AUC.
    """
    shift = math.log(params["scale_pos_weight"])

    def init(rows: np.ndarray) -> np.ndarray | None:
        return None if base is None else base.logit(rows) + shift

    data = lgb.Dataset(x, y, init_score=init(x), feature_name=card.columns, free_raw_data=False)
    sets: list[lgb.Dataset] = []
    stop: list[Callable[..., Any]] = []
    if valid is not None:
        sets = [lgb.Dataset(valid[0], valid[1], init_score=init(valid[0]), reference=data)]
        stop = [lgb.early_stopping(50, verbose=False)]
    booster = lgb.train(params, data, num_boost_round=rounds, valid_sets=sets, callbacks=stop)
    return LgbmRiskModel(booster, card, prior_shift=shift, base=base)


def _boost_on_dask(
    client: Any,
    params: dict[str, Any],
    card: ModelCard,
    x: np.ndarray,
    y: np.ndarray,
    base: LinearBase | None,
    rounds: int,
    *,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
) -> LgbmRiskModel:
    """:func:`_boost` on a Dask cluster (:func:`models.lgbm_dask.boost_dask`)."""
    booster, shift = boost_dask(client, params, card, x, y, base, rounds, valid=valid)
    return LgbmRiskModel(booster, card, prior_shift=shift, base=base)


def risk_thresholds(p: np.ndarray) -> dict[str, float]:
    """Decision thresholds of the policy: the medium and high risk bands (quantiles)."""
    if len(p) == 0:
        return {"medium": 0.5, "high": 0.8}
    return {"medium": float(np.quantile(p, 0.5)), "high": float(np.quantile(p, 0.8))}


def single_row_latency_us(model: RiskModel, x: np.ndarray, calls: int = 300) -> float:
    """Median microseconds of one single-row calibrated prediction."""
    import time

    row = x[:1]
    # The scorer's own single-row path where the model has one (LightGBM's fast API).
    one = getattr(model, "predict_row", None)
    call = (lambda: one(row[0])) if one is not None else (lambda: model.predict(row))
    times = []
    for _ in range(calls):
        t = time.perf_counter()
        call()
        times.append(time.perf_counter() - t)
    return float(np.median(times) * 1e6)
