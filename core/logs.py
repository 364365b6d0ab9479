"""Structured logs: one JSON object per line, with the request's id and no ids in clear.

Every line has ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and ``message``;
a line written while a request is handled also has its ``request_id`` (the
``X-Request-ID`` the caller sent or the scorer made, as in the answer's
header), and a failure has its ``exception``.

**No personal ids.** Log messages never format a session or user id, and, as
a second line of defence, the ids of the request being handled (registered
with :func:`personal`) are replaced wherever they would appear in a line,
exceptions included, by ``<id:...>``: a keyed hash (HMAC-SHA256 under a key
made when the process starts), which lets one process's lines about the
same visitor be matched without naming them, and nothing else.

>>> import logging, io, json
>>> stream = io.StringIO()
>>> handler = logging.StreamHandler(stream)
>>> handler.setFormatter(JsonFormatter())
>>> demo = logging.getLogger("microtune.doc")
>>> demo.addHandler(handler)
>>> demo.propagate = False
>>> with request_context("req-1", ["visitor-42"]):
...     demo.warning("store failed for %s", "visitor-42")
>>> line = json.loads(stream.getvalue())
>>> line["request_id"], line["level"], "visitor-42" in stream.getvalue()
('req-1', 'WARNING', False)
>>> line["message"].startswith("store failed for <id:")
True
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
from collections.abc import Iterable, Iterator
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

#: The id of the request being handled (None outside a request).
REQUEST_ID: ContextVar[str | None] = ContextVar("microtune_request_id", default=None)
#: The personal ids the request carries (sessions, users), redacted from every line.
PERSONAL: ContextVar[tuple[str, ...]] = ContextVar("microtune_personal_ids", default=())
_KEY = os.urandom(32)


def pseudonym(value: str) -> str:
    """What a log line shows instead of an id: a keyed hash, stable in this process."""
    digest = hmac.new(_KEY, value.encode(), hashlib.sha256).hexdigest()
    return f"<id:{digest[:12]}>"


def redact(text: str, ids: Iterable[str]) -> str:
    """``text`` with every id of ``ids`` (longest first) replaced by its pseudonym."""
    for value in sorted({i for i in ids if i}, key=len, reverse=True):
        if value in text:
            text = text.replace(value, pseudonym(value))
    return text


@contextlib.contextmanager
def request_context(request_id: str, ids: Iterable[str] = ()) -> Iterator[None]:
    """Lines written inside carry ``request_id`` and never show ``ids``."""
    a = REQUEST_ID.set(request_id)
    b = PERSONAL.set(tuple(ids))
    try:
        yield
    finally:
        PERSONAL.reset(b)
        REQUEST_ID.reset(a)


def personal(*ids: str | None) -> None:
    """Add ids (a session's, a user's) to those the current request's lines redact."""
    PERSONAL.set(PERSONAL.get() + tuple(i for i in ids if i))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module's docstring).

    Python's warnings become log records too (``py.warnings``), so that they
    reach the same stream as JSON, not as bare text.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Made in each process that logs this way (uvicorn configures every worker).
        logging.captureWarnings(True)

    def format(self, record: logging.LogRecord) -> str:
        ids = PERSONAL.get()
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage(), ids),
        }
        rid = REQUEST_ID.get()
        if rid is not None:
            line["request_id"] = rid
        if record.exc_info:
            line["exception"] = redact(self.formatException(record.exc_info), ids)
        return json.dumps(line, ensure_ascii=False)


def log_config(level: str = "warning") -> dict[str, Any]:
    """A ``logging.config.dictConfig`` (and uvicorn ``log_config``): every logger,
    uvicorn's included, writes JSON lines to stderr at ``level`` and above."""
    name = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "core.logs.JsonFormatter"}},
        "handlers": {
            "stderr": {
                "class": "logging.StreamHandler",
                "formatter": "json",
                "stream": "ext://sys.stderr",
            }
        },
        "root": {"handlers": ["stderr"], "level": name},
        "loggers": {
            "uvicorn": {"handlers": ["stderr"], "level": name, "propagate": False},
            "uvicorn.error": {"handlers": ["stderr"], "level": name, "propagate": False},
            "uvicorn.access": {"handlers": ["stderr"], "level": name, "propagate": False},
            "py.warnings": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
        },
    }
