"""Prometheus metrics of the scorer, and the ASGI middleware that times routes.

With several workers, ``microtune serve`` sets ``PROMETHEUS_MULTIPROC_DIR``
under the home and ``/metrics`` aggregates every worker's samples.
"""

from __future__ import annotations

import logging
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

from core.logs import PERSONAL, REQUEST_ID
from feature_repo.features import SESSION_VIEW, USER_VIEW
from serving.errors import request_id

#: One line per request at INFO (``microtune serve --log-level info``): method,
#: route, status and time, under the request's id.
ACCESS = logging.getLogger("microtune.access")

ROUTES = frozenset(
    {
        "/v1/score",
        "/v1/events",
        "/healthz",
        "/readyz",
        "/metrics",
        "/v1/models",
        "/v1/admin/models",
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
SEGMENTS = Counter(
    "microtune_segment_scores_total",
    "Scores by the session's segment (its stable id; `none` without one).",
    ["segment"],
)
EVENTS = Counter("microtune_events_total", "Live events by outcome.", ["outcome"])
LEARNED = Counter("microtune_river_learned_total", "Live labels river learnt.")
BANDIT_LEARNED = Counter(
    "microtune_bandit_learned_total", "Sessions the bandit learnt from (decision and reward)."
)
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
    segment = out.get("segment")
    SEGMENTS.labels("none" if segment is None else str(segment["id"])).inc()


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
        # Every log line written while this request is handled carries its id.
        rid = REQUEST_ID.set(request_id(scope))
        personal = PERSONAL.set(())
        status = [0]
        try:
            await self._handle(scope, receive, send, status)
        finally:
            took = time.perf_counter() - start
            path = scope["path"]
            (_OBSERVE.get(path) or _OBSERVE["other"])(took)
            if ACCESS.isEnabledFor(logging.INFO):  # no address, no query: no personal data
                ACCESS.info("%s %s %s %.2f ms", scope["method"], path, status[0], took * 1000)
            PERSONAL.reset(personal)
            REQUEST_ID.reset(rid)

    async def _handle(self, scope: Any, receive: Any, send: Any, status: list[int]) -> None:
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_body:
                status[0] = 413
                await _send_413(send, self.max_body)
                return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def tracking_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                status[0] = message.get("status", 0)
                headers = message.setdefault("headers", [])
                if not any(k == b"x-request-id" for k, _ in headers):
                    headers.append((b"x-request-id", request_id(scope).encode()))
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not status[0]:
                status[0] = 413
                await _send_413(send, self.max_body)


# -- drift verdict and online feature freshness ---------------------------------
#
# These gauges use multiprocess_mode="mostrecent": with several workers, /metrics
# merges one file per process, and the most recent write of each series wins. The
# verdict is one-hot, so "max" is wrong: a worker that has not yet seen a new verdict
# (or one that has exited, whose file stays) would keep the old status at 1 beside the
# new one; "liveall" would show one series per process. Ages change on every refresh,
# and the newest refresh is the one to show.

#: The statuses of a drift verdict (docs/drift.md), the label values of the one-hot gauge.
DRIFT_STATUSES = ("pass", "warn", "fail", "no_data")
#: The online feature views whose age is exported from the start (NaN until set).
FEATURE_VIEWS = (SESSION_VIEW, USER_VIEW)

DRIFT_VERDICT = Gauge(
    "microtune_drift_verdict",
    "Latest drift verdict: 1 on its status, 0 on the others.",
    ["status"],
    multiprocess_mode="mostrecent",
)
DRIFT_VERDICT_AGE = Gauge(
    "microtune_drift_verdict_age_seconds",
    "Seconds since the latest drift verdict was written (NaN when there is none).",
    multiprocess_mode="mostrecent",
)
FEATURE_AGE = Gauge(
    "microtune_online_features_age_seconds",
    "Seconds since the newest row of a feature view was written to the online store "
    "(NaN when it holds none).",
    ["view"],
    multiprocess_mode="mostrecent",
)


def set_drift_verdict(status: str | None, age_s: float | None) -> None:
    """Publish the latest drift verdict and its age.

    ``status`` is the verdict's overall status (``pass``, ``warn``, ``fail`` or
    ``no_data``); None means no verdict was written yet and reads as ``no_data``.
    ``age_s`` is the seconds since the verdict was written; None exports NaN, so
    that a missing verdict never looks fresh. Call it again whenever the verdict
    may have changed, and often enough that the age stays current.

    Raises ValueError on any other status, rather than exporting a one-hot with no 1.
    """
    current = status or "no_data"
    if current not in DRIFT_STATUSES:
        raise ValueError(f"drift status {status!r} is not one of {DRIFT_STATUSES}")
    for s in DRIFT_STATUSES:
        DRIFT_VERDICT.labels(s).set(1.0 if s == current else 0.0)
    DRIFT_VERDICT_AGE.set(float("nan") if age_s is None else age_s)


def set_feature_age(view: str, age_s: float | None) -> None:
    """Publish the seconds since the newest row of ``view`` was written online.

    None (the view holds no row) exports NaN. Call it periodically: the age is a
    snapshot taken when it is set, not a clock that Prometheus advances.
    """
    FEATURE_AGE.labels(view).set(float("nan") if age_s is None else age_s)


# Every series exists from the first scrape: "no verdict" and "no rows" rather than
# absent series (which alert rules and dashboards cannot tell from a missing target).
set_drift_verdict(None, None)
for _view in FEATURE_VIEWS:
    set_feature_age(_view, None)


# -- the event stream (production profile, MICROTUNE_STREAM__ENABLED) --------------

STREAM = Gauge(
    "microtune_stream_entries",
    "The event stream's entries: lag (not yet handed to a worker), pending (handed out, "
    "not acknowledged), dead (dead letters kept).",
    ["state"],
    multiprocess_mode="mostrecent",
)
STREAM_REFUSED = Counter(
    "microtune_stream_refused_total",
    "POST /v1/events answered 503 because Redis could not hold the events or the "
    "stream workers were too far behind.",
)


def set_stream(lag: int, pending: int, dead: int) -> None:
    """Publish the stream's backlog and dead letters."""
    for state, n in (("lag", lag), ("pending", pending), ("dead", dead)):
        STREAM.labels(state).set(n)
