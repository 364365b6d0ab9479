"""How the scorer answers when something is wrong: a 4xx for bad input, 500 only for a fault.

Every answer here encodes whatever the request held: input is never echoed
raw (a NaN or a lone surrogate would make the error itself fail). Bad input
gets field-level messages; a real fault gets 500 with the request's id, and
the log line carries the same id with the traceback. microtune's own errors
map to their status in one place (:data:`core.errors.MicrotuneError.status_code`).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import MicrotuneError
from events.validation import sanitize

log = logging.getLogger("microtune.serving")
REQUEST_ID = "x-request-id"


def request_id(scope: Any) -> str:
    """The request's id: the caller's ``X-Request-ID`` when it is a sane token, else a new one."""
    state = scope.setdefault("state", {})
    rid = state.get("request_id")
    if rid is None:
        given = next((v for k, v in scope.get("headers", ()) if k == REQUEST_ID.encode()), b"")
        ok = 0 < len(given) <= 64 and all(0x21 <= b <= 0x7E for b in given)
        rid = state["request_id"] = given.decode() if ok else os.urandom(8).hex()
    return str(rid)


def field_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """Pydantic's errors without the offending input: where, what, and the error type."""
    return [
        {
            "loc": [str(sanitize(part)) for part in e.get("loc", ())],
            "msg": sanitize(str(e.get("msg", "invalid value"))),
            "type": str(e.get("type", "value_error")),
        }
        for e in exc.errors()
    ]


def install(app: FastAPI) -> None:
    """Register the handlers: validation, HTTP errors, microtune's errors, last resort."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> ORJSONResponse:
        return ORJSONResponse({"detail": field_errors(exc)}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        return ORJSONResponse(
            {"detail": sanitize(exc.detail)}, status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(MicrotuneError)
    async def _microtune(request: Request, exc: MicrotuneError) -> ORJSONResponse:
        return ORJSONResponse({"detail": sanitize(str(exc))}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _fault(request: Request, exc: Exception) -> ORJSONResponse:
        rid = request_id(request.scope)
        log.error("request %s failed: %s", rid, type(exc).__name__, exc_info=exc)
        return ORJSONResponse(
            {
                "detail": "internal error; the server log has it under this request id",
                "request_id": rid,
            },
            status_code=500,
            headers={REQUEST_ID: rid},
        )
