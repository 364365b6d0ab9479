"""Training and promotion, as plain functions the Prefect flows call.

``train_models`` builds the point-in-time training set through the feature
service, trains LightGBM and river on the same time split, compares them with
the generator's oracle when one is known, logs everything to MLflow and
registers both as challengers. ``promote_models`` runs the gate on the most
recent hold-out window and moves the champion alias when it passes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from flows.build import read_offline
from flows.errors import NotReadyError
from flows.ingest import RawEventStore
from flows.settings import Settings
from models import registry
from models.card import ModelCard
from models.dataset import LABEL, Split, decision_points, historical_features, time_split
from models.gate import GateConfig, GateDecision, decide, latest_drift_verdict
from models.lgbm import (
    plot_calibration,
    plot_importance,
    single_row_latency_us,
    train_lgbm,
)
from models.metrics import roc_auc, score
from models.online import RiverRiskModel, replay

if TYPE_CHECKING:
    from feast import FeatureStore

SERVICE = "abandonment_v1"
MIN_ROWS = 200


@dataclass
class TrainReport:
    rows: dict[str, int]
    lgbm: dict[str, float]
    river: dict[str, float]
    versions: dict[str, str]
    window: dict[str, Any]
    oracle_auc: float | None = None
    plots: list[str] = field(default_factory=list)


def load_oracle(settings: Settings, explicit: Path | None = None) -> pd.DataFrame | None:
    """Ground truth of generated sessions, if any generated log lives under the home."""
    paths = (
        [explicit] if explicit else sorted((settings.home / "generated").glob("*/oracle.parquet"))
    )
    frames = [
        pq.read_table(p, columns=["session_id", "p_abandon"]).to_pandas()
        for p in paths
        if p is not None and p.exists()
    ]
    return pd.concat(frames).drop_duplicates("session_id") if frames else None


def training_frame(settings: Settings, store: FeatureStore, every_n: int = 10) -> pd.DataFrame:
    """Labelled decision points with their point-in-time features."""
    raw = RawEventStore(settings.paths.raw_events)
    span = raw.time_range()
    outcomes = read_offline(settings.paths.session_outcomes)
    if span is None or outcomes is None:
        raise NotReadyError("no features built yet: run `microtune features build` first")
    events = raw.read(span[0], span[1] + pd.Timedelta(seconds=1))
    points = decision_points(events, outcomes, every_n)
    if len(points) < MIN_ROWS:
        raise NotReadyError(
            f"only {len(points)} labelled decision points; at least {MIN_ROWS} are needed. "
            "Ingest more events (or wait for sessions to end) and build features again."
        )
    frame, _ = historical_features(store, points, SERVICE)
    return frame


def _xy(df: pd.DataFrame, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    return df[columns].to_numpy(np.float64), df[LABEL].to_numpy(np.int64)


def train_models(
    settings: Settings,
    store: FeatureStore,
    *,
    seed: int = 0,
    every_n: int = 10,
    oracle: Path | None = None,
) -> TrainReport:
    """Train LightGBM and river on a time split and register both as challengers."""
    from models.dataset import service_columns

    columns = service_columns(store, SERVICE).columns
    frame = training_frame(settings, store, every_n)
    split = time_split(frame)
    if min(len(split.train), len(split.valid), len(split.test)) == 0:
        raise NotReadyError(
            "the time split left a window empty: at least 3 days of events "
            "are needed (train, validate, hold out)"
        )
    window = split.window()
    x_tr, y_tr = _xy(split.train, columns)
    x_va, y_va = _xy(split.valid, columns)
    x_te, y_te = _xy(split.test, columns)

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
    )
    if result.metrics["refit"]:  # the model returned learnt from both windows
        card.training_window["fit"] = [window["train"][0], window["valid"][1]]
    p_te = result.model.predict(x_te)
    lgbm_metrics = {
        **result.metrics,
        **score(y_te, p_te).as_dict("test_"),
        "latency_us": single_row_latency_us(result.model, x_te),
    }
    oracle_auc = _oracle_auc(load_oracle(settings, oracle), split.test, y_te)
    if oracle_auc is not None:
        lgbm_metrics["oracle_auc"] = oracle_auc
        lgbm_metrics["oracle_gap"] = oracle_auc - lgbm_metrics["test_roc_auc"]
    card.metrics = {k: lgbm_metrics[k] for k in ("test_roc_auc", "test_ece", "test_log_loss")}

    river_model, river_metrics = _train_river(columns, window, split)
    report_dir = settings.paths.reports / "training" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    report_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_calibration(
            y_te, p_te, report_dir / "calibration.png", "LightGBM hold-out calibration"
        ),
        plot_importance(result.model, x_te, report_dir / "importance.png"),
    ]
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    lg = registry.register(
        client,
        registry.LGBM,
        result.model,
        metrics=lgbm_metrics,
        artifacts=plots,
        run_name="train-lightgbm",
        params=card.params,
    )
    rv = registry.register(
        client,
        registry.RIVER,
        river_model,
        metrics=river_metrics,
        artifacts=[],
        run_name="train-river",
        params={"model": "logreg"},
    )
    river_model.checkpoint(settings.paths.home / "models" / "river" / "checkpoint.pkl")
    report = TrainReport(
        rows={"train": len(split.train), "valid": len(split.valid), "test": len(split.test)},
        lgbm=lgbm_metrics,
        river=river_metrics,
        versions={"lgbm": lg.version, "river": rv.version},
        window=card.training_window,
        oracle_auc=oracle_auc,
        plots=[str(p) for p in plots],
    )
    (report_dir / "report.json").write_text(json.dumps(report.__dict__, indent=2, default=str))
    return report


def _oracle_auc(oracle: pd.DataFrame | None, test: pd.DataFrame, y: np.ndarray) -> float | None:
    if oracle is None:
        return None
    p = test[["session_id"]].merge(oracle, on="session_id", how="left")["p_abandon"]
    if p.isna().any():
        return None
    return roc_auc(y, p.to_numpy(float))


def _train_river(
    columns: list[str], window: dict[str, Any], split: Split
) -> tuple[RiverRiskModel, dict[str, float]]:
    frame = pd.concat([split.train, split.valid, split.test]).sort_values("event_timestamp")
    x, y = _xy(frame, columns)
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


# ---------------------------------------------------------------------------


@dataclass
class PromotionReport:
    decisions: dict[str, GateDecision]
    promoted: dict[str, str]
    challengers: dict[str, str] = field(default_factory=dict)


def holdout(
    settings: Settings, store: FeatureStore, every_n: int = 10
) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, Any]]:
    """The most recent hold-out window, for comparing challenger and champion."""
    from models.dataset import service_columns

    columns = service_columns(store, SERVICE).columns
    split = time_split(training_frame(settings, store, every_n))
    x, y = _xy(split.test, columns)
    return x, y, columns, split.window()


def promote_models(
    settings: Settings, store: FeatureStore, cfg: GateConfig | None = None
) -> PromotionReport:
    """Gate each model family's challenger against its champion; promote the ones that pass."""
    cfg = cfg or GateConfig(
        auc_tolerance=settings.gate_auc_tolerance,
        max_ece=settings.gate_max_ece,
        latency_budget_us=settings.gate_latency_budget_us,
    )
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    x, y, _, window = holdout(settings, store)
    report = PromotionReport({}, {})
    for name in (registry.LGBM, registry.RIVER):
        challenger_v = registry.version_of(client, name, registry.CHALLENGER)
        if challenger_v is None:
            raise NotReadyError(f"{name} has no challenger: run `microtune train` first")
        champion_v = registry.version_of(client, name, registry.CHAMPION)
        if champion_v == challenger_v:
            continue
        challenger = registry.load(name, challenger_v)
        champion = registry.load(name, champion_v) if champion_v else None
        latency = single_row_latency_us(challenger, x)
        verdict = latest_drift_verdict(settings.paths.reports, challenger.card.training_window)
        decision = decide(
            challenger, champion, x, y, cfg, latency_us=latency, drift_verdict=verdict
        )
        _record(client, name, challenger_v, champion_v, decision, window)
        report.decisions[name] = decision
        report.challengers[name] = challenger_v
        if decision.promote:
            registry.set_champion(client, name, challenger_v)
            report.promoted[name] = challenger_v
    return report


def _record(
    client: Any,
    name: str,
    challenger: str,
    champion: str | None,
    decision: GateDecision,
    window: dict[str, Any],
) -> None:
    import mlflow

    mlflow.set_experiment(registry.PROMOTION_EXPERIMENT)
    with mlflow.start_run(run_name=f"gate-{name}-v{challenger}"):
        mlflow.set_tags(
            {
                "model": name,
                "challenger": challenger,
                "champion": champion or "none",
                "decision": "promote" if decision.promote else "refuse",
            }
        )
        mlflow.log_metrics({f"challenger_{k}": v for k, v in decision.challenger.items()})
        mlflow.log_metrics({f"champion_{k}": v for k, v in decision.champion.items()})
        mlflow.log_dict({**decision.as_dict(), "window": window}, "decision.json")
    client.set_model_version_tag(
        name, challenger, "gate", "passed" if decision.promote else "; ".join(decision.reasons)
    )
