"""Retention removes exactly what is older than each store's age, and nothing twice."""

from __future__ import annotations

import os
from datetime import timedelta

import orjson
import pyarrow.compute as pc
import pytest
from conftest import LATER, T0, event

from core.settings import Settings
from events.ingest import ingest_files
from events.raw_store import RawEventStore
from stores.decision_log import AppendLog, read_decisions
from stores.retention import apply_retention

DAY = 86_400.0


def _home(home: Settings) -> Settings:
    """Events every 6 hours over 8 days from T0 (and one bad row), decisions hourly."""
    rows = [event(f"s{i}", at=i * 6 * 3600.0) for i in range(32)]
    src = home.home / "in.jsonl"
    bad = {"event_id": "bad-1", "session_id": "s-bad"}
    src.write_bytes(b"\n".join(orjson.dumps(r) for r in [*rows, bad]))
    ingest_files([src], RawEventStore(home.paths.raw_events), home.paths.quarantine, now=LATER)
    log = AppendLog(home.paths.decisions)
    for h in range(8 * 24):
        ts = (T0 + timedelta(hours=h, minutes=30)).timestamp()
        log.append({"ts": ts, "session_id": f"s{h}", "experiment": "x", "variant": "a"})
    log.flush()
    return home


def test_retention_removes_exactly_what_is_too_old(home: Settings) -> None:
    s = _home(home).override(
        retention={"raw_events_days": 5, "decisions_days": 3.5, "quarantine_days": 1}
    )
    now = T0 + timedelta(days=8)
    (q,) = list(s.paths.quarantine.glob("*.jsonl"))
    os.utime(q, (now.timestamp() - 2 * DAY,) * 2)  # quarantined two days before `now`
    report = apply_retention(s, now)
    # Raw events: every 6 h from T0; the cutoff is T0 + 3 days: 12 events are older.
    assert report.raw_events == 12
    kept = RawEventStore(s.paths.raw_events).read(T0 - timedelta(days=1), now)
    assert kept.num_rows == 20
    assert pc.min(kept.column("ts")).as_py() == T0 + timedelta(days=3)
    # Decisions at :30 past each hour; the cutoff T0 + 4.5 days is mid-hour: the
    # boundary hour's file is rewritten without the older line.
    cut = T0 + timedelta(days=4, hours=12)
    assert report.decisions == 4 * 24 + 12
    decisions = read_decisions(s.paths.decisions, T0 - timedelta(days=1), now)
    assert decisions.num_rows == 8 * 24 - (4 * 24 + 12)
    assert pc.min(decisions.column("ts")).as_py() >= cut
    assert report.quarantine_files == 1 and not list(s.paths.quarantine.glob("*.jsonl"))
    # Nothing more goes on a second run; a removed event sent again is stored again.
    again = apply_retention(s, now)
    assert (again.raw_events, again.decisions, again.quarantine_files) == (0, 0, 0)
    src = s.home / "again.jsonl"
    src.write_bytes(orjson.dumps(event("s0", at=0.0, event_id="e-again")))
    report2 = ingest_files([src], RawEventStore(s.paths.raw_events), s.paths.quarantine, now=LATER)
    assert report2.accepted == 1


@pytest.mark.integration
def test_the_retention_flow_runs_on_the_home(home: Settings, prefect_server: None) -> None:
    from flows.retention_flow import apply_retention as flow

    _home(home)
    now = T0 + timedelta(days=400)  # everything is older than the default 180 days
    out = flow(now=now.isoformat())
    assert out["raw_events"] == 32 and out["decisions"] == 8 * 24
    assert out["cutoffs"]["raw_events"] == (now - timedelta(days=180)).isoformat()
    assert not list(home.paths.raw_events.glob("date=*"))
