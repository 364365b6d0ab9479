"""Training, as a pure function: a labelled frame in, fitted models and their figures out.

:func:`fit_models` splits the point-in-time training frame by time, trains
LightGBM (early stopping on the validation day, then refitted on both days)
and river (replayed over every row with delayed labels), scores both on the
held-out day, and compares LightGBM with the generator's oracle and ideal
risk when they are known. It reads no store and writes nothing: the ``train`` flow loads the
frame (:func:`models.dataset.training_frame`), then registers the models in
MLflow and writes the plots and the report.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> t0 = pd.Timestamp("2026-06-01", tz="UTC")
>>> n = 3000
>>> x = rng.normal(size=n)
>>> frame = pd.DataFrame({
...     "session_id": [f"s{i // 3}" for i in range(n)],
...     "event_timestamp": t0 + pd.to_timedelta(np.arange(n) * 4 * 86_400 / n, unit="s"),
...     "x": x, "label": (rng.random(n) < 1 / (1 + np.exp(-2 * x))).astype(int)})
>>> frame["session_end"] = frame["event_timestamp"] + pd.Timedelta(minutes=30)
>>> fitted = fit_models(frame, ["x"], seed=0)
>>> sorted(fitted.rows), fitted.lgbm_metrics["test_roc_auc"] > 0.7
(['test', 'train', 'valid'], True)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from core.errors import NotReadyError
from feature_repo.features import ABANDONMENT_SERVICE
from models.card import ModelCard
from models.dataset import LABEL, Split, micros_of, time_split
from models.lgbm import LgbmRiskModel, single_row_latency_us, train_lgbm
from models.metrics import roc_auc, score
from models.online import RiverRiskModel, replay

#: The feature service the risk models read.
SERVICE = ABANDONMENT_SERVICE


@dataclass
class TrainReport:
    """What a training run registered: rows, metrics, versions, window and plots."""

    rows: dict[str, int]
    lgbm: dict[str, float]
    river: dict[str, float]
    versions: dict[str, str]
    window: dict[str, Any]
    oracle_auc: float | None = None
    plots: list[str] = field(default_factory=list)
    ideal_auc: float | None = None


@dataclass
class Fitted:
    """Both models, fitted on one split, with their hold-out figures."""

    lgbm: LgbmRiskModel
    river: RiverRiskModel
    lgbm_metrics: dict[str, float]
    river_metrics: dict[str, float]
    window: dict[str, Any]
    rows: dict[str, int]
    oracle_auc: float | None
    #: The ideal risk's AUC on the same rows (:mod:`events.synth.ideal`), when known.
    ideal_auc: float | None
    #: The hold-out rows, their labels and LightGBM's risk on them (for the plots).
    test_x: np.ndarray
    test_y: np.ndarray
    test_p: np.ndarray


def xy(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Feature matrix (in ``columns`` order) and labels of a frame."""
    return df[columns].to_numpy(np.float64), df[LABEL].to_numpy(np.int64)


def oracle_auc(oracle: pd.DataFrame | None, rows: pd.DataFrame, y: np.ndarray) -> float | None:
    """The generator's true risk scored on ``rows`` (None without a complete oracle)."""
    if oracle is None:
        return None
    p = rows[["session_id"]].merge(oracle, on="session_id", how="left")["p_abandon"]
    if p.isna().any():
        return None
    return roc_auc(y, p.to_numpy(float))


def ideal_auc(ideal: pd.DataFrame | None, rows: pd.DataFrame, y: np.ndarray) -> float | None:
    """The ideal risk scored on ``rows`` (None unless every row's decision point is in it).

    Rows are matched on ``session_id`` and the decision event's time.
    """
    if ideal is None:
        return None
    keys = pd.DataFrame(
        {"session_id": rows["session_id"].to_numpy(), "ts_us": micros_of(rows["event_timestamp"])}
    )
    p = keys.merge(ideal, on=["session_id", "ts_us"], how="left")["ideal_risk"]
    if p.isna().any():
        return None
    return roc_auc(y, p.to_numpy(float))


def fit_models(
    frame: pd.DataFrame,
    columns: list[str],
    *,
    seed: int = 0,
    oracle: pd.DataFrame | None = None,
    ideal: pd.DataFrame | None = None,
    client: Any = None,
) -> Fitted:
    """Train LightGBM and river on a time split of ``frame``; score both on the hold-out.

    With a Dask ``client``, LightGBM boosts on its cluster (``lightgbm.dask``).
    """
    split = time_split(frame)
    if min(len(split.train), len(split.valid), len(split.test)) == 0:
        raise NotReadyError(
            "the time split left a window empty: at least 3 days of events "
            "are needed (train, validate, hold out)"
        )
    window = split.window()
    x_tr, y_tr = xy(split.train, columns)
    x_va, y_va = xy(split.valid, columns)
    x_te, y_te = xy(split.test, columns)
    if len(np.unique(y_tr)) < 2:
        raise NotReadyError(
            "the training window holds only one outcome (every labelled session was "
            "abandoned, or every one purchased); ingest more days and build features again"
        )
    card = ModelCard("lightgbm", SERVICE, columns, dict(window))
    result = train_lgbm(
        x_tr,
        y_tr,
        x_va,
        y_va,
        card,
        seed=seed,
        groups=split.train["session_id"].to_numpy(),
        valid_groups=split.valid["session_id"].to_numpy(),
        client=client,
    )
    if result.metrics["refit"]:  # the model returned learnt from both windows
        card.training_window["fit"] = [window["train"][0], window["valid"][1]]
    p_te = result.model.predict(x_te)
    lgbm_metrics = {
        **result.metrics,
        **score(y_te, p_te).as_dict("test_"),
        "latency_us": single_row_latency_us(result.model, x_te),
    }
    truth = oracle_auc(oracle, split.test, y_te)
    if truth is not None:
        lgbm_metrics["oracle_auc"] = truth
        lgbm_metrics["oracle_gap"] = truth - lgbm_metrics["test_roc_auc"]
    limit = ideal_auc(ideal, split.test, y_te)
    if limit is not None:
        lgbm_metrics["ideal_auc"] = limit
        lgbm_metrics["ideal_gap"] = limit - lgbm_metrics["test_roc_auc"]
    card.metrics = {k: lgbm_metrics[k] for k in ("test_roc_auc", "test_ece", "test_log_loss")}
    river, river_metrics = _fit_river(columns, window, split)
    return Fitted(
        lgbm=result.model,
        river=river,
        lgbm_metrics=lgbm_metrics,
        river_metrics=river_metrics,
        window=card.training_window,
        rows={"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        oracle_auc=truth,
        ideal_auc=limit,
        test_x=x_te,
        test_y=y_te,
        test_p=p_te,
    )


def _fit_river(
    columns: list[str], window: dict[str, Any], split: Split
) -> tuple[RiverRiskModel, dict[str, float]]:
    frame = pd.concat([split.train, split.valid, split.test]).sort_values("event_timestamp")
    x, y = xy(frame, columns)
    decided = frame["event_timestamp"].astype("int64").to_numpy() / 1e9
    labelled = frame["session_end"].astype("int64").to_numpy() / 1e9
    model = RiverRiskModel(ModelCard("river", SERVICE, columns, window))
    result = replay(model, x, y, decided, labelled, frame["session_id"].to_numpy())
    test_mask = (frame["event_timestamp"] >= split.test_start).to_numpy()
    metrics = {
        "progressive_roc_auc": roc_auc(y, result.predictions),
        "test_progressive_roc_auc": roc_auc(y[test_mask], result.predictions[test_mask]),
        "adwin_drifts": float(len(result.drift_at)),
        "learned": float(model.learned),
    }
    model.card.metrics = metrics
    return model, metrics
