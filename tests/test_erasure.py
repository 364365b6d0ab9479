"""Erasure: ``forget`` removes a person from every store, leaves the others alone, and
covers every store that holds session data."""

from __future__ import annotations

import re
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pyarrow.parquet as pq
import pytest
from privacy_scan import find
from serving_harness import BROWSE, live_events
from typer.testing import CliRunner

from cli.main import app
from core.errors import InputError
from core.privacy import pseudonymizer
from core.settings import Settings, get_settings
from stores.erasers import forget, subject_for
from stores.erasure import STORES, Subject, audit_log

#: The generator's session ids (seed 21 in the served home) and this module's live ones.
SESSION_IDS = re.compile(rb"s-21-\d{5}|erasure-[a-z]+-\d")


def _live(client: httpx.Client, session: str, user: str, ago_min: float = 3.0) -> None:
    """A session through the API: events (inbox, online store) and a score (decision log,
    label queue)."""
    events = live_events(session, datetime.now(UTC) - timedelta(minutes=ago_min), BROWSE)
    for e in events:
        e["user_id"] = user
    assert client.post("/v1/events", json={"events": events}).json()["accepted"] == len(events)
    r = client.post("/v1/score", json={"session_id": session, "user_id": user})
    assert r.status_code == 200, r.text


def _generated_user(settings: Settings) -> tuple[str, set[str]]:
    """A user of the generated input with three or more sessions, and those sessions.

    Only sessions with consent: without it the stores keep no user id (minimized),
    so nothing links such a session to the user (``--session`` erases it)."""
    sessions: dict[str, set[str]] = {}
    for f in sorted((settings.home.parent / "log" / "events").glob("*.jsonl")):
        for line in f.read_bytes().splitlines():
            try:
                r = orjson.loads(line)
                if r["consent"] is True:
                    sessions.setdefault(str(r["user_id"]), set()).add(str(r["session_id"]))
            except (orjson.JSONDecodeError, KeyError, TypeError):
                continue  # the generator's deliberately broken rows
    user = min(u for u, s in sessions.items() if len(s) >= 3 and u.startswith("u-"))
    return user, sessions[user]


def _others(settings: Settings, gone: Subject) -> dict[str, Any]:
    """Every other session's and user's rows: offline tables and online store."""
    out: dict[str, Any] = {}
    p = settings.paths
    for root in (p.session_features, p.session_outcomes, p.user_features):
        for f in sorted(root.glob("*.parquet")):
            rows = pq.read_table(f).to_pylist()
            kept = [r for r in rows if not gone.matches(r.get("session_id"), r.get("user_id"))]
            out[str(f)] = orjson.dumps(kept)  # NaN as null: NaN != NaN in a dict
    with sqlite3.connect(p.feast / "online.db") as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for t in tables:
            rows = conn.execute(f'SELECT * FROM "{t}"').fetchall()
            out[t] = sorted(r for r in rows if not any(i.encode() in r[0] for i in _ids(gone)))
    return out


def _ids(subject: Subject) -> set[str]:
    return set(subject.sessions | subject.users)


@pytest.mark.slow
@pytest.mark.integration
def test_every_file_holding_session_ids_belongs_to_a_registered_store(
    served: tuple[Settings, str], client: httpx.Client
) -> None:
    settings, _ = served
    _live(client, "erasure-cover-1", "erasure-user")
    time.sleep(1.5)  # the scorer's logs and label queue flush every second
    hits = find(settings.home, SESSION_IDS)
    subject_for(settings, user="erasure-user", session=None)  # registers the stores
    roots = [r.resolve() for s in STORES.values() for r in s.roots(settings)]
    uncovered = sorted(
        f for f in hits if not any((settings.home / f).resolve().is_relative_to(r) for r in roots)
    )
    assert uncovered == [], f"session ids outside every store forget knows: {uncovered}"
    # Not vacuous: the ids are found in each kind of store.
    for where in ("raw/events", "offline/session_features", "feast/online.db", "decisions"):
        assert any(f.startswith(where) for f in hits), (where, sorted(hits))


@pytest.mark.slow
@pytest.mark.integration
def test_forget_erases_a_user_everywhere_while_the_scorer_runs(
    served: tuple[Settings, str], client: httpx.Client, prefect_server: None
) -> None:
    settings, url = served
    generated, generated_sessions = _generated_user(settings)
    _live(client, "erasure-gone-1", "erasure-leaver")
    _live(client, "erasure-gone-2", "erasure-leaver", ago_min=2.0)
    _live(client, "erasure-stays-1", "erasure-stayer")
    time.sleep(1.5)
    p = pseudonymizer(settings)
    gone = Subject.of(
        sessions=generated_sessions | {"erasure-gone-1", "erasure-gone-2"},
        users=[str(p(generated)), str(p("erasure-leaver"))],
    )
    assert subject_for(settings, user=generated, session=None) == Subject.of(
        generated_sessions, [str(p(generated))]
    )
    before = _others(settings, gone)
    pattern = re.compile("|".join(re.escape(i) for i in sorted(_ids(gone))).encode())
    assert len(find(settings.home, pattern)) >= 6  # raw, offline, online, inbox, log, labels

    # A visitor keeps being scored while the erasure runs: none of their answered
    # decisions may be lost from the log the erasure rewrites.
    answered, stop = Counter[str](), threading.Event()

    def bystander() -> None:
        with httpx.Client(base_url=url, timeout=30) as c:
            while not stop.is_set():
                body = {"session_id": "erasure-stays-1", "user_id": "erasure-stayer"}
                answered[str(c.post("/v1/score", json=body).status_code)] += 1

    t = threading.Thread(target=bystander)
    t.start()
    try:
        first = forget(settings, user=generated)
        second = forget(settings, user="erasure-leaver")
    finally:
        stop.set()
        t.join()
    assert set(answered) == {"200"} and answered["200"] > 10
    assert first.sessions == len(generated_sessions) and second.sessions == 2
    # The generated user's sessions went through the batch stores, the live user's through
    # the scorer's.
    for name in ("raw events", "offline tables", "online store"):
        assert first.removed[name] > 0, (name, first.removed)
    for name in ("event inbox", "online store", "decision log", "label queue"):
        assert second.removed[name] > 0, (name, second.removed)

    time.sleep(1.5)
    assert find(settings.home, pattern) == {}
    assert _others(settings, gone) == before  # everyone else's features, as they were
    logged = [
        orjson.loads(line)
        for f in settings.paths.decisions.rglob("*.jsonl")
        for line in f.read_bytes().splitlines()
    ]
    assert sum(d["session_id"] == "erasure-stays-1" for d in logged) >= answered["200"] + 1

    # Idempotent (here through the command, which holds the features lock), and audited
    # without the id.
    get_settings.cache_clear()  # the command reads its home from this environment
    env = {"MICROTUNE_HOME": str(settings.home), "MICROTUNE_PROFILE": settings.profile}
    out = CliRunner().invoke(app, ["forget", "--user", "erasure-leaver", "--json"], env=env)
    get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    again = orjson.loads(out.stdout)
    assert again["total"] == 0 and again["sessions"] == 0
    audit = [orjson.loads(line) for line in audit_log(settings).read_bytes().splitlines()]
    assert [a["kind"] for a in audit[-3:]] == ["user"] * 3
    assert audit[-1]["subject"] == audit[-2]["subject"] != audit[-3]["subject"]
    assert audit[-1]["subject"].startswith("a_") and audit[-2]["total"] == second.total
    assert b"erasure-leaver" not in audit_log(settings).read_bytes()
    assert str(p("erasure-leaver")).encode() not in audit_log(settings).read_bytes()


def test_a_request_names_exactly_one_subject(tmp_path: Path) -> None:
    s = Settings(home=tmp_path / "home")
    with pytest.raises(InputError, match="exactly one"):
        forget(s, user="u1", session="s1")
    with pytest.raises(InputError, match="exactly one"):
        forget(s)
    with pytest.raises(InputError, match="empty"):
        forget(s, session=" ")
    # An empty home: nothing to remove, and still an audit line.
    assert forget(s, session="s1").total == 0
    assert len(audit_log(s).read_bytes().splitlines()) == 1
    # The quarantine holds rows of any shape: ids that are lists or numbers match nothing.
    odd = s.paths.quarantine / "api" / "odd.jsonl"
    odd.parent.mkdir(parents=True)
    rows = [{"session_id": ["s1"], "user_id": ["u1"]}, {"session_id": "s1", "user_id": 7}]
    odd.write_bytes(b"".join(orjson.dumps({"reason": "x", "row": r}) + b"\n" for r in rows))
    assert forget(s, user="u1").removed["quarantine"] == 0
    assert forget(s, session="s1").removed["quarantine"] == 1
