"""The scorer on the production profile: Redis online store, Feast registry on PostgreSQL.

The test runs its own ``redis-server`` on a free port, so that it can stop it
for real: with the online store gone, a valid request still gets 200 and the
safe ``none`` decision, quickly. The Feast project is unique to the test and
removed afterwards. MLflow's tracking store and registry are on PostgreSQL
too, in a database the test creates and drops, so that the test's champion
never becomes anyone else's.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import numpy as np
import pytest
from serving_harness import Server, free_port
from test_production_profile import _drop_project, _require_servers

from core.settings import Settings
from models import registry

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.slow]


class RedisServer:
    """A private redis-server that the test can stop and start; no persistence unless
    ``persist`` names a folder for its append-only file (fsync on every write)."""

    def __init__(self, port: int, persist: Path | None = None) -> None:
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None
        self.disk = (
            ["--appendonly", "yes", "--appendfsync", "always", "--dir", str(persist)]
            if persist is not None
            else ["--appendonly", "no"]
        )

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            pytest.fail("redis-server is needed for the production scorer test", pytrace=False)
        self.proc = subprocess.Popen(
            [
                exe,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                *self.disk,
            ],
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        import redis

        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=20)
            self.proc = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture
def production_home(
    tmp_path: Path, redis_server: RedisServer, mlflow_database: str
) -> Iterator[Settings]:
    settings = Settings(
        home=tmp_path / "home",
        profile="production",
        project=f"mt_{uuid4().hex[:10]}",
        redis_url=f"127.0.0.1:{redis_server.port}",
        mlflow_tracking_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/{mlflow_database}",
    )
    settings.paths.ensure()
    _require_servers(settings)
    try:
        _apply_and_register(settings)
        yield settings
    finally:
        if redis_server.proc is None:
            redis_server.start()
        _drop_project(settings)


def _apply_and_register(settings: Settings) -> None:
    """Register the Feast repo and a small LightGBM champion trained on seeded data."""
    from models.card import ModelCard
    from models.dataset import service_columns
    from models.lgbm import train_lgbm
    from stores.feature_store import apply_definitions, ensure_uci, open_store

    ensure_uci(settings)
    store = open_store(settings)
    apply_definitions(settings, store)
    columns = service_columns(store, "abandonment_v1").columns
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3000, len(columns)))
    y = (x[:, columns.index("cart_adds")] + rng.normal(size=3000) > 0).astype(int)
    card = ModelCard("lightgbm", "abandonment_v1", columns, {"train": ["2026-01-01", "x"]})
    model = train_lgbm(x[:2000], y[:2000], x[2000:], y[2000:], card, seed=0).model
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    version = registry.register(
        client, registry.LGBM, model, metrics={}, artifacts=[], run_name="prod-scorer"
    ).version
    registry.set_champion(client, registry.LGBM, version)


def _events(session: str, n: int, start: datetime) -> list[dict]:
    return [
        {
            "event_id": f"{session}-{i}",
            "session_id": session,
            "ts": (start + timedelta(seconds=5 * i)).isoformat(),
            "event_type": "add_to_cart" if i == 1 else "hover",
            "page_type": "product",
            "device": "desktop",
            "browser": "firefox",
            "cart_value": 30.0 if i == 1 else None,
            "duration_ms": 500.0 if i != 1 else None,
            "consent": True,
        }
        for i in range(n)
    ]


def test_scorer_on_redis_and_a_stopped_redis(
    production_home: Settings, redis_server: RedisServer, mlflow_database: str
) -> None:
    import psycopg

    # The champion the scorer loads is registered in PostgreSQL.
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{mlflow_database}") as db:
        aliases = db.execute("SELECT name, alias, version FROM registered_model_aliases")
        assert (registry.LGBM, "champion", 1) in aliases.fetchall()
    start = datetime.now(UTC) - timedelta(minutes=2)
    with Server(production_home) as server, httpx.Client(base_url=server.url) as c:
        assert c.get("/readyz").status_code == 200
        r = c.post("/v1/events", json={"events": _events("p-1", 3, start)})
        assert r.json()["sessions_updated"] == 1 and not r.json()["degraded"]
        out = c.post("/v1/score", json={"session_id": "p-1"}).json()
        assert not out["degraded"] and out["features"]["event_count"] == 3
        assert out["features"]["cart_adds"] == 1 and out["model"]["lgbm"] == "1"

        redis_server.stop()  # the online store goes away for real
        t0 = time.perf_counter()
        r = c.post("/v1/score", json={"session_id": "p-1"})
        elapsed = time.perf_counter() - t0
        assert r.status_code == 200
        down = r.json()
        assert down["degraded"] and down["degraded_reasons"] == ["online_store_unavailable"]
        assert [a["action"] for a in down["decision"]["actions"]] == ["none"]
        assert elapsed < 1.0
        r = c.post("/v1/events", json={"events": _events("p-1", 4, start)[3:]})
        assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["degraded"]

        redis_server.start()  # back, empty (no persistence): the session is unknown now
        time.sleep(1.1)
        back = c.post("/v1/score", json={"session_id": "p-1"}).json()
        assert back["degraded"] and back["degraded_reasons"] == ["unknown_session"]
        assert back["risk"] is not None


def _postgres_text(database: str) -> str:
    """Every row of every table of ``database`` as text (bytea as hex)."""
    import psycopg

    parts: list[str] = []
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:5432/{database}") as db:
        tables = db.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
        ).fetchall()
        for schema, table in tables:
            rows = db.execute(f'SELECT row_to_json(t)::text FROM "{schema}"."{table}" t')
            parts += [r[0] for r in rows]
    return "\n".join(parts)


def _redis_bytes(settings: Settings) -> dict[bytes, dict[bytes, bytes]]:
    import redis

    client = redis.Redis(port=int(settings.redis_url.rpartition(":")[2]))
    return {k: client.hgetall(k) for k in client.keys("*")}


def test_no_raw_id_in_redis_or_postgres_and_forget_erases_from_redis(
    production_home: Settings, mlflow_database: str
) -> None:
    from privacy_scan import find

    from core.privacy import pseudonymizer
    from stores.erasers import forget

    start = datetime.now(UTC) - timedelta(minutes=2)
    people = {"p-keep": "prod-user-keep-7f3a", "p-gone": "prod-user-gone-7f3a"}
    with Server(production_home) as server, httpx.Client(base_url=server.url) as c:
        for session, user in people.items():
            events = [{**e, "user_id": user} for e in _events(session, 3, start)]
            assert c.post("/v1/events", json={"events": events}).json()["accepted"] == 3
            body = {"session_id": session, "user_id": user}
            assert not c.post("/v1/score", json=body).json()["degraded"]
        time.sleep(1.5)  # the logs flush every second
        stored = _redis_bytes(production_home)
        text = b"\n".join(k + b"".join(v.values()) for k, v in stored.items())
        assert b"p-gone" in text and b"p-keep" in text  # the scan sees the sessions
        postgres = _postgres_text(mlflow_database) + _postgres_text("test")
        for user in people.values():
            for haystack in (text.decode("latin-1"), postgres):
                assert user not in haystack and user.encode().hex() not in haystack

        report = forget(production_home, user="prod-user-gone-7f3a")
        assert report.sessions == 1 and report.removed["online store"] >= 1
        after = _redis_bytes(production_home)
        assert not any(b"p-gone" in k for k in after)
        assert {k: v for k, v in stored.items() if b"p-gone" not in k} == after
        gone = pseudonymizer(production_home)("prod-user-gone-7f3a")
        pattern = re.compile(rb"p-gone|" + str(gone).encode())
        assert find(production_home.home, pattern) == {}
        # Nor in PostgreSQL (MLflow's database and Prefect's), in clear or in hex.
        postgres = _postgres_text(mlflow_database) + _postgres_text("test")
        for needle in ("p-gone", str(gone), "prod-user-gone-7f3a"):
            assert needle not in postgres and needle.encode().hex() not in postgres
        assert c.post("/v1/score", json={"session_id": "p-keep"}).status_code == 200
