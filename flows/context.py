"""Which settings a flow run works with, and Prefect pointed at the right server.

A flow's settings come from its caller: the command line (or a test) runs
flows inside :func:`use_settings`, and a deployment's flow run, started by a
worker in a fresh process, reads them from its environment
(:func:`core.settings.get_settings`). Settings are not a flow parameter:
parameters are stored on the Prefect server, and settings hold credentials.

Examples
--------
>>> from core.settings import Settings
>>> with use_settings(Settings(home="/tmp/mt-doc-flows")):
...     str(flow_settings().home)
'/tmp/mt-doc-flows'
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from core.settings import Settings, get_settings

_CURRENT: ContextVar[Settings | None] = ContextVar("microtune_settings", default=None)


def flow_settings() -> Settings:
    """The caller's settings (:func:`use_settings`), else the environment's."""
    return _CURRENT.get() or get_settings()


@contextmanager
def use_settings(settings: Settings) -> Iterator[Settings]:
    """Run the flows called inside the block on ``settings``."""
    token = _CURRENT.set(settings)
    try:
        yield settings
    finally:
        _CURRENT.reset(token)
