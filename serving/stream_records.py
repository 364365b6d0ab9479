"""The stream's records as the workers read them: a quick check, then the contract.

The API writes each accepted event to the stream as it keeps it (validated,
minimized without consent, pseudonymized). :func:`decode` recognizes such a
record cheaply; anything else goes through the full contract (:func:`check`),
which says why it cannot be taken (a dead letter) or takes it as the API would.

>>> decode({"event_id": "e1", "session_id": "s1", "ts": "2026-01-02T03:04:05Z",
...         "event_type": "hover", "page_type": "cart", "device": "mobile",
...         "browser": "chrome", "consent": True})
1767323045.0
>>> decode({"event_id": "e1", "session_id": "s1", "ts": 1767323045, "consent": True})
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.json as pj

from events.contract import (
    ARROW_SCHEMA,
    CONSENTLESS_FIELDS,
    FIELDS,
    EventType,
    PageType,
    minimize_row,
)
from events.validation import validate_rows

_EVENT_TYPES = frozenset(e.value for e in EventType)
_PAGE_TYPES = frozenset(p.value for p in PageType)
_NUMBERS = tuple(f.name for f in FIELDS if f.kind == "float")
_NEEDED = tuple(f.name for f in FIELDS if f.required and f.kind in ("id", "str", "enum", "ts"))
_NEEDED_MINIMIZED = tuple(n for n in _NEEDED if n in CONSENTLESS_FIELDS)
#: The raw store's columns, read from the bodies as the API wrote them.
AS_STORED = pj.ParseOptions(explicit_schema=ARROW_SCHEMA, unexpected_field_behavior="ignore")
#: Valid values for the required fields minimization removes (checks only, never stored).
_STAND_INS = {
    f.name: (f.choices[0] if f.choices else "minimized")
    for f in FIELDS
    if f.required and f.name not in CONSENTLESS_FIELDS
}


def decode(record: Any) -> float | None:
    """The event time of a record as the API writes it (epoch seconds), or None for
    anything else: a quick check of the fields the fold and the raw store need."""
    if not isinstance(record, dict):
        return None
    consent = record.get("consent")
    if consent is not True and consent is not False:
        return None
    for name in _NEEDED if consent else _NEEDED_MINIMIZED:
        if not isinstance(record.get(name), str):
            return None
    if record["event_type"] not in _EVENT_TYPES or record["page_type"] not in _PAGE_TYPES:
        return None
    for name in _NUMBERS:
        v = record.get(name)
        if v is not None and (type(v) is bool or not isinstance(v, int | float)):
            return None
    try:
        ts = datetime.fromisoformat(record["ts"])
    except ValueError:
        return None
    return ts.timestamp() if ts.tzinfo is not None else None


def check(record: Any) -> tuple[str | None, bytes, Any, float]:
    """A record the quick check refused, through the contract: its reason (None when the
    contract takes it), the body to keep, and the record and time as the API writes them."""
    if isinstance(record, dict) and record.get("consent") is False:
        # Minimization removed the required device and browser: check stand-ins.
        checked = {**record, **{k: v for k, v in _STAND_INS.items() if record.get(k) is None}}
    else:
        checked = record
    result = validate_rows([checked], now=datetime.now(UTC))
    if result.rejected:
        return result.rejected[0].reason, orjson.dumps(record), record, 0.0
    row = minimize_row(result.to_rows()[0])
    ts = row["ts"]
    kept = {**row, "ts": ts.isoformat().replace("+00:00", "Z")}
    return None, orjson.dumps(kept), kept, ts.timestamp()


def first_of_each(table: pa.Table) -> pa.Table:
    """The table with the first row of each event id (a batch may repeat one)."""
    ids = table.column("event_id").to_pylist()
    seen: set[str] = set()
    keep = [not (i in seen or seen.add(i)) for i in ids]  # type: ignore[func-returns-value]
    return table if all(keep) else table.filter(pa.array(keep))
