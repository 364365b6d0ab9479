"""Pseudonymous user ids: no raw user id from the input is stored anywhere under the home."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import pytest
from conftest import LATER, event
from privacy_scan import find
from serving_harness import BROWSE, live_events

from core.privacy import Pseudonymizer, pseudonymizer
from core.settings import Settings
from events.ingest import ingest_files
from events.raw_store import RawEventStore

#: The generator's user ids (``u-<seed>-<n>``) and the ones this test sends live.
RAW_USER = re.compile(rb"u-\d+-\d{5,}|private-user-\w+")


def test_ingest_stores_pseudonyms_and_quarantines_minimized_rows(home: Settings) -> None:
    src = home.home / "in.jsonl"
    rows = [
        event("s1", at=0, user_id="private-user-a"),
        event("s1", at=5, user_id="private-user-a", cart_value=-3.0),  # rejected: negative
        event("s2", at=9, user_id="private-user-b", consent=False, cart_value="x"),  # rejected
    ]
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    p = pseudonymizer(home)
    report = ingest_files(
        [src], RawEventStore(home.paths.raw_events), home.paths.quarantine, now=LATER,
        pseudonymize=p,
    )  # fmt: skip
    assert report.accepted == 1 and sum(report.rejected.values()) == 2
    stored = RawEventStore(home.paths.raw_events).read(LATER - timedelta(days=30), LATER)
    assert stored.column("user_id").to_pylist() == [p("private-user-a")]
    (q,) = home.paths.quarantine.glob("*.jsonl")
    kept = [orjson.loads(line)["row"] for line in q.read_bytes().splitlines()]
    assert kept[0]["user_id"] == p("private-user-a") and kept[0]["cart_value"] == -3.0
    # Without consent only the minimal fields stay, and no user id at all.
    assert "user_id" not in kept[1] and "cart_value" not in kept[1]
    assert find(home.home, RAW_USER, skip=[src]) == {}
    # The same id under the same home's key: the same pseudonym (a user's sessions join);
    # under another key another one.
    assert pseudonymizer(home)("private-user-a") == p("private-user-a")
    assert Pseudonymizer(bytes(32))("private-user-a") != p("private-user-a")


@pytest.mark.slow
@pytest.mark.integration
def test_no_raw_user_id_is_stored_under_a_served_home(
    served: tuple[Settings, str], client: httpx.Client
) -> None:
    """The trained home (generated events through the flows) plus live traffic through
    the API: every file under the home, but the generated input, is searched."""
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=2)
    events = live_events("privacy-s1", start, BROWSE[:4])
    for e in events:
        e["user_id"] = "private-user-live"
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == 4
    body = {"session_id": "privacy-s1", "user_id": "private-user-live"}
    scored = client.post("/v1/score", json=body).json()
    # The user's features are found under the pseudonym the batch build stored.
    assert scored["session_id"] == "privacy-s1"
    time.sleep(1.5)  # the logs flush every second
    assert find(settings.home, RAW_USER) == {}
    logged = [
        orjson.loads(line)
        for f in settings.paths.decisions.rglob("*.jsonl")
        for line in f.read_bytes().splitlines()
    ]
    mine = [d for d in logged if d["session_id"] == "privacy-s1"]
    assert mine and mine[-1]["user_id"] == pseudonymizer(settings)("private-user-live")
