"""The load side of ``bench_serving``: ``wrk`` on its own core, event batches, freshness.

``wrk`` (an external, closed-loop HTTP load tool written in C) drives every
latency figure, pinned to core 1 while the servers sit on core 0, so that the
numbers are what a client outside the project would see. Its Lua script,
``bench/wrk_post.lua``, posts the lines of a JSON-lines file in turn and prints
a JSON summary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
LOAD_CORE = 1
EVENT_TYPES = ("hover", "scroll", "click", "add_to_cart")


def need_wrk() -> str:
    """The path of ``wrk``, or a clear exit telling how to install it."""
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(
            "bench_serving drives the external load tool `wrk`, which is not installed: "
            "apt-get install wrk (Debian/Ubuntu) or brew install wrk (macOS)."
        )
    return path


def wrk(
    url: str, bodies: Path, concurrency: int, duration: float, delay_ms: float | None = None
) -> dict[str, Any]:
    """``wrk`` against ``url`` for ``duration`` seconds with ``concurrency`` connections,
    each waiting ``delay_ms`` before each request when given (a paced load)."""
    out = subprocess.run(
        [
            "taskset",
            "-c",
            str(LOAD_CORE),
            need_wrk(),
            "-t1",
            f"-c{concurrency}",
            f"-d{duration:g}s",
            "--timeout",
            "10s",
            "-s",
            str(ROOT / "bench" / "wrk_post.lua"),
            url,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "BODIES": str(bodies)}
        | ({"DELAY_MS": f"{delay_ms:.3f}"} if delay_ms is not None else {}),
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-1500:]}{out.stderr}")
    result: dict[str, Any] = json.loads(lines[-1])
    result["rps"] = result["requests"] / result["seconds"]
    return result


def event_batch(n: int, size: int = 1000) -> list[dict[str, Any]]:
    """Batch ``n``: ``size`` events over 100 sessions of its own, half a minute old."""
    start = datetime.now(UTC) - timedelta(seconds=30)
    return [
        {
            "event_id": f"load-{n}-{i}",
            "session_id": f"load-{n}-{i % 100}",
            "ts": (start + timedelta(milliseconds=i)).isoformat(),
            "event_type": EVENT_TYPES[i % 4],
            "page_type": "product",
            "device": "mobile",
            "browser": "safari",
            "duration_ms": 300.0,
            "scroll_depth": 0.5,
            "scroll_velocity": 800.0,
            "cart_value": 20.0 if i % 4 == 3 else None,
            "consent": True,
        }
        for i in range(size)
    ]


class Batches:
    """A thread posting a 1,000-event batch every ``period`` seconds while in use.

    It runs in the bench process, on ``wrk``'s core (never the server's), and
    records how long each batch took to be acknowledged.
    """

    def __init__(self, url: str, period: float = 2.7, batches: int = 20) -> None:
        self.url, self.period = url, period
        self.took: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sent = 0
        # Encoded before the measurement starts: the sender's own work stays out of it.
        start = Batches.made
        Batches.made += batches
        self._bodies = [
            json.dumps({"events": event_batch(start + n)}).encode() for n in range(batches)
        ]

    #: Batches made so far in this process: every batch has fresh event ids.
    made = 0

    def _run(self) -> None:
        headers = {"Content-Type": "application/json"}
        with httpx.Client(base_url=self.url, timeout=60) as c:
            while not self._stop.is_set():
                body = self._bodies[self._sent % len(self._bodies)]
                t0 = time.perf_counter()
                r = c.post("/v1/events", content=body, headers=headers)
                self.took.append(time.perf_counter() - t0)
                if r.status_code != 200 or r.json()["accepted"] != 1000:
                    raise RuntimeError(f"batch refused: {r.status_code} {r.text[:300]}")
                self._sent += 1
                self._stop.wait(max(0.0, self.period - (time.perf_counter() - t0)))

    def __enter__(self) -> Batches:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def summary(self) -> dict[str, float]:
        took = sorted(self.took)
        return {"batches": len(took), "batch_p50_ms": took[len(took) // 2] * 1000}


def freshness(url: str, rounds: int = 300) -> dict[str, float]:
    """POST one event, then score: how long until the score counts it (p50, p99 in ms)."""
    lat = []
    now = datetime.now(UTC)
    session = f"fresh-{now:%H%M%S%f}"
    with httpx.Client(base_url=url) as c:
        for k in range(rounds):
            ev = {
                "event_id": f"{session}-{k}",
                "session_id": session,
                "ts": (now + timedelta(milliseconds=k)).isoformat(),
                "event_type": "hover",
                "page_type": "product",
                "duration_ms": 100 + k,
                "device": "desktop",
                "browser": "firefox",
                "consent": True,
            }
            t0 = time.perf_counter()
            sent = c.post("/v1/events", json={"events": [ev]}).json()
            if sent["accepted"] != 1:
                raise AssertionError(f"event rejected: {sent}")
            got = c.post("/v1/score", json={"session_id": session}).json()
            t1 = time.perf_counter()
            if got["features"]["event_count"] != k + 1:
                raise AssertionError(f"score did not see event {k}: {got['features']}")
            lat.append(t1 - t0)
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}
