"""LightGBM on a Dask cluster (``lightgbm.dask``), for training sets too large for one fit.

:func:`boost_dask` does what :func:`models.lgbm._boost` does (the same
parameters, each row starting from the linear base's log-odds), with the rows
split over the cluster's workers: LightGBM's own distributed training, its
workers talking over the network. ``lightgbm.dask`` has no early stopping
(and its evaluation results come from one worker's share of the validation
rows): the trees are boosted to ``rounds``, the validation AUC is computed
here after each round, tree by tree, and the model keeps the rounds up to
the best one followed by 50 without a gain, as early stopping would have
chosen.

``models.lgbm.train_lgbm`` uses it when given a client
(``MICROTUNE_DASK__ADDRESS``, and a training set of at least
``MICROTUNE_DASK__TRAIN_MIN_ROWS`` rows); ``tests/test_dask.py`` checks the
model against the single-process fit of the same rows.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

from models.card import ModelCard

if TYPE_CHECKING:
    import lightgbm as lgb

    from models.linear_base import LinearBase

#: Rounds without a gain in validation AUC after which boosting would have stopped.
PATIENCE = 50


def boost_dask(
    client: Any,
    params: dict[str, Any],
    card: ModelCard,
    x: np.ndarray,
    y: np.ndarray,
    base: LinearBase | None,
    rounds: int,
    *,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[lgb.Booster, float]:
    """Boost on the cluster of ``client``; the booster and the class-weight shift of its
    log-odds (see the module)."""
    import dask.array as da
    from lightgbm import DaskLGBMClassifier

    shift = math.log(params["scale_pos_weight"])
    workers = max(1, len(client.scheduler_info()["workers"]))
    step = max(1, math.ceil(len(y) / workers))

    def rows(a: np.ndarray) -> Any:
        return da.from_array(a, chunks=(step, *a.shape[1:]))

    def init(a: np.ndarray) -> np.ndarray:
        return (base.logit(a) if base is not None else np.zeros(len(a))) + shift

    sklearn = {k: v for k, v in params.items() if k not in ("metric", "first_metric_only")}
    model = DaskLGBMClassifier(client=client, n_estimators=rounds, **sklearn)
    model.fit(rows(x), rows(y), init_score=rows(init(x)), feature_name=card.columns)
    booster = model.to_local().booster_
    if valid is not None:
        booster.best_iteration = best_round(valid_aucs(booster, *valid, init(valid[0])))
    return booster, shift


def valid_aucs(booster: lgb.Booster, x: np.ndarray, y: np.ndarray, start: np.ndarray) -> np.ndarray:
    """The validation AUC after each round (rows starting from ``start``'s log-odds),
    until :data:`PATIENCE` rounds have passed without a gain."""
    from sklearn.metrics import roc_auc_score

    z = start.astype(np.float64).copy()
    aucs: list[float] = []
    for i in range(booster.current_iteration()):
        z += booster.predict(x, start_iteration=i, num_iteration=1, raw_score=True)
        aucs.append(float(roc_auc_score(y, z)))
        if i - int(np.argmax(aucs)) >= PATIENCE:
            break
    return np.asarray(aucs)


def best_round(aucs: np.ndarray, patience: int = PATIENCE) -> int:
    """The round early stopping keeps: the best AUC before ``patience`` rounds without
    a gain (1-based).

    >>> best_round(np.array([0.6, 0.7, 0.65, 0.8, 0.79]), patience=2)
    4
    >>> best_round(np.array([0.6, 0.7, 0.69, 0.68, 0.9]), patience=2)
    2
    """
    best, best_at = -np.inf, 0
    for i, a in enumerate(aucs):
        if a > best:
            best, best_at = a, i
        elif i - best_at >= patience:
            break
    return best_at + 1
