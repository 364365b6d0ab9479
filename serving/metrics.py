"""Prometheus metrics of the scorer, and the ASGI middleware that times routes.

With several workers, ``microtune serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
under the home and ``/metrics`` aggregates every worker's samples.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client import multiprocess as prom_mp
from starlette.exceptions import HTTPException as StarletteHTTPException

ROUTES = frozenset(
    {
        "/v1/score",
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/admin/reload-models",
        "/v1/admin/reload-policy",
    }
)
BUCKETS = (0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)

LATENCY = Histogram(
    "microtune_request_seconds", "Request latency by route.", ["route"], buckets=BUCKETS
)
DECISIONS = Counter(
    "microtune_decisions_total", "Decided actions by action and variant.", ["action", "variant"]
)
DEGRADED = Counter("microtune_degraded_total", "Scores answered in degraded mode.")
EVENTS = Counter("microtune_events_total", "Live events by outcome.", ["outcome"])
LEARNED = Counter("microtune_river_learned_total", "Live labels river learnt.")
DRIFT = Counter("microtune_river_drift_total", "ADWIN drift signals on river's error stream.")
VERSIONS = Gauge(
    "microtune_model_version",
    "Champion version in use (1 for the current version).",
    ["model", "version"],
    multiprocess_mode="liveall",
)


#: Each route's histogram child, bound once.
_OBSERVE = {route: LATENCY.labels(route).observe for route in (*ROUTES, "other")}


def model_versions(versions: dict[str, str | None]) -> None:
    VERSIONS.clear()
    for model, version in versions.items():
        VERSIONS.labels(model, version or "none").set(1)


def count_decision(out: dict[str, Any]) -> None:
    variant = out["decision"]["variant"]
    for a in out["decision"]["actions"]:
        DECISIONS.labels(a["action"], variant).inc()
    if out["degraded"]:
        DEGRADED.inc()


def render() -> tuple[bytes, str]:
    # prometheus_client picks in-memory or file-backed values once, when it is
    # first imported; Feast sets PROMETHEUS_MULTIPROC_DIR on its own import, so
    # the environment now may not say which kind our metrics use.
    if values.ValueClass is not values.MutexValue:
        registry = CollectorRegistry()
        prom_mp.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST


async def _send_413(send: Any, limit: int) -> None:
    body = (
        b'{"detail":"request body larger than '
        + str(limit).encode()
        + b' bytes; send smaller batches"}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class _TooLarge(StarletteHTTPException):
    """Raised from ``receive``; FastAPI re-raises HTTP exceptions unchanged, so it answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"request body larger than {limit} bytes; send smaller batches")


class LatencyAndSizeLimit:
    """Pure ASGI middleware: per-route latency histogram and a request-body size limit."""

    def __init__(self, app: Any, max_body: int) -> None:
        self.app, self.max_body = app, max_body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        path = scope["path"]
        observe = _OBSERVE.get(path) or _OBSERVE["other"]
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                await _send_413(send, self.max_body)
                observe(time.perf_counter() - start)
                return
        seen = 0
        started = False

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def tracking_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await _send_413(send, self.max_body)
        finally:
            observe(time.perf_counter() - start)
