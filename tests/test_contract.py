"""The event contract: one test per rejection reason, and valid rows survive."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import LATER, T0, event
from test_docs import ROOT

from events.contract import (
    ARROW_SCHEMA,
    EARLIEST,
    FIELD_NAMES,
    FIELDS,
    ID_MAX,
    minimize_row,
    minimize_unconsented,
)
from events.validation import validate_rows


def reasons(rows: list[dict], now=LATER) -> list[str]:
    return [r.reason for r in validate_rows(rows, now=now).rejected]


def test_valid_rows_are_accepted_with_typed_columns() -> None:
    result = validate_rows([event(at=1, event_type="hover", duration_ms=300)], now=LATER)
    assert result.accepted_count == 1 and not result.rejected
    table = result.to_arrow()
    assert table.schema.equals(ARROW_SCHEMA)
    assert table.column("duration_ms").to_pylist() == [300.0]
    assert table.column("ts").to_pylist()[0] == T0 + timedelta(seconds=1)


def test_rows_built_in_python_equal_the_arrow_table_minimized_or_not() -> None:
    """The scorer's live path builds rows without Arrow; they must be the stored rows."""
    rows = [
        event(at=1.5, event_type="hover", duration_ms=300, element_id="price"),
        event(at=2, event_type="add_to_cart", cart_value=19.99, consent=False),
        event(at=3, event_type="scroll", scroll_depth=0.5, scroll_velocity=120.0),
        event(at=4, event_type="page_view", user_id="u2", device="mobile", consent=False),
    ]
    result = validate_rows(rows, now=LATER)
    assert result.to_rows() == result.to_arrow().to_pylist()
    minimized = [minimize_row(r) for r in result.to_rows()]
    assert minimized == minimize_unconsented(result.to_arrow()).to_pylist()
    assert minimized[1]["cart_value"] is None and minimized[1]["session_id"] == "s1"
    assert minimized[3]["user_id"] is None and minimized[0]["duration_ms"] == 300.0


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
    # The reason names no amount: the same row gets the same reason on every run,
    # so a re-ingest rewrites the same quarantine file.
    assert reasons([skewed, future], now=now) == ["ts: more than 5 minutes in the future"]


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


def test_the_docs_state_the_contract_as_the_code_checks_it() -> None:
    """docs/events.md lists every field, in order, with the ranges FIELDS holds."""
    doc = (ROOT / "docs" / "events.md").read_text()
    fields = doc.split("## Fields", 1)[1].split("\n\n")[1]
    table = [line for line in fields.splitlines() if line.startswith("| `")]
    assert [line.split("`")[1] for line in table] == list(FIELD_NAMES)
    for spec in FIELDS:
        row = next(line for line in table if line.startswith(f"| `{spec.name}`"))
        if spec.hi is not None and spec.hi > 1:
            assert f"{spec.hi:,.0f}" in row, (spec.name, row)
        if spec.max_len and spec.kind == "str":
            assert f"at most {spec.max_len}" in row, (spec.name, row)
    assert f"{{1,{ID_MAX}}}" in doc and "2000-01-01" in doc and f"{EARLIEST:%Y-%m-%d}" in doc
