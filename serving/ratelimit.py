"""Per-client rate limits on the scoring routes: 429 with ``Retry-After`` past a client's rate.

The counting is the ``limits`` library's moving window (the engine slowapi is
built on), used directly from a small ASGI middleware: the hot route pays one
dictionary lookup and one window update, without a decorator per route.

Who is a client:

* the API key in ``X-API-Key`` when it is one of ``MICROTUNE_SERVE__API_KEYS``
  (a shop's server-side integration gets its own budget);
* else the first ``X-Forwarded-For`` address when the connection comes from one
  of ``MICROTUNE_SERVE__TRUSTED_PROXIES`` (a load balancer in front);
* else the connection's remote address.

Each route's limit is one setting, in requests per minute and per client;
``0`` turns it off. Counts are kept per process (``memory://``) unless
``MICROTUNE_SERVE__RATE_LIMIT_STORAGE`` names a shared store
(``redis://host:6379``), as several workers or hosts need.
"""

from __future__ import annotations

import ipaddress
import math
import time
from typing import Any

from limits import RateLimitItemPerMinute, storage, strategies

from core.settings import ServeSettings
from serving.errors import request_id

#: Routes with a limit, and the setting that holds it.
LIMITED = {"/v1/score": "rate_limit_score_per_min", "/v1/events": "rate_limit_events_per_min"}


class RateLimits:
    """The limits of one process: a limit item per route, one counter store."""

    def __init__(self, serve: ServeSettings) -> None:
        self.items = {
            path: RateLimitItemPerMinute(int(getattr(serve, name)))
            for path, name in LIMITED.items()
            if getattr(serve, name) > 0
        }
        self.limiter = strategies.MovingWindowRateLimiter(
            storage.storage_from_string(serve.rate_limit_storage)
        )
        self.api_keys = frozenset(serve.api_keys)
        self.proxies = [ipaddress.ip_network(p, strict=False) for p in serve.trusted_proxies]

    def client(self, scope: Any) -> str:
        """Who is asking: an API key, the client behind a trusted proxy, or the peer."""
        headers = dict(scope.get("headers", ()))
        key = headers.get(b"x-api-key", b"").decode("latin-1")
        if key and key in self.api_keys:
            return f"key:{key}"
        peer = (scope.get("client") or ("unknown", 0))[0]
        forwarded = headers.get(b"x-forwarded-for")
        if forwarded and self.proxies and self._trusted(peer):
            return f"ip:{forwarded.decode('latin-1').split(',')[0].strip()}"
        return f"ip:{peer}"

    def _trusted(self, peer: str) -> bool:
        try:
            address = ipaddress.ip_address(peer)
        except ValueError:
            return False
        return any(address in net for net in self.proxies)

    def retry_after(self, path: str, scope: Any) -> int | None:
        """None when the request may go on; else the seconds until it may."""
        item = self.items.get(path)
        if item is None:
            return None
        who = self.client(scope)
        if self.limiter.hit(item, path, who):
            return None
        reset = self.limiter.get_window_stats(item, path, who).reset_time
        return max(1, math.ceil(reset - time.time()))


class RateLimitMiddleware:
    """Pure ASGI middleware that answers 429 for a client over its route's rate."""

    def __init__(self, app: Any, limits: RateLimits) -> None:
        self.app, self.limits = app, limits

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            wait = self.limits.retry_after(scope["path"], scope)
            if wait is not None:
                await _too_many(send, wait, request_id(scope))
                return
        await self.app(scope, receive, send)


async def _too_many(send: Any, wait: int, rid: str) -> None:
    body = (
        b'{"detail":"rate limit exceeded for this client; retry after '
        + str(wait).encode()
        + b' s"}'
    )
    await send(
        {
            "type": "http.response.start",
            "status": 429,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"retry-after", str(wait).encode()),
                (b"x-request-id", rid.encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
