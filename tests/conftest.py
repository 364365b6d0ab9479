"""Shared fixtures: an isolated home per test, and a tiny event-log factory.

Every test that touches state gets its own ``MICROTUNE_HOME`` (a temp dir), so
tests never see each other's stores.
"""

from __future__ import annotations

import itertools
import os
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.settings import Settings
from flows.context import use_settings

T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
#: A "now" comfortably after every tiny log, for validation.
LATER = datetime(2026, 6, 10, tzinfo=UTC)
_ids = itertools.count()


def event(session: str = "s1", at: float = 0.0, event_type: str = "page_view", **kw: Any) -> dict:
    """One valid event ``at`` seconds after T0; keyword arguments override fields."""
    row: dict[str, Any] = {
        "event_id": kw.pop("event_id", f"e{next(_ids):06d}"),
        "session_id": session,
        "user_id": kw.pop("user_id", "u1"),
        "ts": (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z"),
        "event_type": event_type,
        "page_type": kw.pop("page_type", "product"),
        "device": kw.pop("device", "desktop"),
        "browser": kw.pop("browser", "firefox"),
        "consent": kw.pop("consent", True),
    }
    row.update(kw)
    return row


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Settings]:
    """Settings on a fresh, isolated home directory; flows run on them.

    A test that needs other settings derives them (``home.override(...)``) and
    runs its flows inside ``use_settings``; nothing goes through the environment.
    """
    s = Settings(home=tmp_path / "home", profile="embedded", project="microtune")
    s.paths.ensure()
    with use_settings(s):
        yield s


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("MICROTUNE_HOME", str(Path(config.rootpath) / ".microtune-test"))
    # The test machine has no internet: keep Prefect's server from phoning home.
    os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    os.environ["DO_NOT_TRACK"] = "1"


@pytest.fixture(scope="session")
def prefect_server() -> Iterator[None]:
    """One real Prefect server (Prefect's test harness) for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated event log (jsonl, with bad rows and duplicates), shared by slow tests."""
    from events.synth import GeneratorConfig, write_event_log

    out = tmp_path_factory.mktemp("log")
    write_event_log(GeneratorConfig(sessions=600, days=2, seed=5, bad_rate=0.02), out)
    return out


@pytest.fixture(scope="session")
def model_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four days of generated events: enough for a train / validate / hold-out split."""
    from events.synth import GeneratorConfig, write_event_log

    out = tmp_path_factory.mktemp("model-log")
    write_event_log(GeneratorConfig(sessions=2500, days=4, seed=21), out)
    return out


@pytest.fixture(scope="session")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    """One trained home and one real scorer over HTTP, shared by the scorer's tests.

    Each test uses its own session ids, so tests do not see each other's sessions.
    """
    from serving_harness import TOKEN, Server, trained_home

    from serving.policy_doc import DEFAULT_POLICY

    root = tmp_path_factory.mktemp("serving")
    settings = Settings(
        home=root / "home",
        profile="embedded",
        project="microtune",
        # ~250 cart sessions a day: see test_model_flows.py for the wider ECE bound.
        gate={"max_ece": 0.15},
        serve={
            "admin_token": TOKEN,
            "model_poll_s": 0.5,
            "policy": root / "policy.yaml",
            # The suite is one client sending thousands of requests; the limits have
            # their own test (test_serving_limits.py).
            "rate_limit_score_per_min": 0,
            "rate_limit_events_per_min": 0,
            # The shops of test_cors.py and test_sdk_browser.py.
            "cors_origins": ["http://shop.test", "http://127.0.0.1:8799"],
        },
    )
    shutil.copy(DEFAULT_POLICY, root / "policy.yaml")
    trained_home(settings, root)
    with Server(settings) as server:
        yield settings, server.url


@pytest.fixture
def client(served: tuple[Settings, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1], timeout=30) as c:
        yield c


ADMIN_DB = "postgresql://postgres@127.0.0.1:5432/test"


@pytest.fixture
def mlflow_database() -> Iterator[str]:
    """A PostgreSQL database of the test's own for MLflow; dropped afterwards."""
    from uuid import uuid4

    import psycopg

    name = f"mt_mlflow_{uuid4().hex[:10]}"
    with psycopg.connect(ADMIN_DB, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(ADMIN_DB, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's chromium, driven by Playwright (its own browser download needs a network)."""
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    if exe is None:
        pytest.fail("Debian's chromium is needed: apt-get install chromium", pytrace=False)
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        yield b
        b.close()
