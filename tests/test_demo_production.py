"""``microtune demo --profile production``: the whole cycle on Redis and PostgreSQL.

A smaller world than ``make demo`` (5 days, 3,000 sessions, 200 live
visitors), with the steps unchanged: build, train, promote, drift, the scorer
on Redis with simulated visitors over HTTP, the experiment, off-policy values
and the uplift model. The Feast project and MLflow's database are the test's
own, removed afterwards.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import pytest
from rich.console import Console
from test_production_profile import _drop_project, _redis_client, _require_servers, project_keys

from core.settings import Settings

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def production(tmp_path: Path, mlflow_database: str) -> Iterator[Settings]:
    settings = Settings(
        home=tmp_path / "home",
        profile="production",
        project=f"mt_{uuid4().hex[:10]}",
        mlflow_tracking_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/{mlflow_database}",
        gate={"max_ece": 0.15},  # a smaller world than the demo's: a wider calibration bound
    )
    settings.paths.ensure()
    _require_servers(settings)
    try:
        yield settings
    finally:
        _drop_project(settings)


def test_the_demo_runs_on_the_production_profile(
    production: Settings,
    mlflow_database: str,
    prefect_server: None,
) -> None:
    import psycopg

    from cli.demo import run_demo
    from flows.context import use_settings

    out = io.StringIO()
    with use_settings(production):
        figures = run_demo(
            production,
            sessions=3_000,
            days=5,
            seed=7,
            bad_rate=0.01,
            console=Console(file=out, width=120),
            visitors=200,
        )
    summary = out.getvalue()
    print(summary[-3000:])  # shown when the test fails
    # It ends with how to start the scorer on this home and where its demo shop is.
    assert f"MICROTUNE_HOME={production.home} " in summary and " serve" in summary
    assert "http://127.0.0.1:8000/demo/" in summary
    assert figures["accepted"] > 0 and figures["rejected"]
    assert figures["promote"]["promoted"], figures["promote"]
    live = figures["live"]
    assert live["sessions"] == 200 and live["scores"] >= 200
    assert live["degraded"] < 0.2 * 200  # sessions without consent: no stored features
    assert {a["name"] for a in figures["experiment"]["arms"]} >= {"control", "learner"}
    # MLflow's runs and registry are in PostgreSQL, the online features in Redis.
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{mlflow_database}") as db:
        runs = db.execute("SELECT count(*) FROM runs").fetchone()
        aliases = db.execute("SELECT name, alias FROM registered_model_aliases").fetchall()
    assert runs is not None and runs[0] >= 2
    assert ("abandonment-lgbm", "champion") in aliases
    client = _redis_client(production)
    try:
        assert len(project_keys(client, production.project)) > 1_000
    finally:
        client.close()
    assert not (production.home / "mlflow" / "mlflow.db").exists()
    assert not (production.home / "feast" / "online.db").exists()
