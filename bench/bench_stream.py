"""The event stream's throughput and freshness, on a Redis of its own.

    python bench/bench_stream.py [--events 200000] [--per-session 10] [--rate 2000]
                                 [--probes 200] [--fsync always|everysec|no]

Needs ``redis-server`` and PostgreSQL at 127.0.0.1:5432 (database ``test``,
for the Feast registry). Set-up: a private ``redis-server`` on a free port
writing its append-only file (``--fsync``, default ``always``, as the
production stack runs it), and a production home per measurement (its own
Feast project, removed at the end).

Printed, each beside its baseline, measured in one run:

* **events/s through the stream, one consumer process**: ``--events``
  generated events (``--per-session`` a session) are appended to the stream
  first (as the API appends them), then one ``microtune stream-worker``
  process folds, stores and acknowledges them; the rate counts from the
  first acknowledged entry to the last (goal >= 20,000/s). Baseline: the
  embedded path, the scorer's own fold of the same events in process
  (validation, fold, SQLite online write and inbox append per 1,000), no
  HTTP.
* **the same with two consumer processes**, for the scaling.
* **freshness**: ``microtune serve`` with the stream on and one worker,
  while a load of ``--rate`` events/s goes to ``POST /v1/events``; every
  50 ms one probe event of a new session is posted and ``POST /v1/score`` is
  polled until its features count it. The time from the 202 to the first
  answer that counts it, p50 and p99 over ``--probes`` probes (goal p99 <=
  50 ms). Baseline: the embedded path folds before it answers (0 ms).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import httpx
import orjson
from serving_setup import BIN, ROOT, wait_ready

from core.settings import Settings


def redis_server(port: int, work: Path, fsync: str) -> subprocess.Popen:
    disk = (
        ["--appendonly", "no"] if fsync == "no" else ["--appendonly", "yes", "--appendfsync", fsync]
    )
    proc = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(work),
            *disk,
        ],
        stdout=subprocess.DEVNULL,
    )
    import redis

    for _ in range(100):
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError("redis-server did not start")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def production(work: Path, port: int, name: str, **stream: Any) -> Settings:
    """A production home of its own (Feast project applied), the stream on."""
    from stores.feature_store import apply_definitions, ensure_uci, open_store

    home = work / name
    s = Settings(
        home=home,
        profile="production",
        project=f"bs_{name}_{uuid4().hex[:6]}",
        redis_url=f"127.0.0.1:{port}",
        mlflow_tracking_uri=f"sqlite:///{home}/mlflow.db",
        serve={"rate_limit_events_per_min": 0, "rate_limit_score_per_min": 0},
        stream={"enabled": True, "durability": "aof", **stream},
    )
    s.paths.ensure()
    ensure_uci(s)
    apply_definitions(s, open_store(s))
    return s


def records(n: int, per_session: int, tag: str) -> list[dict[str, Any]]:
    """``n`` events as the API keeps them (validated, in the inbox's form)."""
    from events.validation import validate_rows

    start = datetime.now(UTC) - timedelta(minutes=50)
    kinds = [
        ("hover", {"element_id": "price", "duration_ms": 700.0}),
        ("scroll", {"scroll_depth": 0.4, "scroll_velocity": 800.0}),
        ("image_zoom", {"element_id": "photo"}),
        ("add_to_cart", {"cart_value": 30.0}),
        ("click", {"element_id": "buy"}),
    ]
    raw = []
    for i in range(n):
        s, j = divmod(i, per_session)
        kind, extra = kinds[j % len(kinds)]
        raw.append(
            {
                "event_id": f"{tag}-{i}",
                "session_id": f"{tag}-s{s}",
                "ts": (start + timedelta(seconds=s % 3000 + j)).isoformat(),
                "event_type": kind,
                "page_type": "product",
                "device": "mobile",
                "browser": "chrome",
                "consent": True,
                **extra,
            }
        )
    rows = validate_rows(raw).to_rows()
    return [{**r, "ts": r["ts"].isoformat().replace("+00:00", "Z")} for r in rows]


def env_of(s: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "MICROTUNE_HOME": str(s.home),
        "MICROTUNE_PROFILE": "production",
        "MICROTUNE_PROJECT": s.project,
        "MICROTUNE_REDIS_URL": s.redis_url,
        "MICROTUNE_MLFLOW_TRACKING_URI": str(s.mlflow_tracking_uri),
        "MICROTUNE_STREAM__ENABLED": "true",
        "MICROTUNE_STREAM__DURABILITY": "aof",
        "MICROTUNE_SERVE__RATE_LIMIT_EVENTS_PER_MIN": "0",
        "MICROTUNE_SERVE__RATE_LIMIT_SCORE_PER_MIN": "0",
    }


def spawn(cmd: list[str], s: Settings, log: Path) -> subprocess.Popen:
    """``cmd`` on the home of ``s``, its output to ``log``."""
    return subprocess.Popen(
        cmd, env=env_of(s), cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT
    )


def workers(s: Settings, n: int, log: Path) -> list[subprocess.Popen]:
    cmd = [str(BIN / "microtune"), "stream-worker", "--log-level", "warning"]
    return [spawn([*cmd, "--name", f"w{i}"], s, log.with_suffix(f".{i}.log")) for i in range(n)]


def through_stream(s: Settings, recs: list[dict[str, Any]], n_workers: int, work: Path) -> float:
    """Events per second that ``n_workers`` worker processes fold, store and acknowledge."""
    from stores.event_stream import EventStream

    stream = EventStream(s)
    for lo in range(0, len(recs), 5_000):
        stream.append(recs[lo : lo + 5_000])
    total = stream.backlog().total
    procs = workers(s, n_workers, work / f"through-{n_workers}")
    try:
        first = None
        while True:
            left = stream.backlog().total
            now = time.perf_counter()
            if first is None and left < total:
                first, first_left = now, left
            if left == 0:
                break
            if any(p.poll() is not None for p in procs):
                raise RuntimeError("a stream worker exited: see its log")
            time.sleep(0.02)
        assert first is not None
        return (first_left) / (now - first) if now > first else float("nan")
    finally:
        for p in procs:
            p.terminate()
            p.wait(30)


def in_process(recs: list[dict[str, Any]], work: Path) -> float:
    """Events per second of the embedded path's fold, in process (the baseline)."""
    from collections import defaultdict

    from events.validation import validate_rows
    from features.stream import fold_sessions
    from serving.online import OnlineFeatures
    from stores.decision_log import AppendLog
    from stores.feature_store import apply_definitions, open_store

    s = Settings(home=work / "embedded", profile="embedded")
    s.paths.ensure()
    store = open_store(s)
    apply_definitions(s, store)
    online = OnlineFeatures(store)
    inbox = AppendLog(s.paths.live_inbox)
    t0 = time.perf_counter()
    for lo in range(0, len(recs), 1_000):
        rows = validate_rows(recs[lo : lo + 1_000]).to_rows()
        inbox.append_many(recs[lo : lo + 1_000], (r["ts"].timestamp() for r in rows))
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in rows:
            by_session[r["session_id"]].append({**r, "ts": r["ts"].timestamp()})
        new, _ = fold_sessions(online.session_states(list(by_session), time.time()), by_session)
        online.write_sessions(new)
    inbox.flush()
    return len(recs) / (time.perf_counter() - t0)


def freshness(s: Settings, rate: int, probes: int, work: Path) -> list[float]:
    """Milliseconds from the 202 to the probe event counted by /v1/score, under load."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = work / "scorer.log"
    scorer = spawn([str(BIN / "microtune"), "serve", "--port", str(port)], s, log)
    procs = workers(s, 1, work / "fresh")
    stop = threading.Event()
    # Every body made before the clock starts: the bench's own work stays out of the way.
    batches = int(rate / 50 * (probes * 0.08 + 10))
    load_bodies = [orjson.dumps({"events": records(50, 10, f"load{i}")}) for i in range(batches)]
    probe_events = [records(1, 1, f"probe{i}")[0] for i in range(probes)]
    sent = [0]
    try:
        wait_ready(f"{url}/healthz", scorer)
        load = threading.Thread(target=_load, args=(url, rate, load_bodies, stop, sent))
        load.start()
        out: list[float] = []
        t_start = time.perf_counter()
        with httpx.Client(base_url=url, timeout=10) as c:
            for e in probe_events:
                time.sleep(0.05)
                answer = c.post("/v1/events", json={"events": [e]})
                t0 = time.perf_counter()
                assert answer.status_code == 202, answer.text
                while time.perf_counter() - t0 < 5:
                    got = c.post("/v1/score", json={"session_id": e["session_id"]}).json()
                    if got["features"].get("event_count") == 1:
                        break
                out.append((time.perf_counter() - t0) * 1000)
        print(f"  (load: {50 * sent[0] / (time.perf_counter() - t_start):,.0f} events/s sent)")
        return out
    finally:
        stop.set()
        if "load" in locals():
            load.join(30)
        for p in (scorer, *procs):
            p.terminate()
            p.wait(30)


def _load(url: str, rate: int, bodies: list[bytes], stop: threading.Event, sent: list[int]) -> None:
    """``rate`` events/s: the bodies of 50 events, in order, each of new sessions."""
    every = 50 / rate
    headers = {"Content-Type": "application/json"}
    with httpx.Client(base_url=url, timeout=10) as c:
        nxt = time.perf_counter()
        for body in bodies:
            if stop.is_set():
                return
            c.post("/v1/events", content=body, headers=headers)
            sent[0] += 1
            nxt += every
            time.sleep(max(0.0, nxt - time.perf_counter()))


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--per-session", type=int, default=10)
    ap.add_argument("--rate", type=int, default=2_000)
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--fsync", choices=["always", "everysec", "no"], default="always")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mt-bench-stream-"))
    port = free_port()
    redis = redis_server(port, work, a.fsync)
    made: list[Settings] = []
    try:
        recs = records(a.events, a.per_session, "b")
        print(
            f"{a.events:,} events in {a.events // a.per_session:,} sessions; Redis appendfsync "
            f"{a.fsync}; {os.cpu_count()} CPUs"
        )
        base = in_process(recs, work)
        print(f"baseline, the embedded fold in process: {base:,.0f} events/s")
        for n in (1, 2):
            made.append(production(work, port, f"c{n}"))
            rate = through_stream(made[-1], recs, n, work)
            print(
                f"through the stream, {n} consumer process{'es' if n > 1 else ''}: "
                f"{rate:,.0f} events/s (x{rate / base:.2f} the baseline; goal >= 20,000 "
                f"for one)"
            )
        made.append(production(work, port, "fresh"))
        ms = freshness(made[-1], a.rate, a.probes, work)
        q = statistics.quantiles(ms, n=100)
        print(
            f"freshness at {a.rate:,} events/s, {len(ms)} probes: "
            f"p50 {statistics.median(ms):.1f} ms, p99 {q[98]:.1f} ms, max {max(ms):.1f} ms "
            "(goal p99 <= 50; embedded: 0, folded before the answer)"
        )
    finally:
        for s in made:
            _drop(s)
        redis.terminate()
        redis.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def _drop(s: Settings) -> None:
    """Remove the project's Redis keys and Feast registry rows (as the tests do)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_production_profile import _drop_project

    try:
        _drop_project(s)
    except Exception as exc:  # the bench's figures are printed already
        print(f"(cleanup of {s.project}: {exc})", file=sys.stderr)


if __name__ == "__main__":
    main()
