"""The event stream under faults: a worker killed mid-batch, and Redis going away.

A real ``microtune stream-worker`` process is killed with SIGKILL while it
holds events it has folded but not yet stored or acknowledged; a survivor
takes its partitions when its lease runs out, claims its pending entries and
finishes: every event sent is folded once and stored once. Then a Redis of
the test's own, writing its append-only file, is stopped under a scorer and
started again: the scorer answers 503 with Retry-After meanwhile, and every
event it accepted before is processed afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
from serving_harness import Server, free_port
from test_serving_production import RedisServer
from test_stream import (
    apply_project,
    drain,
    drop_stream,
    events,
    expected_state,
    online_states,
    project_home,
    raw_ids,
    stream_settings,
    tuned,
)

from core.settings import Settings

pytestmark = [pytest.mark.production, pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Settings]:
    with project_home(tmp_path / "home", "mt_sf") as settings:
        yield settings


def _worker_process(settings: Settings, name: str, **stream: object) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "MICROTUNE_HOME": str(settings.home),
        "MICROTUNE_PROFILE": "production",
        "MICROTUNE_PROJECT": settings.project,
        "MICROTUNE_REDIS_URL": settings.redis_url,
        "MICROTUNE_MLFLOW_TRACKING_URI": str(settings.mlflow_tracking_uri),
        "MICROTUNE_STREAM__ENABLED": "true",
        "MICROTUNE_STREAM__DURABILITY": "none",
        **{f"MICROTUNE_STREAM__{k.upper()}": str(v) for k, v in stream.items()},
    }
    exe = Path(sys.executable).with_name("microtune")
    return subprocess.Popen(
        [str(exe), "stream-worker", "--name", name, "--log-level", "warning"],
        env=env,
        stdout=subprocess.DEVNULL,
    )


def test_a_worker_killed_mid_batch_loses_nothing_and_counts_nothing_twice(
    home: Settings,
) -> None:
    from serving.stream_worker import StreamWorker
    from stores.event_stream import EventStream

    stream = EventStream(home)
    sessions = [f"sf1-{i}" for i in range(10)]
    sent = {s: events(s, 30) for s in sessions}
    # The victim holds what it folds for 4 s before storing and acknowledging it.
    victim = _worker_process(home, "victim", raw_flush_s=4, lease_s=9, batch=20)
    try:
        with Server(home) as server:
            for s in sessions[:6]:
                assert (
                    httpx.post(f"{server.url}/v1/events", json={"events": sent[s][:20]}).status_code
                    == 202
                )
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # folded (a session's state) but not acknowledged
                folded = any(v is not None for v in online_states(home, sessions[:6]).values())
                if folded and stream.backlog().pending > 0:
                    break
                time.sleep(0.05)
            victim.send_signal(signal.SIGKILL)
            victim.wait(10)
            pending = stream.backlog().pending
            assert pending > 0  # killed in the middle of a batch
            # More events arrive after the crash.
            for s in sessions:
                rest = sent[s][20:] if s in sessions[:6] else sent[s]
                assert (
                    httpx.post(f"{server.url}/v1/events", json={"events": rest}).status_code == 202
                )
    finally:
        if victim.poll() is None:
            victim.kill()
    survivor = StreamWorker(home, "survivor")
    drain(home, [survivor], timeout=90)  # waits out the victim's lease (9 s)
    assert survivor.stats.claimed >= pending and survivor.stats.duplicates > 0, survivor.stats
    states = online_states(home, sessions)
    for s in sessions:
        assert states[s] is not None and states[s].values == pytest.approx(
            expected_state(sent[s])
        ), s
    ids = raw_ids(home)
    assert len(ids) == len(set(ids)) == 300
    assert set(ids) == {e["event_id"] for evs in sent.values() for e in evs}


def test_redis_away_and_back_keeps_every_accepted_event(tmp_path: Path) -> None:
    from serving.stream_worker import StreamWorker

    redis = RedisServer(free_port(), persist=tmp_path / "redis")
    (tmp_path / "redis").mkdir()
    redis.start()
    settings = stream_settings(
        tmp_path / "home", f"mt_sr_{uuid4().hex[:8]}", f"127.0.0.1:{redis.port}", durability="aof"
    )
    try:
        apply_project(settings)
        sessions = [f"sr-{i}" for i in range(5)]
        sent = {s: events(s, 12) for s in sessions}
        with Server(settings) as server:
            for s in sessions:
                answer = httpx.post(f"{server.url}/v1/events", json={"events": sent[s]})
                assert answer.status_code == 202, answer.text
            redis.stop()
            down = httpx.post(f"{server.url}/v1/events", json={"events": events("sr-late", 2)})
            assert down.status_code == 503 and down.headers["retry-after"] == "1"
            assert down.json()["detail"].startswith("events not accepted: Redis:")
            redis.start()  # the same append-only file
            time.sleep(0.5)
            back = httpx.post(f"{server.url}/v1/events", json={"events": events("sr-late", 2)})
            assert back.status_code == 202, back.text
        drain(settings, [StreamWorker(settings, "after")])
        states = online_states(settings, [*sessions, "sr-late"])
        for s in sessions:
            assert states[s] is not None and states[s].values == pytest.approx(
                expected_state(sent[s])
            )
        assert len(raw_ids(settings)) == 5 * 12 + 2
    finally:
        if redis.proc is None:
            redis.start()
        try:
            drop_stream(settings)
        finally:
            redis.stop()


def test_a_raw_store_that_cannot_be_written_holds_the_events_back_until_it_can(
    home: Settings,
) -> None:
    """The raw store's folder is a plain file for a while (a real write failure): the
    worker acknowledges nothing it could not store, keeps working, and stores every event
    once the folder is back."""
    import shutil
    import threading

    from serving.stream_worker import StreamWorker
    from stores.event_stream import EventStream

    sessions = [f"sw-{i}" for i in range(4)]
    sent = {s: events(s, 15) for s in sessions}
    with Server(home) as server:
        for s in sessions:
            answer = httpx.post(f"{server.url}/v1/events", json={"events": sent[s]})
            assert answer.status_code == 202, answer.text
    worker = StreamWorker(tuned(home, raw_flush_s=0.2), "w")
    raw = home.paths.raw_events
    shutil.rmtree(raw, ignore_errors=True)
    raw.write_text("not a folder")
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,))
    thread.start()
    try:
        time.sleep(3)
        stream = EventStream(home)
        assert thread.is_alive() and stream.backlog().total == 60, stream.backlog()
        raw.unlink()
    finally:
        stop.set()
        thread.join(30)
    drain(home, [StreamWorker(home, "w")])
    ids = raw_ids(home)
    assert len(ids) == len(set(ids)) == 60


def test_the_worker_command_explains_itself_and_refuses_without_the_stream() -> None:
    exe = Path(sys.executable).with_name("microtune")
    helped = subprocess.run([str(exe), "stream-worker", "--help"], capture_output=True, text=True)
    assert helped.returncode == 0 and "MICROTUNE_STREAM__ENABLED" in helped.stdout
    env = {k: v for k, v in os.environ.items() if not k.startswith("MICROTUNE_STREAM")}
    off = subprocess.run(
        [str(exe), "stream-worker"], capture_output=True, text=True, env=env, timeout=60
    )
    assert off.returncode == 2 and "MICROTUNE_STREAM__ENABLED=true" in off.stderr
