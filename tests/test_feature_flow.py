"""The build_features flow under a real Prefect server, with real Feast stores."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import Settings
from stores.feature_store import open_store
from stores.online_load import latest_per_entity

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _offline(root: Path) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in sorted(root.glob("*.parquet"))])


def test_flow_builds_materializes_and_is_idempotent(
    prefect_server: None, home: Settings, small_log: Path
) -> None:
    from flows.feature_flow import build_features

    first = build_features(inbox=[str(small_log / "events")])
    assert first.ingest["accepted"] > 10_000
    assert first.ingest["duplicates"] > 0 and first.ingest["rejected"]
    assert first.applied is True
    assert first.online_rows["session_behaviour"] == first.build["sessions"]

    files = {p: p.read_bytes() for p in sorted(home.paths.offline.rglob("*.parquet"))}
    online_db = home.paths.feast / "online.db"

    # Online values equal each session's last offline row.
    offline = latest_per_entity(_offline(home.paths.session_features), "session_id")
    sample = offline.slice(0, 25).to_pylist()
    store = open_store(home)
    got = store.get_online_features(
        features=[
            "session_behaviour:event_count",
            "session_behaviour:hover_ms_ewm",
            "session_behaviour:cart_value",
        ],
        entity_rows=[{"session_id": r["session_id"]} for r in sample],
    ).to_dict()
    for i, r in enumerate(sample):
        assert got["event_count"][i] == r["event_count"]
        assert got["cart_value"][i] == r["cart_value"]
        online, offline_value = got["hover_ms_ewm"][i], r["hover_ms_ewm"]
        assert (np.isnan(online) and np.isnan(offline_value)) or online == offline_value

    # Re-running the same window (and re-offering the same files) changes nothing.
    time.sleep(0.01)
    second = build_features(inbox=[str(small_log / "events")])
    assert second.ingest["accepted"] == 0
    assert second.applied is False
    assert {p: p.read_bytes() for p in sorted(home.paths.offline.rglob("*.parquet"))} == files
    assert second.build == first.build
    assert online_db.exists()
    # A packed session row (key, payload, times: about 1 KB, over what a 4 KB page keeps
    # in place for a WITHOUT ROWID table) fits in a 16 KB page without overflow pages.
    with sqlite3.connect(online_db) as conn:
        assert conn.execute("PRAGMA page_size").fetchone()[0] == 16_384
        payload = conn.execute(
            "SELECT max(length(payload)) FROM microtune_session_behaviour_packed"
        ).fetchone()[0]
    assert 900 < payload < 16_384 // 4


def test_feature_service_serves_context_and_user_history(
    prefect_server: None, home: Settings, small_log: Path
) -> None:
    from flows.feature_flow import build_features

    build_features(inbox=[str(small_log / "events")])
    users = latest_per_entity(_offline(home.paths.user_features), "user_id").to_pylist()
    repeat = next(u for u in users if u["past_sessions"] >= 2)
    store = open_store(home)
    sessions = _offline(home.paths.session_features).to_pylist()
    s = sessions[0]
    now = s["last_event_ts"] + 90
    row = store.get_online_features(
        features=store.get_feature_service("abandonment_v1"),
        entity_rows=[
            {
                "session_id": s["session_id"],
                "user_id": repeat["user_id"],
                "request_ts": now,
                "device": "tablet",
                "page_type": "checkout",
            }
        ],
    ).to_dict()
    assert row["past_sessions"] == [repeat["past_sessions"]]
    assert row["past_purchase_rate"] == [repeat["past_purchase_rate"]]
    last = latest_per_entity(_offline(home.paths.session_features), "session_id")
    mine = next(r for r in last.to_pylist() if r["session_id"] == s["session_id"])
    assert row["seconds_since_last_event"] == [pytest.approx(now - mine["last_event_ts"])]
    assert row["session_age_s"] == [pytest.approx(now - mine["session_start_ts"])]
    assert row["is_tablet"] == [1] and row["on_checkout_page"] == [1]
