"""A ``kill -9`` of the scorer under load loses no acknowledged decision and no acknowledged event.

The scorer runs as ``microtune serve`` in its own process; two clients send
scores and event batches as fast as it answers, and the scorer is killed with
SIGKILL in the middle. Every decision and event it answered 200 for must be in
the decision log and the event inbox afterwards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from serving_harness import free_port

from core.settings import Settings
from stores.decision_log import read_decisions

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def _scores(url: str, stop: threading.Event, acked: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=5) as c:
        i = 0
        while not stop.is_set():
            sid = f"crash-s{i}"
            i += 1
            try:
                if c.post("/v1/score", json={"session_id": sid}).status_code == 200:
                    acked.append(sid)
            except httpx.HTTPError:
                return


def _events(url: str, stop: threading.Event, acked: list[str]) -> None:
    with httpx.Client(base_url=url, timeout=5) as c:
        i = 0
        while not stop.is_set():
            now = datetime.now(UTC)
            batch = [
                {
                    "event_id": f"crash-e{i}-{k}",
                    "session_id": f"crash-session-{i % 50}",
                    "ts": (now - timedelta(seconds=1)).isoformat(),
                    "event_type": "hover",
                    "page_type": "product",
                    "device": "mobile",
                    "browser": "safari",
                    "duration_ms": 400.0,
                    "consent": True,
                }
                for k in range(20)
            ]
            i += 1
            try:
                r = c.post("/v1/events", json={"events": batch})
            except httpx.HTTPError:
                return
            if r.status_code == 200 and r.json()["accepted"] == len(batch):
                acked += [e["event_id"] for e in batch]


def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path) -> None:
    settings = Settings(
        home=tmp_path / "home",
        serve={"rate_limit_score_per_min": 0, "rate_limit_events_per_min": 0},
    )
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, **settings.environment()}
    cmd = [sys.executable, "-m", "cli.main", "serve", "--port", str(port)]
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, "the scorer did not start"
            time.sleep(0.3)
        stop = threading.Event()
        decisions: list[str] = []
        events: list[str] = []
        clients = [
            threading.Thread(target=_scores, args=(url, stop, decisions)),
            threading.Thread(target=_events, args=(url, stop, events)),
        ]
        for t in clients:
            t.start()
        time.sleep(3.0)
        os.kill(proc.pid, signal.SIGKILL)  # mid-flight: no flush, no shutdown
        proc.wait(timeout=30)
        stop.set()
        for t in clients:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    assert len(decisions) > 200 and len(events) > 200, (len(decisions), len(events))
    now = datetime.now(UTC)
    logged = read_decisions(settings.paths.decisions, now - timedelta(hours=2), now)
    assert set(decisions) <= set(logged.column("session_id").to_pylist())
    kept = {
        orjson.loads(line)["event_id"]
        for f in settings.paths.live_inbox.rglob("*.jsonl")
        for line in f.read_bytes().splitlines()
        if line.strip()
    }
    assert set(events) <= kept
