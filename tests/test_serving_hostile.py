"""Hostile input never gets a 5xx: arbitrary JSON, any code point, NaN, every offset.

Schemathesis (``tests/test_serving_ops.py``) generates from the OpenAPI schema,
and a schema cannot say "NaN" or "a lone surrogate": JSON has no NaN and
UTF-8 no surrogates. Python's ``json.dumps`` writes both (``NaN``,
``"\\ud800"``), as careless clients do, so these property tests send them
over real HTTP to the trained scorer of ``served`` (conftest.py).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from serving.routes import bearer_token

pytestmark = [pytest.mark.slow, pytest.mark.integration]

#: Any code point, lone surrogates and NUL included.
ANY_CHAR = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.integers(0xD800, 0xDFFF).map(chr),
    st.just("\x00"),
)
TEXT = st.text(ANY_CHAR, max_size=80)
NUMBER = st.one_of(
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([1e308, -1e308, 1.7e15, 0, -1]),
)
SCALAR = st.one_of(st.none(), st.booleans(), NUMBER, TEXT)
ANY_JSON = st.recursive(
    SCALAR,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)),
    max_leaves=12,
)
OFFSET = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m)))
TIMESTAMP = st.one_of(
    st.builds(
        lambda dt, tz: dt.replace(tzinfo=tz).isoformat(),
        st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59)),
        OFFSET,
    ),
    st.sampled_from(["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "1900-01-01"]),
    NUMBER,
    TEXT,
)
FIELDS = ["event_id", "session_id", "user_id", "ts", "event_type", "page_type", "element_id"]
FIELDS += ["duration_ms", "scroll_depth", "scroll_velocity", "cart_value", "device", "browser"]
FIELDS += ["consent"]


def _event(draw: Any) -> dict[str, Any]:
    now = datetime.now(UTC)
    base = {
        "event_id": draw(st.one_of(TEXT, st.uuids().map(str))),
        "session_id": draw(st.one_of(TEXT, st.sampled_from(["hostile-1", "../..", " "]))),
        "ts": draw(st.one_of(TIMESTAMP, st.just(now.isoformat()))),
        "event_type": draw(st.one_of(st.sampled_from(["hover", "add_to_cart"]), TEXT)),
        "page_type": "product",
        "device": "mobile",
        "browser": draw(st.one_of(st.just("safari"), TEXT)),
        "consent": draw(st.one_of(st.booleans(), SCALAR)),
    }
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=4)):
        base[name] = draw(ANY_JSON)
    return base


def _post(url: str, path: str, body: Any) -> httpx.Response:
    raw = json.dumps(body, allow_nan=True)  # NaN literals and \ud800 escapes, as sent
    return httpx.post(
        f"{url}{path}", content=raw, headers={"content-type": "application/json"}, timeout=30
    )


HOSTILE = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@HOSTILE
@given(st.data())
def test_score_answers_hostile_bodies_without_a_server_error(served, data) -> None:
    _, url = served
    body = data.draw(
        st.one_of(
            ANY_JSON,
            st.fixed_dictionaries(
                {"session_id": st.one_of(TEXT, st.just("hostile-s")), "user_id": SCALAR},
                optional={"context": st.one_of(ANY_JSON, st.dictionaries(TEXT, SCALAR))},
            ),
        )
    )
    r = _post(url, "/v1/score", body)
    assert r.status_code < 500, (body, r.text)
    assert r.status_code in (200, 422), (body, r.status_code, r.text)
    json.loads(r.text)  # every answer is valid JSON


@HOSTILE
@given(st.data())
def test_events_answer_hostile_batches_without_a_server_error(served, data) -> None:
    _, url = served
    events = data.draw(st.lists(st.one_of(st.builds(dict), ANY_JSON), max_size=3))
    events += [_event(data.draw) for _ in range(data.draw(st.integers(1, 3)))]
    body = data.draw(st.one_of(st.just({"events": events}), ANY_JSON))
    r = _post(url, "/v1/events", body)
    assert r.status_code < 500, (body, r.text)
    out = json.loads(r.text)
    if r.status_code == 200:
        assert out["accepted"] + len(out["rejected"]) == len(body["events"])
        for rejected in out["rejected"]:
            assert ":" in rejected["reason"]


def test_the_audits_cases_get_4xx_with_the_field(served) -> None:
    _, url = served
    now = datetime.now(UTC).isoformat()
    nan_context = _post(url, "/v1/score", {"session_id": "s", "context": {"browser": math.nan}})
    assert nan_context.status_code == 422
    assert nan_context.json()["detail"][0]["loc"][-1] == "browser"
    surrogate = _post(url, "/v1/score", {"session_id": "s", "user_id": "\ud800"})
    assert surrogate.status_code == 422 and "user_id" in surrogate.json()["detail"][0]["loc"]
    event = {
        "event_id": "e1",
        "session_id": "s\ud800",
        "ts": now,
        "event_type": "hover",
        "page_type": "product",
        "device": "mobile",
        "browser": "safari",
        "consent": True,
    }
    for change in (
        {},
        {"session_id": "s1", "event_id": "\ud800"},
        {"session_id": "s1", "browser": "\ud800"},
        {"session_id": "s1", "ts": "9999-12-31T23:59:59-14:00"},
        {"session_id": "s1", "ts": "0001-01-01T00:00:00+14:00"},
        {"session_id": "s1", "ts": "2001-01-01T00:00:00Z"},  # older than the API takes
        {"session_id": "s1\x00"},
        {"session_id": "s1", "duration_ms": 1e308},
    ):
        r = _post(url, "/v1/events", {"events": [{**event, **change}]})
        assert r.status_code == 200, (change, r.text)
        out = r.json()
        assert out["accepted"] == 0 and len(out["rejected"]) == 1, (change, out)


def test_auth_follows_rfc_7235(served) -> None:
    from serving_harness import TOKEN

    _, url = served
    path = f"{url}/v1/admin/reload-models"
    for header, status in (
        (f"Bearer {TOKEN}", 200),
        (f"bearer {TOKEN}", 200),
        (f"BEARER  {TOKEN}", 200),
        (TOKEN, 401),  # no scheme
        (f"Basic {TOKEN}", 401),
        (f"Bearer {TOKEN}x", 401),
    ):
        r = httpx.post(path, headers={"authorization": header}, timeout=30)
        assert r.status_code == status, header
    assert bearer_token("Bearer a b") is None


def test_the_schema_lists_every_answer(served) -> None:
    _, url = served
    paths = httpx.get(f"{url}/openapi.json").json()["paths"]
    for route in ("/v1/score", "/v1/events"):
        assert {"200", "400", "413", "422", "429", "500"} <= set(paths[route]["post"]["responses"])
    assert {"401", "500"} <= set(paths["/v1/admin/reload-models"]["post"]["responses"])
