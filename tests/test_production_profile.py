"""The production profile for real: Redis online store, Feast SQL registry on PostgreSQL.

Every test gets its own Feast project (``mt_<random>``), so runs never see each
other's registry rows or Redis keys, and the fixture removes both afterwards.
Redis and PostgreSQL are required: when one is unreachable the tests fail
(CI provides both), they are never skipped.

Point ``MICROTUNE_REDIS_URL`` / ``MICROTUNE_POSTGRES_URL`` elsewhere to test
other servers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import LATER, T0, event

from core.settings import FEATURE_REPO, Settings
from events.ingest import ingest_files
from events.raw_store import RawEventStore
from features import build_window, read_offline
from flows.context import use_settings
from stores.feature_store import apply_definitions, ensure_uci, open_store
from stores.online_load import latest_per_entity, write_online

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.slow]

#: Join keys of every entity in ``feature_repo/definitions.py``.
JOIN_KEYS = ("session_id", "user_id", "uci_session_id")
VIEWS = {"session_behaviour", "user_history", "uci_sessions", "session_segment"}


# ---------------------------------------------------------------------------
# Servers and cleanup


def _redis_client(settings: Settings) -> Any:
    """A redis-py client on the connection string, parsed the way Feast parses it."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore

    nodes, params = RedisOnlineStore._parse_connection_string(settings.redis_url)
    return redis.Redis(
        host=nodes[0]["host"],
        port=int(nodes[0]["port"]),
        socket_connect_timeout=5,
        socket_timeout=30,
        **params,
    )


def _require_servers(settings: Settings) -> None:
    """Fail (never skip) with the reason when Redis or PostgreSQL is unreachable."""
    import sqlalchemy as sa

    problems: list[str] = []
    try:
        client = _redis_client(settings)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        problems.append(f"Redis at {settings.redis_url!r} (MICROTUNE_REDIS_URL): {exc}")
    try:
        engine = sa.create_engine(settings.postgres_url, connect_args={"connect_timeout": 5})
        try:
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
        finally:
            engine.dispose()
    except Exception as exc:
        first_line = str(exc).splitlines()[0]
        problems.append(
            f"PostgreSQL at {settings.postgres_url!r} (MICROTUNE_POSTGRES_URL): {first_line}"
        )
    if problems:
        pytest.fail(
            "the production profile tests need running servers, unreachable: "
            + "; ".join(problems),
            pytrace=False,
        )


def project_keys(client: Any, project: str) -> list[bytes]:
    """Redis keys of ``project``'s entities.

    Feast's Redis store keys a row by ``serialize_entity_key(entity) + project``
    (``feast.infra.online_stores.helpers._redis_key``), and the serialized key
    starts with the join-key prefix (``_redis_key_prefix``). Matching both ends
    keeps other projects' keys out, even one whose name ends like ours.
    """
    from feast.infra.online_stores.helpers import _redis_key_prefix

    suffix = project.encode("utf-8")
    prefixes = tuple(_redis_key_prefix([k]) for k in JOIN_KEYS)
    return [
        k
        for k in client.scan_iter(match=b"*" + suffix, count=10_000)
        if k.endswith(suffix) and k.startswith(prefixes)
    ]


def registry_rows(engine: Any, project: str) -> dict[str, int]:
    """Rows of ``project`` in every table of Feast's SQL registry that has one."""
    import sqlalchemy as sa
    from feast.infra.registry.sql import metadata

    counts: dict[str, int] = {}
    with engine.connect() as conn:
        for table in metadata.sorted_tables:
            if "project_id" in table.c:
                stmt = sa.select(sa.func.count()).where(table.c.project_id == project)
                if n := conn.execute(stmt).scalar_one():
                    counts[table.name] = n
    return counts


def _drop_project(settings: Settings) -> None:
    """Remove the project's Redis keys and registry rows, then check nothing is left.

    ``FeatureStore.teardown()`` is not used on purpose: it deletes *every*
    project listed in the registry, and the SQL registry's own ``teardown()``
    empties whole tables; both would wipe other users of the shared database.
    """
    import sqlalchemy as sa
    from feast.errors import ProjectNotFoundException, ProjectObjectNotFoundException
    from feast.infra.registry.sql import metadata

    project = settings.project
    client = _redis_client(settings)
    try:
        keys = project_keys(client, project)
        for lo in range(0, len(keys), 1_000):
            client.delete(*keys[lo : lo + 1_000])
        assert project_keys(client, project) == [], "Redis keys of the test project remain"
    finally:
        client.close()

    registry = open_store(settings).registry
    try:
        with contextlib.suppress(ProjectNotFoundException, ProjectObjectNotFoundException):
            registry.delete_project(project)
        # delete_project (feast 0.67) skips feature_view_version_history, and does
        # nothing when an apply failed before the project row was written.
        with registry.write_engine.begin() as conn:
            for table in metadata.sorted_tables:
                if "project_id" in table.c:
                    conn.execute(sa.delete(table).where(table.c.project_id == project))
        left = registry_rows(registry.write_engine, project)
        assert left == {}, f"registry rows of the test project remain: {left}"
    finally:
        registry.write_engine.dispose()
        registry.read_engine.dispose()


@pytest.fixture
def production(tmp_path: Path) -> Iterator[Settings]:
    """Production settings on a fresh home, with a Feast project of its own."""
    project = f"mt_{uuid4().hex[:10]}"
    settings = Settings(home=tmp_path / "home", profile="production", project=project)
    assert settings.profile == "production" and settings.project == project
    settings.paths.ensure()
    _require_servers(settings)
    try:
        with use_settings(settings):
            yield settings
    finally:
        _drop_project(settings)


def _fresh_store(settings: Settings) -> Any:
    """A brand-new ``FeatureStore`` on the production yaml (no shared registry cache)."""
    from feast import FeatureStore

    from stores.feature_store import repo_config

    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


# ---------------------------------------------------------------------------
# Configuration


def test_profiles_differ_only_in_stores_and_project() -> None:
    embedded = Settings(profile="embedded", home=Path("/tmp/mt-profile-check"))
    production = Settings(profile="production", home=Path("/tmp/mt-profile-check"))
    assert embedded.feature_store_yaml != production.feature_store_yaml
    emb = yaml.safe_load(embedded.feature_store_yaml.read_text())
    prod = yaml.safe_load(production.feature_store_yaml.read_text())
    # The embedded home has its own registry, so its project name is fixed;
    # production homes share Redis and PostgreSQL and are told apart by project.
    stores = {"registry", "online_store", "project"}
    assert emb["project"] == "microtune" and prod["project"] == "${MICROTUNE_PROJECT}"
    assert set(emb) == set(prod)
    assert {k: v for k, v in emb.items() if k not in stores} == {
        k: v for k, v in prod.items() if k not in stores
    }
    assert emb["online_store"] != prod["online_store"] and emb["registry"] != prod["registry"]
    assert prod["online_store"]["type"] == "redis"
    assert prod["registry"]["registry_type"] == "sql"
    assert prod["online_store"]["connection_string"] == "${MICROTUNE_REDIS_URL}"
    assert prod["registry"]["path"] == "${MICROTUNE_POSTGRES_URL}"


# ---------------------------------------------------------------------------
# Registry on PostgreSQL


def test_apply_registers_the_repo_in_postgres(production: Settings) -> None:
    import sqlalchemy as sa
    from feast.infra.online_stores.redis import RedisOnlineStoreConfig
    from feast.infra.registry.sql import SqlRegistry

    ensure_uci(production)
    store = open_store(production)
    assert store.project == production.project
    assert isinstance(store.registry, SqlRegistry)
    assert isinstance(store.config.online_store, RedisOnlineStoreConfig)

    first = apply_definitions(production, store)
    assert first.changed
    assert "create feature_view session_behaviour" in first.changes
    assert "create feature_service abandonment_v1" in first.changes

    # A new store object reads the registry back from PostgreSQL.
    fresh = _fresh_store(production)
    project = production.project
    assert project in {p.name for p in fresh.registry.list_projects(allow_cache=False)}
    views = fresh.registry.list_feature_views(project, allow_cache=False)
    assert {v.name for v in views} == VIEWS
    services = {s.name for s in fresh.registry.list_feature_services(project, allow_cache=False)}
    assert {"abandonment_v1", "uci_purchase_v1"} <= services
    odfvs = fresh.registry.list_on_demand_feature_views(project, allow_cache=False)
    assert [v.name for v in odfvs] == ["session_context"]
    service = fresh.get_feature_service("abandonment_v1")
    assert {p.name for p in service.feature_view_projections} == {
        "session_behaviour",
        "user_history",
        "session_context",
    }

    # The rows are in PostgreSQL itself, under this project only.
    engine = sa.create_engine(production.postgres_url)
    try:
        with engine.connect() as conn:
            in_db = conn.execute(
                sa.text("select feature_view_name from feature_views where project_id = :p"),
                {"p": project},
            )
            assert {r[0] for r in in_db} == VIEWS
            in_db = conn.execute(
                sa.text("select feature_service_name from feature_services where project_id = :p"),
                {"p": project},
            )
            assert "abandonment_v1" in {r[0] for r in in_db}
    finally:
        engine.dispose()

    # Nothing changed since: a second apply (from the fresh store) is a no-op.
    second = apply_definitions(production, fresh)
    assert (second.changed, second.changes) == (False, [])


# ---------------------------------------------------------------------------
# Online store on Redis


def _tiny_log() -> list[dict[str, Any]]:
    """u1's purchased session s0 two hours before T0, then session s1 from T0."""
    return [
        event("s0", -7200, "page_view"),
        event("s0", -7190, "add_to_cart", cart_value=20.0),
        event("s0", -7180, "purchase", cart_value=20.0),
        event("s1", 0, "page_view"),
        event("s1", 10, "hover", element_id="price", duration_ms=500.0),
        event("s1", 20, "hover", element_id="image", duration_ms=300.0),
        event("s1", 25, "hover", duration_ms=9_000.0, consent=False),  # never a feature
        event("s1", 30, "add_to_cart", cart_value=40.0),
        event("s1", 40, "click", element_id="size"),
        event("s1", 50, "add_to_cart", cart_value=10.0),
        event("s1", 60, "remove_from_cart", cart_value=10.0),
    ]


#: Worked out by hand from ``_tiny_log`` for session s1 and user u1.
S1_EXPECTED = {
    "event_count": 7.0,  # the unconsented hover does not count
    "page_views": 1.0,
    "product_views": 1.0,
    "hover_count": 2.0,
    "price_hover_count": 1.0,
    "hover_ms_ewm": 440.0,  # 0.3 * 300 + 0.7 * 500
    "click_count": 1.0,
    "cart_adds": 2.0,
    "cart_removes": 1.0,
    "cart_value": 40.0,  # 40 + 10 - 10
    "checkout_starts": 0.0,
    "searches": 0.0,
}
U1_EXPECTED = {
    "past_sessions": 2.0,  # s0 and s1 both end inside the built day
    "past_purchase_rate": 0.5,
    "past_abandon_rate": 0.5,  # s1 added to the cart without buying
}


def _assert_redis_rows(production: Settings, store: Any) -> None:
    """The rows are Redis hashes under this project's keys: s0, s1 and u1."""
    from feast.infra.online_stores.helpers import _redis_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    client = _redis_client(production)
    try:
        s1_key = _redis_key(
            production.project,
            EntityKey(join_keys=["session_id"], entity_values=[Value(string_val="s1")]),
            entity_key_serialization_version=store.config.entity_key_serialization_version,
        )
        assert client.exists(s1_key) == 1
        assert len(project_keys(client, production.project)) == 3  # s0, s1, u1
    finally:
        client.close()


def test_online_features_through_redis(production: Settings, tmp_path: Path) -> None:
    log = tmp_path / "tiny.jsonl"
    log.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in _tiny_log()))
    raw = RawEventStore(production.paths.raw_events)
    report = ingest_files([log], raw, production.paths.quarantine, now=LATER)
    assert (report.accepted, report.rejected) == (11, {})

    built = build_window(
        raw,
        production.paths.offline,
        T0,
        T0 + timedelta(hours=1),
        gap=timedelta(minutes=production.features.session_gap_minutes),
        lookback=timedelta(hours=production.features.session_lookback_hours),
    )
    assert (built.sessions, built.ended_sessions, built.user_rows) == (2, 2, 2)

    ensure_uci(production)
    store = open_store(production)
    assert apply_definitions(production, store).changed
    sessions = read_offline(production.paths.session_features)
    users = read_offline(production.paths.user_features)
    assert sessions is not None and users is not None
    assert write_online(store, "session_behaviour", sessions, "session_id") == 2
    assert write_online(store, "user_history", users, "user_id") == 1

    _assert_redis_rows(production, store)

    t0 = T0.timestamp()
    request_ts = t0 + 600.0
    row = {
        "session_id": "s1",
        "user_id": "u1",
        "request_ts": request_ts,
        "device": "mobile",
        "page_type": "checkout",
    }
    expected = {
        **S1_EXPECTED,
        **U1_EXPECTED,
        "session_age_s": request_ts - t0,  # 600 s since the first event
        "seconds_since_last_event": request_ts - (t0 + 60.0),
        "clicks_per_min": 1.0 / 10.0,
        "hour_of_day": 12,
        "is_mobile": 1,
        "is_tablet": 0,
        "on_product_page": 0,
        "on_checkout_page": 1,
    }

    def read(fs: Any) -> dict[str, Any]:
        got = fs.get_online_features(
            features=fs.get_feature_service("abandonment_v1"), entity_rows=[row]
        ).to_dict()
        return {k: v[0] for k, v in got.items()}

    got = read(store)
    assert {k: got[k] for k in expected} == pytest.approx(expected)
    # A brand-new store object finds the same values in Redis.
    again = read(_fresh_store(production))
    assert again.keys() == got.keys()
    assert all(_same(again[k], got[k]) for k in got), (again, got)

    # And the online row is the session's last offline row.
    last = latest_per_entity(sessions, "session_id").to_pylist()
    s1 = next(r for r in last if r["session_id"] == "s1")
    assert all(_same(got[k], s1[k]) for k in S1_EXPECTED)


# ---------------------------------------------------------------------------
# The whole flow


def test_build_features_flow_in_production(
    prefect_server: None, production: Settings, small_log: Path
) -> None:
    from flows.feature_flow import build_features

    summary = build_features(inbox=[str(small_log / "events")])
    assert summary.ingest["accepted"] > 10_000
    assert summary.applied is True
    assert summary.online_rows["session_behaviour"] == summary.build["sessions"] > 0
    assert summary.online_rows["user_history"] > 0

    client = _redis_client(production)
    try:
        keys = project_keys(client, production.project)
    finally:
        client.close()
    assert len(keys) == sum(summary.online_rows.values())

    offline = pa.concat_tables(
        [pq.read_table(f) for f in sorted(production.paths.session_features.glob("*.parquet"))]
    )
    last = latest_per_entity(offline, "session_id")
    sample = last.slice(last.num_rows // 2, 1).to_pylist()[0]
    store = _fresh_store(production)
    names = [f.name for f in store.get_feature_view("session_behaviour").features]
    got = store.get_online_features(
        features=[f"session_behaviour:{n}" for n in names],
        entity_rows=[{"session_id": sample["session_id"]}],
    ).to_dict()
    mismatched = {n: (got[n][0], sample[n]) for n in names if not _same(got[n][0], sample[n])}
    assert mismatched == {}
