"""Prefect flows ``train`` and ``promote``: thin wiring around :mod:`models.train`.

Import after ``Settings.export_env()`` (the CLI does), so Prefect and MLflow
keep their state under the home.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from flows.feaststore import open_store
from flows.locks import MODELS, exclusive
from flows.retry import MODEL_RETRIES
from flows.settings import get_settings
from models import registry
from models.train import PromotionReport, TrainReport, promote_models, train_models


@task(name="train-models", cache_policy=NO_CACHE, **MODEL_RETRIES)
def train_task(seed: int, every_n: int, oracle: str | None) -> TrainReport:
    settings = get_settings()
    return train_models(
        settings,
        open_store(settings),
        seed=seed,
        every_n=every_n,
        oracle=Path(oracle) if oracle else None,
    )


@flow(name="train", flow_run_name="train-seed-{seed}")
@exclusive(MODELS)
def train(seed: int = 0, every_n: int = 10, oracle: str | None = None) -> dict[str, Any]:
    """Train LightGBM and river on the point-in-time training set; register challengers."""
    report = train_task(seed, every_n, oracle)
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
def gate_task() -> PromotionReport:
    settings = get_settings()
    return promote_models(settings, open_store(settings))


@flow(name="promote", flow_run_name="promote")
@exclusive(MODELS)
def promote() -> dict[str, Any]:
    """Gate each challenger against its champion; move the champion alias if it passes."""
    report = gate_task()
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
    client = registry.configure(get_settings().tracking_uri, get_settings().artifact_root)
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
