"""Live events through a Redis Stream, on real Redis: scorers append, workers fold and store.

The Feast project (online store on Redis, registry on PostgreSQL) is unique
to the module and removed afterwards, with the stream's keys. Workers run as
threads here (``StreamWorker``), except the one killed with SIGKILL, a real
``microtune stream-worker`` process. What arrived is checked against what
was sent: each session's online state against the fold of its events, done
once in process, and the raw store's event ids against the ids sent.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import pyarrow.parquet as pq
import pytest
from serving_harness import Server
from test_production_profile import _drop_project, _require_servers

from core.settings import Settings

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.slow]

FAST = {"durability": "none", "lease_s": 1.5, "raw_flush_s": 0.3, "block_ms": 20}


def stream_settings(home: Path, project: str, redis_url: str, **stream: Any) -> Settings:
    return Settings(
        home=home,
        profile="production",
        project=project,
        redis_url=redis_url,
        mlflow_tracking_uri=f"sqlite:///{home}/mlflow.db",  # no champion: events need none
        serve={"model_poll_s": 0.3, "rate_limit_events_per_min": 0},
        stream={"enabled": True, **FAST, **stream},
    )


def tuned(settings: Settings, **stream: Any) -> Settings:
    """``settings`` with these stream settings changed."""
    return settings.model_copy(update={"stream": settings.stream.model_copy(update=stream)})


def apply_project(settings: Settings) -> None:
    from stores.feature_store import apply_definitions, ensure_uci, open_store

    settings.paths.ensure()
    _require_servers(settings)
    ensure_uci(settings)
    apply_definitions(settings, open_store(settings))


def drop_stream(settings: Settings) -> None:
    from stores.event_stream import EventStream

    stream = EventStream(settings)
    seen = list(stream.client.scan_iter(match=stream.keys.seen("*"), count=10_000))
    leases = list(stream.client.scan_iter(match=stream.keys.lease("*"), count=10_000))  # type: ignore[arg-type]
    stream.client.delete(
        *stream.keys.all_events, stream.keys.dead, stream.keys.workers, *seen, *leases
    )
    _drop_project(settings)


@contextlib.contextmanager
def project_home(home: Path, prefix: str) -> Iterator[Settings]:
    """A stream home on CI's Redis with a Feast project of its own, dropped afterwards."""
    settings = stream_settings(home, f"{prefix}_{uuid4().hex[:8]}", "127.0.0.1:6379")
    apply_project(settings)
    try:
        yield settings
    finally:
        drop_stream(settings)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    with project_home(tmp_path_factory.mktemp("stream") / "home", "mt_st") as settings:
        yield settings


def events(session: str, n: int, *, consent: bool = True, start: datetime | None = None) -> list:
    """``n`` events of one session, a second apart, of every folded kind."""
    start = start or datetime.now(UTC) - timedelta(minutes=5)
    kinds = [
        ("hover", {"element_id": "price", "duration_ms": 800.0}),
        ("scroll", {"scroll_depth": 0.5, "scroll_velocity": 900.0}),
        ("image_zoom", {"element_id": "photo-1"}),
        ("add_to_cart", {"cart_value": 40.0}),
        ("click", {"element_id": "buy"}),
    ]
    out = []
    for i in range(n):
        kind, fields = kinds[i % len(kinds)]
        out.append(
            {
                "event_id": f"{session}-e{i}",
                "session_id": session,
                "ts": (start + timedelta(seconds=i)).isoformat(),
                "event_type": kind,
                "page_type": "product",
                "device": "mobile",
                "browser": "chrome",
                "consent": consent,
                **fields,
            }
        )
    return out


def expected_state(sent: list[dict]) -> dict[str, float]:
    """The session's state folded once, in process, from the events as the API keeps them."""
    from events.validation import validate_rows
    from features.stream import fold_sessions

    rows = validate_rows(sent).to_rows()
    folded, _ = fold_sessions({"s": None}, {"s": [{**r, "ts": r["ts"].timestamp()} for r in rows]})
    return folded["s"][0]


def online_states(settings: Settings, sessions: list[str]) -> dict[str, Any]:
    from serving.online import OnlineFeatures
    from stores.feature_store import open_store

    return OnlineFeatures(open_store(settings), timeout_s=5).session_states(sessions, time.time())


def raw_ids(settings: Settings) -> list[str]:
    from events.raw_store import RawEventStore

    files = RawEventStore(settings.paths.raw_events).part_files()
    return [
        i for f in files for i in pq.read_table(f, columns=["event_id"])["event_id"].to_pylist()
    ]


def drain(settings: Settings, workers: list[Any], timeout: float = 60) -> None:
    """Run the workers (threads) until the stream has nothing left to process."""
    from stores.event_stream import EventStream

    stream = EventStream(settings)
    stop = threading.Event()
    threads = [threading.Thread(target=w.run, args=(stop,)) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    try:
        while stream.backlog().total and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    left = stream.backlog()
    assert left.total == 0, (left, [(w.name, sorted(w.owned), w.stats) for w in workers])


def test_two_scorers_and_two_workers_fold_each_event_once_and_store_it_once(
    home: Settings,
) -> None:
    from serving.stream_worker import StreamWorker

    sessions = [f"st1-{i}" for i in range(12)]
    sent = {s: events(s, 40) for s in sessions}
    with Server(home) as a, Server(home) as b:
        for i, s in enumerate(sessions):
            url = (a, b)[i % 2].url
            answer = httpx.post(f"{url}/v1/events", json={"events": sent[s]})
            assert answer.status_code == 202, answer.text
            assert answer.json()["queued"] == 40 and answer.json()["sessions_updated"] == 0
        # A client's retry of a whole batch, an exposure and events without consent.
        assert (
            httpx.post(f"{a.url}/v1/events", json={"events": sent[sessions[0]]}).status_code == 202
        )
        exposure = {"event_id": "x-exp", "event_type": "exposure", "element_id": "emphasize_cta"}
        extra = [*events("st1-x", 3, consent=False), {**events("st1-0", 1)[0], **exposure}]
        assert httpx.post(f"{b.url}/v1/events", json={"events": extra}).json()["queued"] == 4
        time.sleep(0.8)  # the gauges refresh every model_poll_s
        metrics = httpx.get(f"{a.url}/metrics").text
        assert 'microtune_stream_entries{state="lag"} 524.0' in metrics, metrics[-2000:]
    workers = [StreamWorker(tuned(home, batch=50), n) for n in ("w1", "w2")]
    drain(home, workers)
    assert all(w.stats.read > 0 for w in workers), [w.stats for w in workers]  # shared
    assert sum(w.stats.duplicates for w in workers) == 40  # the retried batch
    states = online_states(home, [*sessions, "st1-x"])
    for s in sessions:
        got = states[s]
        assert got is not None and got.values == pytest.approx(
            nan_ok=True, expected=expected_state(sent[s])
        ), s
    assert states["st1-x"] is None  # no consent: no state
    ids = raw_ids(home)
    want = {e["event_id"] for evs in sent.values() for e in evs} | {e["event_id"] for e in extra}
    assert len(ids) == len(set(ids)) and set(ids) == want


def test_a_poison_event_goes_to_the_dead_letters_and_the_rest_is_kept(home: Settings) -> None:
    """Poison is written to the stream directly: the API checks events and never writes
    it, but another producer or an older contract could."""
    import orjson

    from serving.stream_worker import StreamWorker
    from stores.event_stream import EventStream

    stream = EventStream(home)
    stream.ensure_group()
    good = events("st2-ok", 3)
    bad = {**events("st2-bad", 1)[0], "event_type": "teleport"}
    stream.append([*good[:2], bad])
    stream.client.xadd(stream.keys.events(0), {"e": b"{not json"})
    stream.append(good[2:])
    drain(home, [StreamWorker(home, "w-poison")])
    from events.validation import validate_rows

    dead = stream.client.xrange(stream.keys.dead)
    why = validate_rows([bad]).rejected[0].reason
    by_reason = {f[b"reason"].decode(): f[b"e"] for _, f in dead}
    assert sorted(by_reason) == sorted([why, "e: not JSON"]) and len(dead) == 2
    assert orjson.loads(by_reason[why])["event_id"] == "st2-bad-e0"
    assert by_reason["e: not JSON"] == b"{not json"
    assert online_states(home, ["st2-ok"])["st2-ok"].values == pytest.approx(
        nan_ok=True, expected=expected_state(good)
    )
    assert {"st2-ok-e0", "st2-ok-e1", "st2-ok-e2"} <= set(raw_ids(home))
    assert "st2-bad-e0" not in raw_ids(home)


def test_back_pressure_answers_503_and_takes_nothing(home: Settings) -> None:
    from serving.stream_worker import StreamWorker
    from stores.event_stream import EventStream

    tight = tuned(home, max_backlog=30)
    stream = EventStream(tight)
    with Server(tight) as server:
        assert (
            httpx.post(f"{server.url}/v1/events", json={"events": events("st3", 40)}).status_code
            == 202
        )
        time.sleep(0.3)  # the backlog is measured at most every 0.2 s
        length = sum(stream.client.xlen(k) for k in stream.keys.all_events)
        refused = httpx.post(f"{server.url}/v1/events", json={"events": events("st3b", 5)})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "MAX_BACKLOG" in refused.json()["detail"]
        assert sum(stream.client.xlen(k) for k in stream.keys.all_events) == length  # none taken
        drain(tight, [StreamWorker(tight, "w-bp")])
        time.sleep(0.3)
        assert (
            httpx.post(f"{server.url}/v1/events", json={"events": events("st3b", 5)}).status_code
            == 202
        )
    drain(tight, [StreamWorker(tight, "w-bp")])


def test_aof_durability_is_checked_with_a_clear_message(home: Settings) -> None:
    """CI's Redis keeps nothing on disk: with durability `aof` the API refuses events."""
    from stores.event_stream import EventStream, StreamUnavailable

    strict = home.model_copy(
        update={"stream": home.stream.model_copy(update={"durability": "aof"})}
    )
    with pytest.raises(StreamUnavailable, match="appendonly yes"):
        EventStream(strict).append(events("st4", 1))


def test_forget_removes_the_stream_entries_and_folded_ids(home: Settings) -> None:
    from stores.erasers import forget
    from stores.event_stream import EventStream, _events_of

    stream = EventStream(home)
    stream.ensure_group()
    stream.append(events("st5-gone", 3) + events("st5-keep", 2))
    stream.client.hset(stream.keys.seen("st5-gone"), mapping={"st5-gone-e0": 1})
    report = forget(home, session="st5-gone")
    assert report.removed["event stream"] == 4  # 3 entries and the hash
    left = {
        e["session_id"] for k in stream.keys.all_events for _, e in _events_of(stream.client, k)
    }
    assert "st5-gone" not in left and "st5-keep" in left
    assert not stream.client.exists(stream.keys.seen("st5-gone"))


def test_session_rows_are_read_and_written_as_feasts_redis_store_does(home: Settings) -> None:
    """The workers' own reads and writes of session rows against Feast's, both ways."""
    from serving.online import OnlineFeatures
    from serving.redis_rows import RedisSessionRows
    from stores.event_stream import EventStream
    from stores.feature_store import open_store

    online = OnlineFeatures(open_store(home), timeout_s=5)
    rows = RedisSessionRows(online)
    client = EventStream(home).client
    now = time.time()
    state = {**expected_state(events("st6-a", 7)), "cart_value": -0.0, "event_count": 7.0}
    online.write_sessions({"st6-a": (state, now - 30)})  # Feast writes, we read
    ours = rows.parse(client.hmget(rows.key("st6-a"), rows.fields), now)
    assert ours is not None and ours == online.session_state("st6-a", now)
    for key, fields in rows.rows({"st6-b": (state, now - 20)}):  # we write, Feast reads
        client.hset(key, mapping=fields)
    feasts = online.session_state("st6-b", now)
    assert feasts is not None and feasts.values == state and feasts.ts == pytest.approx(now - 20)
    assert rows.parse(client.hmget(rows.key("st6-none"), rows.fields), now) is None


def test_an_event_from_another_producer_is_checked_by_the_contract(home: Settings) -> None:
    """Written to the stream directly, with an epoch time: the contract takes it, and it
    is folded and stored as the API would have kept it."""
    from serving.stream_worker import StreamWorker
    from stores.event_stream import EventStream

    stream = EventStream(home)
    stream.ensure_group()
    e = events("st7", 1)[0]
    foreign = {**e, "ts": datetime.fromisoformat(e["ts"]).timestamp(), "extra": "ignored"}
    stream.append([foreign])
    drain(home, [StreamWorker(home, "w-foreign")])
    assert online_states(home, ["st7"])["st7"].values == pytest.approx(
        nan_ok=True, expected=expected_state([e])
    )
    assert "st7-e0" in raw_ids(home)
