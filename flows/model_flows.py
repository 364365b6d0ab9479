"""Prefect flows ``train``, ``promote``, ``rollback`` and ``retrain``.

Each task reads its inputs from the home's stores, calls a pure core
(:func:`models.train.fit_models`, :func:`models.gate.decide`) and writes what
it produced: MLflow runs and aliases, plots, reports and checkpoints.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from core.cluster import dask_client
from core.errors import NotReadyError
from core.settings import Settings
from flows.context import flow_settings
from flows.locks import MODELS, exclusive
from flows.retry import MODEL_RETRIES
from models import registry
from models.dataset import load_ideal, load_oracle, service_columns, time_split, training_frame
from models.gate import PromotionReport, decide, drift_quality
from models.lgbm import single_row_latency_us
from models.plots import plot_calibration, plot_importance
from models.train import SERVICE, Fitted, TrainReport, fit_models, xy
from monitoring.verdict import read_latest
from stores.feature_store import open_store


@task(name="train-models", cache_policy=NO_CACHE, **MODEL_RETRIES)
def train_task(settings: Settings, seed: int, every_n: int, oracle: str | None) -> TrainReport:
    """Read the training frame, fit both models, then register them, plot and report."""
    store = open_store(settings)
    columns = service_columns(store, SERVICE).columns
    frame = training_frame(settings, store, every_n)
    truth = load_oracle(settings, Path(oracle) if oracle else None)
    ideal = load_ideal(settings, Path(oracle).with_name("ideal.parquet") if oracle else None)
    # A training set this large boosts on the Dask cluster, when there is one.
    on_dask = settings.dask.address is not None and len(frame) >= settings.dask.train_min_rows
    with dask_client(settings) if on_dask else contextlib.nullcontext() as client:
        fitted = fit_models(frame, columns, seed=seed, oracle=truth, ideal=ideal, client=client)
    return save_training(settings, fitted)


def save_training(settings: Settings, fitted: Fitted) -> TrainReport:
    """Plots and ``report.json`` under ``reports/training/<UTC time>/``; both models in
    MLflow as challengers; river's checkpoint for the scorer's live learner."""
    folder = settings.paths.reports / "training" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    title = "LightGBM hold-out calibration"
    plots = [
        plot_calibration(fitted.test_y, fitted.test_p, folder / "calibration.png", title),
        plot_importance(fitted.lgbm, fitted.test_x, folder / "importance.png"),
    ]
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    lg = registry.register(
        client,
        registry.LGBM,
        fitted.lgbm,
        metrics=fitted.lgbm_metrics,
        artifacts=plots,
        run_name="train-lightgbm",
        params=fitted.lgbm.card.params,
    )
    rv = registry.register(
        client,
        registry.RIVER,
        fitted.river,
        metrics=fitted.river_metrics,
        artifacts=[],
        run_name="train-river",
        params={"model": "logreg"},
    )
    fitted.river.checkpoint(settings.paths.river_checkpoint)
    report = TrainReport(
        rows=fitted.rows,
        lgbm=fitted.lgbm_metrics,
        river=fitted.river_metrics,
        versions={"lgbm": lg.version, "river": rv.version},
        window=fitted.window,
        oracle_auc=fitted.oracle_auc,
        plots=[str(p) for p in plots],
        ideal_auc=fitted.ideal_auc,
    )
    (folder / "report.json").write_text(json.dumps(asdict(report), indent=2, default=str))
    return report


@flow(name="train", flow_run_name="train-seed-{seed}")
@exclusive(MODELS)
def train(seed: int = 0, every_n: int = 10, oracle: str | None = None) -> dict[str, Any]:
    """Train LightGBM and river on the point-in-time training set; register challengers."""
    report = train_task(flow_settings(), seed, every_n, oracle)
    rows = [
        {
            "model": "lightgbm",
            "version": report.versions["lgbm"],
            **{k: round(v, 4) for k, v in report.lgbm.items() if k.startswith("test_")},
        },
        {
            "model": "river",
            "version": report.versions["river"],
            **{k: round(v, 4) for k, v in report.river.items()},
        },
    ]
    create_table_artifact(key="train-metrics", table=rows, description="Hold-out metrics")
    get_run_logger().info("registered challengers %s", report.versions)
    return asdict(report)


@task(name="promotion-gate", cache_policy=NO_CACHE, **MODEL_RETRIES)
def gate_task(settings: Settings) -> PromotionReport:
    """Gate each model family's challenger against its champion on the newest hold-out day.

    A challenger that passes every check becomes the champion; each decision is
    logged to MLflow's promotion experiment and tagged on the challenger.
    """
    store = open_store(settings)
    columns = service_columns(store, SERVICE).columns
    split = time_split(training_frame(settings, store))
    x, y = xy(split.test, columns)
    window = split.window()
    verdict = read_latest(settings.paths.drift_reports)
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
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
        decision = decide(
            challenger,
            champion,
            x,
            y,
            settings.gate,
            latency_us=single_row_latency_us(challenger, x),
            drift_verdict=drift_quality(verdict, challenger.card.training_window),
        )
        registry.record_gate(client, name, challenger_v, champion_v, decision.as_dict(), window)
        report.decisions[name] = decision
        report.challengers[name] = challenger_v
        if decision.promote:
            registry.set_champion(client, name, challenger_v)
            report.promoted[name] = challenger_v
    return report


@flow(name="promote", flow_run_name="promote")
@exclusive(MODELS)
def promote() -> dict[str, Any]:
    """Gate each challenger against its champion; move the champion alias if it passes."""
    report = gate_task(flow_settings())
    for name, decision in report.decisions.items():
        version = report.challengers[name]
        create_markdown_artifact(
            key=f"gate-{name}",
            markdown=decision.markdown(name, version),
            description=f"Promotion decision for {name}",
        )
    return {
        "promoted": report.promoted,
        "decisions": {k: v.as_dict() for k, v in report.decisions.items()},
    }


@flow(name="rollback", flow_run_name="rollback-{model}")
@exclusive(MODELS)
def rollback(model: str = registry.LGBM) -> dict[str, str]:
    """Restore the previous champion of ``model``."""
    settings = flow_settings()
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    replaced, restored = registry.rollback(client, model)
    create_markdown_artifact(
        key="rollback", markdown=f"# {model}: champion v{replaced} -> v{restored} (rollback)"
    )
    return {"replaced": replaced, "restored": restored}


@flow(name="retrain", flow_run_name="retrain-seed-{seed}")
def retrain(seed: int = 0, reason: str = "scheduled") -> dict[str, Any]:
    """Train new challengers, then gate them: ``train`` and ``promote`` as subflows.

    ``check_drift`` calls it when a verdict fails on drift or performance, and
    the daily schedule calls it with ``reason="scheduled"``. A plain flow
    rather than a Prefect automation: it runs the same way on the temporary
    local server, on a deployment and under the test harness.
    """
    get_run_logger().info("retraining (%s)", reason)
    trained = train(seed=seed)
    gated = promote()
    create_markdown_artifact(
        key="retrain",
        markdown=f"# Retrain\n\nReason: {reason}\n\nChallengers {trained['versions']}; "
        f"promoted {gated['promoted'] or 'none'}\n",
    )
    return {"reason": reason, "versions": trained["versions"], **gated}
