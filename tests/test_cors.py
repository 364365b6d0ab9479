"""What a browser needs from the API: CORS from an allowlist, beacon bodies, and a
quarantine for the events the API refuses (the served home allows http://shop.test)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from serving_harness import BROWSE, live_events

from core.privacy import pseudonymizer
from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

SHOP, OTHER = "http://shop.test", "http://elsewhere.test"


def _preflight(client: httpx.Client, origin: str) -> httpx.Response:
    return client.options(
        "/v1/score",
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )


def test_a_page_on_an_allowed_origin_may_call_the_api_and_another_may_not(
    client: httpx.Client,
) -> None:
    ok = _preflight(client, SHOP)
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == SHOP
    assert "POST" in ok.headers["access-control-allow-methods"]
    refused = _preflight(client, OTHER)
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
    body = {"session_id": "cors-1"}
    answered = client.post("/v1/score", json=body, headers={"Origin": SHOP})
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == SHOP
    assert "x-request-id" in answered.headers["access-control-expose-headers"].lower()
    # A browser sends a simple request (text/plain, as a beacon) without asking first:
    # the server itself refuses the other origin, and says what to do.
    other = client.post("/v1/score", json=body, headers={"Origin": OTHER})
    assert other.status_code == 403 and "CORS_ORIGINS" in other.json()["detail"]
    assert "access-control-allow-origin" not in other.headers
    beacon = client.post(
        "/v1/events",
        content=b'{"events": []}',
        headers={"Origin": OTHER, "Content-Type": "text/plain"},
    )
    assert beacon.status_code == 403
    # Clients without an Origin (servers, curl) and the scorer's own pages are not concerned.
    assert client.post("/v1/score", json=body).status_code == 200
    own = str(client.base_url).rstrip("/")
    assert client.post("/v1/score", json=body, headers={"Origin": own}).status_code == 200
    # A refusal carries the header too, so the page can read why.
    bad = client.post("/v1/score", json={"session_id": ""}, headers={"Origin": SHOP})
    assert bad.status_code == 422 and bad.headers["access-control-allow-origin"] == SHOP


def test_a_beacon_body_sent_as_text_plain_is_taken(client: httpx.Client) -> None:
    """``navigator.sendBeacon`` sends a string as ``text/plain``: no preflight, same route."""
    events = live_events("cors-beacon", datetime.now(UTC) - timedelta(minutes=1), BROWSE[:3])
    r = client.post(
        "/v1/events",
        content=orjson.dumps({"events": events}),
        headers={"Content-Type": "text/plain;charset=UTF-8", "Origin": SHOP},
    )
    assert r.status_code == 200, r.text
    assert r.json()["accepted"] == 3 and r.headers["access-control-allow-origin"] == SHOP


def test_events_the_api_refuses_are_quarantined_with_their_reasons(
    served: tuple[Settings, str], client: httpx.Client
) -> None:
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=1)
    events = live_events("cors-quarantine", start, BROWSE[:4])
    events[1]["cart_value"] = -5.0  # refused: negative
    events[2] = {**events[2], "consent": False, "event_type": "teleport"}  # refused, no consent
    r = client.post("/v1/events", json={"events": events})
    assert r.status_code == 200 and r.json()["accepted"] == 2
    assert [x["position"] for x in r.json()["rejected"]] == [1, 2]
    time.sleep(1.5)  # the scorer's logs flush every second
    kept = [
        orjson.loads(line)
        for f in sorted((settings.paths.quarantine / "api").rglob("*.jsonl"))
        for line in f.read_bytes().splitlines()
    ]
    # Other tests of this scorer quarantine rows of every shape (lists or numbers as ids).
    refused = {events[1]["event_id"], events[2]["event_id"]}
    mine = [
        q
        for q in kept
        if isinstance(q["row"], dict) and isinstance(q["row"].get("event_id"), str)
        if q["row"]["event_id"] in refused
    ]
    assert [q["position"] for q in mine] == [1, 2]
    assert all(q["source"] == "POST /v1/events" and q["reason"] for q in mine)
    assert "cart_value" in mine[0]["reason"]
    # Pseudonymized with consent, minimized without: no user id, no behaviour fields.
    assert mine[0]["row"]["user_id"] == pseudonymizer(settings)(events[1]["user_id"])
    assert "user_id" not in mine[1]["row"] and "duration_ms" not in mine[1]["row"]
