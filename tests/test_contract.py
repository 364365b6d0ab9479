"""The event contract: one test per rejection reason, and valid rows survive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import LATER, T0, event

from events.contract import ARROW_SCHEMA, validate_rows


def reasons(rows: list[dict], now=LATER) -> list[str]:
    return [r.reason for r in validate_rows(rows, now=now).rejected]


def test_valid_rows_are_accepted_with_typed_columns() -> None:
    result = validate_rows([event(at=1, event_type="hover", duration_ms=300)], now=LATER)
    assert result.accepted_count == 1 and not result.rejected
    table = result.to_arrow()
    assert table.schema.equals(ARROW_SCHEMA)
    assert table.column("duration_ms").to_pylist() == [300.0]
    assert table.column("ts").to_pylist()[0] == T0 + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"duration_ms": "long"}, "duration_ms: expected a number, got str"),
        ({"consent": "yes"}, "consent: expected true or false, got str"),
        ({"session_id": 17}, "session_id: expected a string, got int"),
        ({"ts": "yesterday"}, "ts: not an ISO 8601 time ('yesterday')"),
        ({"session_id": None}, "session_id: missing required field"),
        ({"event_type": "teleport"}, "event_type: unknown event type 'teleport'"),
        ({"duration_ms": -5}, "duration_ms: must not be negative"),
        ({"scroll_depth": 1.2}, "scroll_depth: outside [0, 1] (1.2)"),
        ({"scroll_depth": -0.1}, "scroll_depth: must not be negative"),
        ({"element_id": "x" * 129}, "element_id: string too long (129 > 128 characters)"),
        ({"event_id": "e" * 65}, "event_id: string too long (65 > 64 characters)"),
        ({"device": "fridge"}, "device: unknown device 'fridge'"),
    ],
)
def test_each_rejection_reason_names_field_and_problem(change: dict, expected: str) -> None:
    assert reasons([event(**change)]) == [expected]


def test_missing_field_is_rejected() -> None:
    row = event()
    del row["ts"]
    assert reasons([row]) == ["ts: missing required field"]


def test_future_timestamp_is_rejected_but_slight_skew_is_not() -> None:
    now = T0
    skewed = event(at=4 * 60)  # 4 minutes ahead of now: client clock skew, kept
    future = event(at=6 * 60)
    assert reasons([skewed, future], now=now) == [
        "ts: more than 5 minutes in the future (360 s ahead)"
    ]


def test_valid_rows_of_a_bad_batch_are_kept() -> None:
    rows = [event(at=i) for i in range(5)] + [event(duration_ms=-1), "not an object"]
    result = validate_rows(rows, now=LATER)
    assert result.accepted_count == 5
    assert [r.position for r in result.rejected] == [5, 6]
    assert result.reasons() == {
        "duration_ms: must not be negative": 1,
        "row: expected a JSON object": 1,
    }


def test_epoch_milliseconds_and_offsets_are_normalised_to_utc() -> None:
    a = event(event_id="a")
    a["ts"] = int(T0.timestamp() * 1000)
    b = event(event_id="b")
    b["ts"] = "2026-06-01T14:00:00+02:00"
    ts = validate_rows([a, b], now=LATER).to_arrow().column("ts").to_pylist()
    assert ts == [T0, T0]
