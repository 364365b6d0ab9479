"""The event contract: what a micro-behaviour event is, and how a batch is checked.

One definition serves every entry point. ``microtune ingest`` (files), the
``POST /v1/events`` route (live events) and the generator all use the field
table below, so an event accepted in one place is accepted everywhere.

Validation is column-wise: a batch arrives as a mapping of column name to a
list of raw values (whatever a JSON or Parquet reader produced), and
:func:`validate_columns` splits it into accepted rows (typed numpy/arrow-ready
columns) and rejected rows, each with a reason naming the field and the
problem. Valid rows of a batch are always kept.

Examples
--------
>>> from datetime import datetime, timezone
>>> now = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)
>>> rows = [
...     {"event_id": "e1", "session_id": "s1", "ts": "2026-01-01T11:00:00Z",
...      "event_type": "hover", "page_type": "product", "device": "mobile",
...      "browser": "safari", "consent": True, "duration_ms": 850},
...     {"event_id": "e2", "session_id": "s1", "ts": "2026-01-01T11:00:01Z",
...      "event_type": "teleport", "page_type": "product", "device": "mobile",
...      "browser": "safari", "consent": True},
... ]
>>> result = validate_rows(rows, now=now)
>>> result.accepted_count, [r.reason for r in result.rejected]
(1, ["event_type: unknown event type 'teleport'"])
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Literal

import numpy as np
import pyarrow as pa


class EventType(StrEnum):
    """Every event type the platform understands."""

    PAGE_VIEW = "page_view"
    HOVER = "hover"
    SCROLL = "scroll"
    CLICK = "click"
    IMAGE_ZOOM = "image_zoom"
    SIZE_GUIDE_OPEN = "size_guide_open"
    SEARCH = "search"
    ADD_TO_CART = "add_to_cart"
    REMOVE_FROM_CART = "remove_from_cart"
    CHECKOUT_START = "checkout_start"
    PURCHASE = "purchase"


class PageType(StrEnum):
    """Page context of an event."""

    HOME = "home"
    CATEGORY = "category"
    PRODUCT = "product"
    SEARCH = "search"
    CART = "cart"
    CHECKOUT = "checkout"
    ACCOUNT = "account"
    OTHER = "other"


class Device(StrEnum):
    """Device class of the visitor."""

    DESKTOP = "desktop"
    MOBILE = "mobile"
    TABLET = "tablet"


#: Events that add or remove value in the cart; they carry ``cart_value``.
CART_EVENTS = frozenset({EventType.ADD_TO_CART, EventType.REMOVE_FROM_CART})
#: Events that end a cart session with a known outcome.
OUTCOME_EVENTS = frozenset({EventType.PURCHASE})

#: How far in the future an event time may be before it is rejected.
MAX_FUTURE = timedelta(minutes=5)

Kind = Literal["str", "ts", "enum", "float", "bool"]


@dataclass(frozen=True)
class FieldSpec:
    """One column of the event contract."""

    name: str
    kind: Kind
    required: bool
    description: str
    max_len: int | None = None
    choices: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None

    @property
    def arrow_type(self) -> pa.DataType:
        return {
            "str": pa.string(),
            "enum": pa.string(),
            "ts": pa.timestamp("us", tz="UTC"),
            "float": pa.float64(),
            "bool": pa.bool_(),
        }[self.kind]


def _values(enum: type[StrEnum]) -> tuple[str, ...]:
    return tuple(m.value for m in enum)


#: The contract, in storage order. Everything else derives from this table.
FIELDS: tuple[FieldSpec, ...] = (
    FieldSpec("event_id", "str", True, "Unique id of the event; duplicates are dropped.", 64),
    FieldSpec("session_id", "str", True, "Visit the event belongs to.", 64),
    FieldSpec("user_id", "str", False, "Pseudonymous visitor id, absent for anonymous.", 64),
    FieldSpec("ts", "ts", True, "Event time in UTC (ISO 8601 or epoch milliseconds)."),
    FieldSpec("event_type", "enum", True, "What happened.", choices=_values(EventType)),
    FieldSpec("page_type", "enum", True, "Kind of page.", choices=_values(PageType)),
    FieldSpec("element_id", "str", False, "Element interacted with, e.g. 'price'.", 128),
    FieldSpec("duration_ms", "float", False, "Hover, zoom or dwell duration in ms.", lo=0.0),
    FieldSpec("scroll_depth", "float", False, "Fraction of page scrolled.", lo=0.0, hi=1.0),
    FieldSpec("scroll_velocity", "float", False, "Scroll speed in px/s.", lo=0.0),
    FieldSpec("cart_value", "float", False, "Value of the item added/removed/bought.", lo=0.0),
    FieldSpec("device", "enum", True, "Device class.", choices=_values(Device)),
    FieldSpec("browser", "str", True, "Browser family.", 32),
    FieldSpec("consent", "bool", True, "Visitor allowed behavioural tracking."),
)
FIELD_NAMES: tuple[str, ...] = tuple(f.name for f in FIELDS)
FIELDS_BY_NAME: dict[str, FieldSpec] = {f.name: f for f in FIELDS}
#: Storage schema. Every column is nullable in storage: rows without consent are
#: minimized (see :data:`CONSENTLESS_FIELDS`); validation enforces ``required``.
ARROW_SCHEMA: pa.Schema = pa.schema([pa.field(f.name, f.arrow_type) for f in FIELDS])

#: Fields kept for events without consent; all others are nulled before storage.
CONSENTLESS_FIELDS: frozenset[str] = frozenset(
    {"event_id", "session_id", "ts", "event_type", "page_type", "consent"}
)


@dataclass(frozen=True)
class Rejection:
    """A row that failed the contract, with the first problem found."""

    row: dict[str, Any]
    reason: str
    position: int

    @property
    def field(self) -> str:
        return self.reason.split(":", 1)[0]


@dataclass
class ValidationResult:
    """Accepted rows as typed columns, plus the rejected rows with reasons."""

    columns: dict[str, np.ndarray]
    rejected: list[Rejection] = field(default_factory=list)

    @property
    def accepted_count(self) -> int:
        return len(self.columns["event_id"])

    def reasons(self) -> dict[str, int]:
        """Rejections counted by their reason with values stripped: ``field: problem``."""
        return count_reasons(self.rejected)

    def to_arrow(self) -> pa.Table:
        """Accepted rows as an Arrow table in the storage schema."""
        arrays = []
        for f in FIELDS:
            col = self.columns[f.name]
            if f.kind == "ts":
                arrays.append(pa.array(col.astype("datetime64[us]"), type=f.arrow_type))
            elif f.kind == "float":
                arrays.append(pa.array(col, type=f.arrow_type, from_pandas=True))
            else:
                arrays.append(pa.array(col.tolist(), type=f.arrow_type))
        return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)


def count_reasons(rejected: Iterable[Rejection]) -> dict[str, int]:
    """Count rejections by reason class, i.e. the reason without the offending value.

    >>> count_reasons([Rejection({}, "ts: not an ISO 8601 time ('x')", 0),
    ...                Rejection({}, "ts: not an ISO 8601 time ('y')", 1)])
    {'ts: not an ISO 8601 time': 2}
    """
    counts: dict[str, int] = {}
    for r in rejected:
        key = _reason_class(r.reason)
        counts[key] = counts.get(key, 0) + 1
    return dict(sorted(counts.items()))


def _reason_class(reason: str) -> str:
    name, _, problem = reason.partition(": ")
    return f"{name}: {problem.split(' (')[0].split(' ' + chr(39))[0]}"


_MISSING = object()


def _check_str(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {type(v).__name__}"
    if spec.max_len is not None and len(v) > spec.max_len:
        return f"string too long ({len(v)} > {spec.max_len} characters)"
    if spec.required and not v:
        return "must not be empty"
    return None


def _check_enum(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {type(v).__name__}"
    if v not in spec.choices:
        shown = v if len(v) <= 40 else v[:40] + "..."
        return f"unknown {spec.name.replace('_', ' ')} '{shown}'"
    return None


def _check_float(spec: FieldSpec, v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"expected a number, got {type(v).__name__}"
    if math.isnan(v) or math.isinf(v):
        return "must be a finite number"
    if spec.lo is not None and v < spec.lo:
        return "must not be negative" if spec.lo == 0 else f"below minimum {spec.lo}"
    if spec.hi is not None and v > spec.hi:
        return f"outside [{spec.lo:g}, {spec.hi:g}] ({v:g})"
    return None


def _check_bool(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, bool):
        return f"expected true or false, got {type(v).__name__}"
    return None


def parse_ts(v: Any) -> datetime | str:
    """Parse an event time to an aware UTC datetime, or return the problem.

    Accepts ISO 8601 strings (``Z`` or an offset; a naive string is taken as UTC),
    epoch milliseconds, and datetimes.

    >>> parse_ts("2026-01-01T10:00:00+01:00")
    datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    >>> parse_ts(1767261600000)
    datetime.datetime(2026, 1, 1, 10, 0, tzinfo=datetime.timezone.utc)
    >>> parse_ts("yesterday")
    "not an ISO 8601 time ('yesterday')"
    """
    if isinstance(v, datetime):
        dt = v
    elif isinstance(v, np.datetime64):
        dt = datetime.fromtimestamp(v.astype("datetime64[us]").astype(np.int64) / 1e6, UTC)
    elif isinstance(v, bool) or not isinstance(v, str | int | float):
        return f"expected an ISO 8601 string or epoch milliseconds, got {type(v).__name__}"
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v)
        except ValueError:
            shown = v if len(v) <= 40 else v[:40] + "..."
            return f"not an ISO 8601 time ('{shown}')"
    else:
        if not math.isfinite(v):
            return "must be a finite number"
        try:
            dt = datetime.fromtimestamp(v / 1000.0, UTC)
        except (OverflowError, OSError, ValueError):
            return f"epoch milliseconds out of range ({v})"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC)


_CHECKS = {"str": _check_str, "enum": _check_enum, "float": _check_float, "bool": _check_bool}


def _check_row(row: Mapping[str, Any], now: datetime) -> tuple[str | None, datetime | None]:
    """First problem of a row (``field: problem``), and its parsed time."""
    ts: datetime | None = None
    for spec in FIELDS:
        v = row.get(spec.name, _MISSING)
        if v is _MISSING or v is None or (isinstance(v, float) and math.isnan(v)):
            if spec.required:
                return f"{spec.name}: missing required field", None
            continue
        if spec.kind == "ts":
            parsed = parse_ts(v)
            if isinstance(parsed, str):
                return f"ts: {parsed}", None
            if parsed > now + MAX_FUTURE:
                ahead = (parsed - now).total_seconds()
                return f"ts: more than 5 minutes in the future ({ahead:.0f} s ahead)", None
            ts = parsed
            continue
        problem = _CHECKS[spec.kind](spec, v)
        if problem is not None:
            return f"{spec.name}: {problem}", None
    return None, ts


def validate_rows(
    rows: Iterable[Mapping[str, Any]], *, now: datetime | None = None
) -> ValidationResult:
    """Check a batch of row dicts against the contract.

    Fields outside the contract are ignored. A row's reason names the first
    failing field, in contract order.
    """
    now = now or datetime.now(UTC)
    kept: list[Mapping[str, Any]] = []
    stamps: list[datetime] = []
    rejected: list[Rejection] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            rejected.append(Rejection({"_raw": row}, "row: expected a JSON object", i))
            continue
        reason, ts = _check_row(row, now)
        if reason is None:
            assert ts is not None
            kept.append(row)
            stamps.append(ts)
        else:
            rejected.append(Rejection(dict(row), reason, i))
    return ValidationResult(_to_columns(kept, stamps), rejected)


def validate_columns(
    columns: Mapping[str, Sequence[Any]], *, now: datetime | None = None
) -> ValidationResult:
    """Check a columnar batch (as read from Parquet or Arrow) against the contract."""
    n = len(next(iter(columns.values()))) if columns else 0
    names = list(columns)
    rows = ({k: columns[k][i] for k in names} for i in range(n))
    return validate_rows(rows, now=now)


def _to_columns(
    rows: Sequence[Mapping[str, Any]], stamps: Sequence[datetime]
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for spec in FIELDS:
        if spec.kind == "ts":
            out[spec.name] = np.array(
                [int(t.timestamp() * 1_000_000) for t in stamps], dtype="int64"
            ).astype("datetime64[us]")
        elif spec.kind == "float":
            out[spec.name] = np.array(
                [np.nan if r.get(spec.name) is None else float(r[spec.name]) for r in rows],
                dtype="float64",
            )
        elif spec.kind == "bool":
            out[spec.name] = np.array([bool(r[spec.name]) for r in rows], dtype=bool)
        else:
            out[spec.name] = np.array([r.get(spec.name) for r in rows], dtype=object)
    return out


def minimize_unconsented(table: pa.Table) -> pa.Table:
    """Null every field not in :data:`CONSENTLESS_FIELDS` for rows without consent."""
    consent = table.column("consent")
    arrays = []
    for f in FIELDS:
        col = table.column(f.name)
        if f.name not in CONSENTLESS_FIELDS:
            col = pa.compute.if_else(consent, col, pa.nulls(len(col), type=col.type))
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=ARROW_SCHEMA)
