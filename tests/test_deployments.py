"""Deployments on a real Prefect server with a real process worker.

``prefect server start`` runs as a subprocess on a free port with its own
PREFECT_HOME; ``microtune deploy`` registers ``build_features/hourly`` from
``prefect.yaml``; the worker that ``microtune worker`` would start runs the
flow runs as subprocesses. The test lets the deployment run on a schedule and
on demand, and fails one run on purpose.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pytest

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

DEPLOYMENT = "build_features/hourly"

#: Server and worker settings that make a test's schedule and polling quick.
FAST = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_MIN_RUNS": "1",
    "PREFECT_SERVER_SERVICES_SCHEDULER_MAX_RUNS": "1",
    "PREFECT_SERVER_UI_ENABLED": "false",
    "PREFECT_WORKER_QUERY_SECONDS": "1",
    "PREFECT_WORKER_PREFETCH_SECONDS": "5",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _stop(proc: subprocess.Popen[Any]) -> None:
    """Stop a process group this test started: SIGINT, then SIGKILL."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _wait_health(url: str, proc: subprocess.Popen[Any], log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, f"Prefect server did not start in {timeout:.0f} s"
        time.sleep(0.5)


@contextlib.contextmanager
def _pointed_at(url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Every Prefect client of this process, and the processes it starts, on ``url``."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    for k, v in FAST.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MICROTUNE_PREFECT_API_URL", url)
    monkeypatch.setenv("PREFECT_API_URL", url)
    # Prefect read its settings when first imported (maybe under the session's
    # test harness): point this process's clients at this server explicitly.
    with temporary_settings(updates={PREFECT_API_URL: url}):
        yield url


@pytest.fixture
def prefect_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A ``prefect server start`` subprocess; every Prefect client here points at it."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = os.environ | FAST | {"PREFECT_HOME": str(tmp_path / "prefect-server")}
    env.pop("PREFECT_API_URL", None)
    log = (tmp_path / "server.log").open("w")
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    server = subprocess.Popen(
        [*cmd, "--port", str(port), "--no-ui"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        _wait_health(url, server, tmp_path / "server.log")
        with _pointed_at(url, monkeypatch):
            yield url
    finally:
        _stop(server)
        log.close()


@contextlib.contextmanager
def _worker(
    settings: Settings, tmp_path: Path, extra: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[Any]]:
    """The process worker of ``microtune worker``, with ``settings`` in its environment."""
    from flows.deploy import worker_command

    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        worker_command(settings, "test-worker"),
        env=os.environ | settings.environment() | (extra or {}),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield proc
    finally:
        _stop(proc)
        log.close()


@pytest.fixture
def worker(prefect_api: str, home: Settings, tmp_path: Path) -> Iterator[subprocess.Popen[Any]]:
    with _worker(home.override(prefect_api_url=prefect_api), tmp_path) as proc:
        yield proc


def _offline(home: Settings) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in sorted(home.paths.offline.rglob("*.parquet"))}


def _runs(client: Any, deployment_id: Any) -> list[Any]:
    """Runs of the deployment, oldest expected start first (explicit limit and sort:
    Prefect 3.8.8's client sends null for them, which the pinned FastAPI refuses)."""
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.client.schemas.sorting import FlowRunSort

    return list(
        client.read_flow_runs(
            deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            sort=FlowRunSort.EXPECTED_START_TIME_ASC,
            limit=50,
            offset=0,
        )
    )


def _started(run: Any) -> bool:
    return bool(run.state and (run.state.is_pending() or run.state.is_running() or _final(run)))


def _final(run: Any) -> bool:
    return bool(run.state and run.state.is_final())


def _wait_run(deployment_id: Any, ok: Callable[[Any], bool], timeout: float) -> Any:
    """The deployment's oldest run, once ``ok`` holds for it."""
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline:
            runs = _runs(client, deployment_id)
            if runs and ok(runs[0]):
                return runs[0]
            time.sleep(0.5)
    raise AssertionError(f"no run of the deployment got there within {timeout:.0f} s")


def test_deployment_runs_on_schedule_on_demand_and_fails_visibly(
    prefect_api: str, home: Settings, worker: subprocess.Popen[Any], tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import ConcurrencyLimitStrategy
    from prefect.client.schemas.schedules import IntervalSchedule
    from prefect.deployments import run_deployment

    from events.ingest import expand_paths, ingest_files
    from events.raw_store import RawEventStore
    from events.synth import GeneratorConfig, write_event_log
    from flows.deploy import register

    # Yesterday's events (all in the past), already in the raw store.
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    log = tmp_path / "log"
    write_event_log(GeneratorConfig(sessions=300, days=1, seed=11, start=yesterday), log)
    ingest_files(
        expand_paths([log / "events"]), RawEventStore(home.paths.raw_events), home.paths.quarantine
    )

    assert register(home, only=[DEPLOYMENT]) == [DEPLOYMENT]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(DEPLOYMENT)
        # What prefect.yaml says, as the server holds it.
        assert deployment.parameters == {"hours": 24}
        assert [s.schedule.cron for s in deployment.schedules] == ["5 * * * *"]
        assert deployment.work_pool_name == "microtune"
        assert deployment.global_concurrency_limit is not None
        assert deployment.global_concurrency_limit.limit == 1
        assert deployment.concurrency_options is not None
        assert deployment.concurrency_options.collision_strategy == ConcurrencyLimitStrategy.ENQUEUE
        # On schedule: an extra 2-second interval, so the test need not wait for :05.
        (every_2s,) = client.create_deployment_schedules(
            deployment.id,
            [(IntervalSchedule(interval=timedelta(seconds=2)), True)],
            max_scheduled_runs=1,
        )

    # Once the worker has taken the schedule's first run, remove the schedule (its
    # runs that have not started go with it): no more runs queue up behind.
    # The worker starts cold, then starts the run's own process: both import Prefect,
    # which takes tens of seconds on a loaded 2-core machine (the suite runs in parallel).
    first = _wait_run(deployment.id, lambda run: _started(run), timeout=120)
    with get_client(sync_client=True) as client:
        client.delete_deployment_schedule(deployment.id, every_2s.id)
    scheduled = _wait_run(deployment.id, lambda run: run.id == first.id and _final(run), 60)
    assert scheduled.state.is_completed(), scheduled.state
    window = f"{yesterday:%Y-%m-%d}..{date.today() + timedelta(days=1):%Y-%m-%d}"
    assert scheduled.name == f"build-features-{window}-last-24h"
    built = _offline(home)
    assert home.paths.session_features / f"{yesterday:%Y-%m-%d}.parquet" in built
    assert (home.paths.feast / "online.db").exists()

    with get_client(sync_client=True) as client:
        for run in _runs(client, deployment.id):  # one that waited for the concurrency slot
            if run.id != scheduled.id and run.state and run.state.is_scheduled():
                client.delete_flow_run(run.id)

    # A failing run: visible as failed, with its error, and nothing written.
    missing = tmp_path / "no-such-inbox"
    failed = run_deployment(DEPLOYMENT, parameters={"inbox": [str(missing)]}, timeout=60)
    assert failed.state is not None and failed.state.is_failed(), failed.state
    assert "no such file or directory" in (failed.state.message or "")
    assert _offline(home) == built

    # On demand, with parameters of the caller's choosing.
    start = datetime.combine(yesterday, datetime.min.time(), UTC)
    end = start + timedelta(days=1)
    ok = run_deployment(
        DEPLOYMENT,
        # hours=None: the deployment's default (hours=24) would win over start and end.
        parameters={"start": start.isoformat(), "end": end.isoformat(), "hours": None},
        timeout=60,
    )
    assert ok.state is not None and ok.state.is_completed(), ok.state
    assert ok.name == f"build-features-{start:%Y-%m-%dT%H}..{end:%Y-%m-%dT%H}"
    after = _offline(home)
    assert after.keys() == built.keys()
    rewritten = {p for p in built if after[p] > built[p]}
    assert rewritten == {p for p in built if p.stem == f"{yesterday:%Y-%m-%d}"}


def test_worker_line_and_deployment_names() -> None:
    from flows.deploy import deployment_names, load_config, pool_name

    cfg = load_config()
    assert pool_name(cfg) == "microtune"
    names = deployment_names(cfg)
    assert {"build_features/hourly", "retrain/daily", "retrain/on-demand"} <= set(names)
    assert {"check_drift/every-4h", "rollback/on-demand"} <= set(names)
    assert "analyze_experiment/daily" in names and "segment_sessions/weekly" in names
    for d in cfg["deployments"]:
        assert d["concurrency_limit"] == {"limit": 1, "collision_strategy": "ENQUEUE"}
        assert re.fullmatch(r"flows/\w+\.py:\w+", d["entrypoint"])


@pytest.mark.production
def test_production_prefect_server_on_postgresql_runs_a_deployment_with_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``microtune server`` on the production profile keeps Prefect's state in PostgreSQL
    (a database of the test's own, created by the server), and a worker runs a deployment."""
    import psycopg
    from prefect.deployments import run_deployment

    from flows.deploy import REPO, register
    from flows.server import JSON_LOGS

    name = f"mt_prefect_{uuid4().hex[:10]}"
    home = Settings(
        home=tmp_path / "home",
        profile="production",
        project=f"mt_{uuid4().hex[:10]}",
        prefect_database_url=f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}",
    )
    port, url = _free_port(), ""
    env = os.environ | FAST | home.environment()
    for k in ("PREFECT_API_URL", "MICROTUNE_PREFECT_API_URL"):
        env.pop(k, None)
    log = tmp_path / "server.log"
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "server", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api"
        _wait_health(url, server, log, timeout=120)
        # The worker as `microtune worker --json-logs` starts it.
        worker = _worker(home.override(prefect_api_url=url), tmp_path, JSON_LOGS)
        with _pointed_at(url, monkeypatch), worker:
            assert register(home, only=["apply_retention/daily"]) == ["apply_retention/daily"]
            run = run_deployment("apply_retention/daily", timeout=180)
            assert run.state is not None and run.state.is_completed(), run.state
        lines = (tmp_path / "worker.log").read_text().splitlines()
        logged = [json.loads(line) for line in lines if line.startswith("{")]
        assert any("retention removed" in str(r.get("message", r.get("msg"))) for r in logged)
        assert all(line.startswith("{") for line in lines if "retention removed" in line)
        with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{name}") as db:
            rows = db.execute("SELECT name, state_type FROM flow_run").fetchall()
            assert ("apply-retention", "COMPLETED") in rows
            pools = db.execute("SELECT name FROM work_pool").fetchall()
            assert ("microtune",) in pools
    finally:
        _stop(server)
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as db:
            db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
