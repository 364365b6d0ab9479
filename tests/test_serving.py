"""The scorer through real HTTP: known sessions, live events, and the models it serves.

One trained home (generated events ending yesterday, champions promoted
through the gate) and one server (``served`` in conftest.py) are shared by
the scorer's tests; each test uses its own session ids.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from serving_harness import (
    BROWSE,
    TOKEN,
    build_events,
    decision_log,
    historical,
    live_events,
    same,
    score,
)

from feature_repo.features import SESSION_FOLDS
from features import read_offline
from folds import state_columns
from models import registry

ADMIN = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = [pytest.mark.slow, pytest.mark.integration]


# --- scoring known sessions -------------------------------------------------


def test_batch_session_scores_with_its_offline_features(served, client) -> None:
    """A session built by the batch flow: the features used equal the offline ones then."""
    settings, _ = served
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    path = settings.home / "fresh" / "batch.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in live_events("known-1", start, BROWSE))
    )
    build_events(settings, [path])
    ctx = {"page_type": "cart", "device": "mobile"}
    out = score(client, "known-1", **ctx)
    assert not out["degraded"], out["degraded_reasons"]
    assert out["features"]["event_count"] == len(BROWSE)
    assert 0.0 < out["risk"] < 1.0 and out["model"]["lgbm"] == "1"
    (logged,) = decision_log(settings, "known-1")
    offline = historical(settings, "known-1", logged["ts"], ctx)
    for name, used in out["features"].items():
        assert same(used, offline[name]), (name, used, offline[name])
    assert out["features_age_s"] == pytest.approx(logged["ts"] - (start.timestamp() + 70), abs=1)
    top = out["explanation"]
    assert 0 < len(top) <= 5
    assert abs(top[0]["contribution"]) >= abs(top[-1]["contribution"])


def test_live_events_change_the_next_score_and_equal_the_batch(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events = live_events("live-1", start, BROWSE)
    # Unknown before any event: scored from the request context alone.
    first = score(client, "live-1", device="mobile", page_type="product")
    assert first["degraded"] and first["degraded_reasons"] == ["unknown_session"]
    assert first["risk"] is not None and first["features"]["event_count"] is None
    seen = []
    for chunk in (events[:3], events[3:4], events[4:]):
        r = client.post("/v1/events", json={"events": chunk})
        assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text
        seen.append(score(client, "live-1", device="mobile")["features"])
    assert [f["event_count"] for f in seen] == [3, 4, len(BROWSE)]
    assert seen[-1]["cart_value"] == pytest.approx(59.9 - 19.95)
    assert seen[-1]["hover_ms_mean"] == pytest.approx(750.0)

    # The batch builder folds the same events (kept in the live inbox) to the same state.
    client.post("/v1/score", json={"session_id": "flush"})
    time.sleep(1.5)
    build_events(settings, [settings.paths.live_inbox])
    batch = read_offline(settings.paths.session_features).to_pandas()
    last = batch[batch["session_id"] == "live-1"].sort_values("event_timestamp").iloc[-1]
    from serving.online import OnlineFeatures
    from stores.feature_store import open_store

    online = OnlineFeatures(open_store(settings)).session_state("live-1", time.time())
    assert online is not None
    for col in state_columns(SESSION_FOLDS):
        a, b = float(last[col]), online.values[col]
        assert (math.isnan(a) and math.isnan(b)) or a == b, (col, a, b)


def test_events_are_validated_like_ingest(client) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    good = live_events("mixed-1", start, [("page_view", {}), ("hover", {"duration_ms": 10})])
    bad = [
        {**good[0], "event_id": "b1", "event_type": "teleport"},
        {**good[0], "event_id": "b2", "scroll_depth": 1.5},
        {**good[0], "event_id": "b3", "ts": "2999-01-01T00:00:00Z"},
        {**good[0], "event_id": "b4", "duration_ms": -5},
        "not an object",
    ]
    r = client.post("/v1/events", json={"events": [bad[0], good[0], bad[1], good[1], *bad[2:]]})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2 and body["sessions_updated"] == 1
    reasons = {x["position"]: x["reason"] for x in body["rejected"]}
    assert reasons[0].startswith("event_type: ")
    assert reasons[2].startswith("scroll_depth: ")
    assert reasons[4].startswith("ts: more than 5 minutes in the future")
    assert reasons[5].startswith("duration_ms: ")
    assert reasons[6] == "row: expected a JSON object"
    # A retry of the same events is taken once: the features count them once.
    again = client.post("/v1/events", json={"events": good}).json()
    assert again["accepted"] == 2 and again["duplicates"] == 2 and again["sessions_updated"] == 0
    assert score(client, "mixed-1")["features"]["event_count"] == 2


def test_events_without_consent_are_minimized_and_feed_no_feature(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=1)
    hover = {"element_id": "price", "duration_ms": 900, "consent": False}
    private = live_events("private-1", start, [("hover", hover)])
    body = client.post("/v1/events", json={"events": private}).json()
    assert body["accepted"] == 1 and body["sessions_updated"] == 0
    assert score(client, "private-1")["features"]["event_count"] is None
    time.sleep(1.5)  # the inbox is flushed every second
    kept = [
        orjson.loads(line)
        for f in settings.paths.live_inbox.rglob("*.jsonl")
        for line in f.read_bytes().splitlines()
    ]
    (row,) = [r for r in kept if r["session_id"] == "private-1"]
    assert row["element_id"] is None and row["duration_ms"] is None and row["device"] is None
    assert row["event_type"] == "hover" and row["consent"] is False


def test_stale_features_are_treated_as_missing(served, client) -> None:
    """A session last seen more than the view's TTL (6 h) ago is stale: not used."""
    settings, _ = served
    table = read_offline(settings.paths.session_features).to_pandas()
    old = table.sort_values("event_timestamp").iloc[0]["session_id"]
    out = score(client, old)
    assert out["degraded"] and out["degraded_reasons"] == ["stale_session_features"]
    assert out["features"]["event_count"] is None and out["features_age_s"] is None


# --- models ---------------------------------------------------------------------


def test_promotion_is_picked_up_without_restart(served, client) -> None:
    settings, _ = served
    client_ml = registry.configure(settings.tracking_uri, settings.artifact_root)
    model = registry.load(registry.LGBM, "champion")
    new = registry.register(
        client_ml, registry.LGBM, model, metrics={}, artifacts=[], run_name="republish"
    )
    registry.set_champion(client_ml, registry.LGBM, new.version)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if score(client, "promo-1")["model"]["lgbm"] == new.version:
            break
        time.sleep(0.3)
    assert score(client, "promo-1")["model"]["lgbm"] == new.version
    # The public route says which versions serve, and nothing else.
    public = client.get("/v1/models").json()
    assert public["models"][registry.LGBM] == new.version
    assert set(public) == {"models", "policy"} and set(public["policy"]) == {
        "version",
        "canary_share",
    }
    assert "card" not in str(public) and "threshold" not in str(public)
    # Cards, thresholds and paths are behind the admin token.
    assert client.get("/v1/admin/models").status_code == 401
    models = client.get("/v1/admin/models", headers=ADMIN).json()["models"]
    assert models[registry.LGBM]["version"] == new.version
    assert models[registry.LGBM]["card"]["feature_service"] == "abandonment_v1"
    assert "thresholds" in models[registry.LGBM]["card"]
    text = client.get("/metrics").text
    pid = r'(pid="\d+",)?'
    pattern = rf'microtune_model_version{{model="abandonment-lgbm",{pid}version="{new.version}"}} 1'
    assert re.search(pattern, text), text[-2000:]
    assert re.search(r'microtune_request_seconds_count{(pid="\d+",)?route="/v1/score"} \d', text)


def test_river_learns_from_a_purchase_with_one_writer(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=3)
    events = live_events("buyer-1", start, BROWSE[:6])
    client.post("/v1/events", json={"events": events})
    out = score(client, "buyer-1", device="mobile")
    assert out["risk_river"] is not None and out["model"]["river_role"] == "shadow"
    before = client.get("/v1/admin/models", headers=ADMIN).json()["river_learner"]
    purchase = live_events("buyer-1", start + timedelta(minutes=2), [("purchase", {})])
    purchase[0]["event_id"] = "buyer-1-purchase"
    assert client.post("/v1/events", json={"events": purchase}).json()["accepted"] == 1
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline and after["learned"] <= before["learned"]:
        time.sleep(0.5)
        after = client.get("/v1/admin/models", headers=ADMIN).json()["river_learner"]
    assert after["this_process_learns"] and after["learned"] >= before["learned"] + 1
    version = client.get("/v1/models").json()["models"][registry.RIVER]
    assert (settings.paths.serving / "river" / f"v{version}.pkl").exists()
    # A second process cannot take the writer lock while this server holds it.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'a');fcntl.flock(f, fcntl.LOCK_EX|fcntl.LOCK_NB)",
            str(settings.paths.serving / "river.lock"),
        ],
        capture_output=True,
    )
    assert probe.returncode != 0
