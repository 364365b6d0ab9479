"""How uvicorn serves the scorer: a deadline for reading each request, and bounded keep-alive.

uvicorn closes a keep-alive connection that stays idle (``timeout_keep_alive``),
but waits without end for a request that has started to arrive: a client
that sends headers and part of a body, then goes silent, holds its
connection and its worker slot. :class:`DeadlineProtocol` gives every
request a deadline from its first byte to its last (``read_timeout_s``);
past it the connection is closed.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from core.settings import ServeSettings

#: The key of the read deadline in the server's lifespan state.
STATE_KEY = "read_timeout_s"


class DeadlineProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for reading each request whole.

    The deadline is the app's: its lifespan puts ``read_timeout_s`` in the
    server's state (:data:`STATE_KEY`), which uvicorn hands to every connection.
    """

    default_s = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        reading = self.cycle is None or self.cycle.response_complete
        if self._deadline is None and reading:
            seconds = float(self.app_state.get(STATE_KEY, self.default_s))
            self._deadline = self.loop.call_later(seconds, self._too_slow)
        super().data_received(data)

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            self.transport.close()


def lifespan_state(serve: ServeSettings) -> dict[str, Any]:
    """What the app's lifespan hands uvicorn for its connections."""
    return {STATE_KEY: serve.read_timeout_s}


def uvicorn_options(serve: ServeSettings) -> dict[str, Any]:
    """The uvicorn settings every way of serving uses (the command line and the tests).

    The protocol is named by import path, so that each worker process of
    ``--workers N`` loads it; the app's lifespan gives it the deadline
    (:func:`lifespan_state`).
    """
    return {
        "http": "serving.http:DeadlineProtocol",
        "timeout_keep_alive": serve.keep_alive_s,
        # uvicorn believes X-Forwarded-For from 127.0.0.1 by default; which proxies
        # to believe is MICROTUNE_SERVE__TRUSTED_PROXIES alone (serving/ratelimit.py).
        "proxy_headers": False,
    }
