"""A soak of the production scorer: 60 s at about 80% of its capacity, window by window.

    python bench/bench_soak.py [--seconds 60] [--share 0.8] [--keep]

Needs ``wrk`` (apt-get install wrk), Redis at 127.0.0.1:6379 and PostgreSQL
at 127.0.0.1:5432 (database ``test``). Set-up: a production home of its own
(a Feast project ``soak_<hex>`` in Redis and the SQL registry, MLflow in a
database ``mt_soak_<hex>``; both removed at the end unless --keep), trained
and promoted from four days of generated events, then 200 live sessions
through ``POST /v1/events``.

The scorer (``microtune serve``, one worker) runs pinned to core 0, ``wrk``
on core 1. Its capacity is measured first (``wrk`` closed loop, 16
connections, 10 s). The soak then paces 8 connections (each waits between
answer and next request) so that they ask for ``--share`` of that capacity,
for ``--seconds``, as back-to-back 10-second windows. Each window prints its
request rate, errors, p50/p99 and the scorer's resident memory at its end.
The verdict sets the last windows beside the first: errors (goal 0), the
memory's growth after the first window (goal flat: under 5%), and p99 (goal
stable: the median p99 of the later windows within 1.5x the first's).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

from serving_load import LOAD_CORE, need_wrk, wrk
from serving_setup import (
    ROOT,
    post_live_sessions,
    probe,
    request_bodies,
    scorer_command,
    start,
    wait_ready,
)

WINDOW_S = 10.0
PACED_CONNECTIONS = 8
PORT = 18741


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def production_home(work: Path) -> tuple[Any, str]:
    """A trained production home of the bench's own, and its MLflow database's name."""
    import psycopg

    sys.path.insert(0, str(ROOT / "tests"))
    from serving_harness import trained_home

    from core.settings import Settings

    database = f"mt_soak_{uuid4().hex[:10]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{database}"')
    settings = Settings(
        home=work / "home",
        profile="production",
        project=f"soak_{uuid4().hex[:10]}",
        mlflow_tracking_uri=f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}",
        gate={"max_ece": 0.15},
        serve={"rate_limit_score_per_min": 0, "rate_limit_events_per_min": 0},
    )
    print(f"building a production home (project {settings.project}) ...", flush=True)
    trained_home(settings, work)
    return settings, database


def cleanup(settings: Any, database: str) -> None:
    """Remove the bench's Feast project (Redis keys, registry rows) and MLflow database."""
    import psycopg
    from test_production_profile import _drop_project

    _drop_project(settings)
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/test", autocommit=True) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def soak(url: str, bodies: Path, pid: int, seconds: float, share: float) -> dict[str, Any]:
    """Capacity, then paced windows; every figure of the run."""
    wrk(url, bodies, 1, 3)  # warm-up, not measured
    cap = wrk(url, bodies, 16, WINDOW_S)
    capacity = cap["rps"]
    target = share * capacity
    # Each connection: one request per (answer time + delay); p50 from the capacity run
    # at 1 connection stands in for the answer time.
    one = wrk(url, bodies, 1, 5)
    delay_ms = max(0.0, 1000.0 * PACED_CONNECTIONS / target - one["p50_ms"])
    print(
        f"capacity {capacity:,.0f} req/s (c=16); target {target:,.0f} req/s = {share:.0%}: "
        f"{PACED_CONNECTIONS} connections, {delay_ms:.2f} ms between answer and next request",
        flush=True,
    )
    windows = []
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds - 0.5:
        out = wrk(url, bodies, PACED_CONNECTIONS, WINDOW_S, delay_ms=delay_ms)
        out["rss_mb"] = rss_mb(pid)
        out["errors"] = out["non2xx"] + out["socket_errors"]
        windows.append(out)
        print(
            f"window {len(windows)}: {out['rps']:7,.0f} req/s  errors {out['errors']}  "
            f"p50 {out['p50_ms']:6.2f}  p99 {out['p99_ms']:6.2f}  max {out['max_ms']:7.2f} ms  "
            f"rss {out['rss_mb']:6.1f} MB",
            flush=True,
        )
    return {"capacity": capacity, "target": target, "delay_ms": delay_ms, "windows": windows}


def report(run: dict[str, Any]) -> None:
    w = run["windows"]
    first, later = w[0], w[1:] or w
    errors = sum(x["errors"] for x in w)
    growth = (w[-1]["rss_mb"] - first["rss_mb"]) / first["rss_mb"]
    p99_later = statistics.median(x["p99_ms"] for x in later)
    rate = statistics.median(x["rps"] for x in w)
    print()
    print(f"offered load: {rate:,.0f} req/s = {rate / run['capacity']:.0%} of capacity (goal ~80%)")
    print(f"errors: {errors} (goal 0)")
    print(
        f"memory: {first['rss_mb']:.1f} MB after the first window, {w[-1]['rss_mb']:.1f} MB "
        f"at the end: {growth:+.1%} (goal flat, under 5%)"
    )
    print(
        f"p99: first window {first['p99_ms']:.2f} ms, later windows (median) {p99_later:.2f} ms "
        f"= {p99_later / first['p99_ms']:.2f}x (goal stable, <= 1.5x)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="Length of the soak.")
    ap.add_argument("--share", type=float, default=0.8, help="Share of capacity to offer.")
    ap.add_argument("--keep", action="store_true", help="Keep the Feast project and database.")
    args = ap.parse_args()
    need_wrk()
    os.sched_setaffinity(0, {LOAD_CORE})
    work = Path(tempfile.mkdtemp(prefix="mt-bench-soak-"))
    settings, database = production_home(work)
    proc = None
    try:
        env = {**os.environ, **settings.environment(), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
        proc = start(scorer_command(PORT), env, work / "serve.log")
        url = f"http://127.0.0.1:{PORT}"
        wait_ready(url + "/readyz", proc)
        post_live_sessions(url, datetime.now(UTC))
        bodies, _ = request_bodies(work, datetime.now(UTC))
        probe(url + "/v1/score", bodies, degraded_ok=False)
        run = soak(url + "/v1/score", bodies, proc.pid, args.seconds, args.share)
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        if not args.keep:
            cleanup(settings, database)
    report(run)


if __name__ == "__main__":
    main()
