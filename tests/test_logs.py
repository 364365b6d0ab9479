"""Structured logs: JSON lines, the request's id, and personal ids never in clear."""

from __future__ import annotations

import io
import json
import logging

from core.logs import JsonFormatter, personal, pseudonym, request_context


def _logger() -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("microtune.test-logs")
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.INFO)
    return log, stream


def test_a_failure_inside_a_request_names_neither_its_session_nor_its_user() -> None:
    log, stream = _logger()
    with request_context("req-9"):
        personal("sess-abc", "user-xyz", None)
        try:
            raise KeyError("no features for sess-abc (user user-xyz)")
        except KeyError:
            log.exception("online read failed for %s", "sess-abc")
    log.info("outside any request")
    text = stream.getvalue()
    assert "sess-abc" not in text and "user-xyz" not in text
    inside, outside = (json.loads(line) for line in text.splitlines())
    assert inside["request_id"] == "req-9" and inside["level"] == "ERROR"
    assert (
        pseudonym("sess-abc") in inside["message"] and pseudonym("user-xyz") in inside["exception"]
    )
    # The same id has the same pseudonym within the process; another id another one.
    assert pseudonym("sess-abc") == pseudonym("sess-abc") != pseudonym("sess-abd")
    assert "request_id" not in outside and outside["message"] == "outside any request"


def test_an_id_inside_another_is_redacted_whole() -> None:
    log, stream = _logger()
    with request_context("r", ["s1", "s10"]):
        log.warning("sessions s10 and s1")
    message = json.loads(stream.getvalue())["message"]
    assert message == f"sessions {pseudonym('s10')} and {pseudonym('s1')}"
