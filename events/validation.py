"""Checking rows against the event contract: accepted rows kept, each bad row with its reason.

A batch arrives as rows (whatever a JSON or Parquet reader produced);
:func:`validate_rows` splits it into accepted rows (typed, Arrow-ready
columns) and rejected rows, each with a reason naming the field and the
problem. Valid rows of a batch are always kept, and no row, however it is
built, makes validation raise: an unreadable row is rejected like any other.

Reasons are deterministic (the same row gets the same reason on every run),
so re-ingesting a file rewrites the same quarantine file.

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
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa

from events.contract import ARROW_SCHEMA, EARLIEST, FIELDS, ID_PATTERN, MAX_FUTURE, FieldSpec

#: Epoch numbers below this are seconds (1e11 s is the year 5138) ...
_SECONDS_BELOW = 1e11
#: ... and below this milliseconds (1e14 ms is the year 5138 too); larger is refused.
_MILLIS_BELOW = 1e14
_ID = re.compile(ID_PATTERN)
_SURROGATE = re.compile("[\ud800-\udfff]")
_MISSING = object()


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
    #: Position of each accepted row in the input (its order of arrival).
    positions: list[int] = field(default_factory=list)

    @property
    def accepted_count(self) -> int:
        return len(self.columns["event_id"])

    def reasons(self) -> dict[str, int]:
        """Rejections counted by their reason with values stripped: ``field: problem``."""
        return count_reasons(self.rejected)

    def to_rows(self) -> list[dict[str, Any]]:
        """Accepted rows as dicts in the storage schema, as ``to_arrow().to_pylist()`` gives.

        Built in plain Python, without one long call into Arrow: a thread doing it
        lets other threads run between rows (the scorer's live-event path).

        >>> r = validate_rows([{"event_id": "e1", "session_id": "s1", "user_id": "u1",
        ...     "ts": "2026-01-02T03:04:05Z", "event_type": "hover", "page_type": "cart",
        ...     "device": "mobile", "browser": "chrome", "consent": True}],
        ...     now=datetime(2026, 1, 3, tzinfo=UTC))
        >>> row = r.to_rows()[0]
        >>> row["ts"].isoformat(), row["duration_ms"], row["consent"]
        ('2026-01-02T03:04:05+00:00', None, True)
        """
        n = self.accepted_count
        cols: list[tuple[str, list[Any]]] = []
        for f in FIELDS:
            col = self.columns[f.name]
            if f.kind == "ts":
                micros = col.astype("int64").tolist()
                values: list[Any] = [_EPOCH + timedelta(microseconds=m) for m in micros]
            elif f.kind == "float":
                values = [None if math.isnan(v) else v for v in col.tolist()]
            else:
                values = col.tolist()
            cols.append((f.name, values))
        return [{name: values[i] for name, values in cols} for i in range(n)]

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


def sanitize(value: Any) -> Any:
    """``value`` safe to encode as JSON: lone surrogates replaced, non-finite floats None.

    >>> sanitize({"id": "a\\ud800", "x": [float("nan"), 1.5]})
    {'id': 'a\\ufffd', 'x': [None, 1.5]}
    """
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value) if _has_surrogate(value) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {sanitize(str(k)): sanitize(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [sanitize(v) for v in value]
    return value


def _has_surrogate(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _shown(v: str, n: int = 40) -> str:
    return sanitize(v if len(v) <= n else v[:n] + "...")


def _number(v: float) -> str:
    try:
        return f"{float(v):g}"
    except OverflowError:
        return "too large"


def is_id(v: Any) -> bool:
    """True for a value the contract takes as an id.

    >>> is_id("s-42"), is_id(" "), is_id(42)
    (True, False, False)
    """
    return isinstance(v, str) and _ID.fullmatch(v) is not None


def _check_id(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {type(v).__name__}"
    if spec.max_len is not None and len(v) > spec.max_len:
        return f"string too long ({len(v)} > {spec.max_len} characters)"
    if not _ID.fullmatch(v):
        return "must be 1 to 64 printable ASCII characters without spaces"
    return None


def _check_str(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {type(v).__name__}"
    if spec.max_len is not None and len(v) > spec.max_len:
        return f"string too long ({len(v)} > {spec.max_len} characters)"
    if spec.required and not v.strip():
        return "must not be empty"
    if not v.isprintable():
        return "must be printable text (no control characters or lone surrogates)"
    return None


def _check_enum(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, str):
        return f"expected a string, got {type(v).__name__}"
    if v not in spec.choices:
        return f"unknown {spec.name.replace('_', ' ')} '{_shown(v)}'"
    return None


def _check_float(spec: FieldSpec, v: Any) -> str | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return f"expected a number, got {type(v).__name__}"
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if spec.lo is not None and v < spec.lo:
        return "must not be negative" if spec.lo == 0 else f"below minimum {spec.lo:g}"
    if spec.hi is not None and v > spec.hi:
        return f"outside [{spec.lo:g}, {spec.hi:g}] ({_number(v)})"
    return None


def _check_bool(spec: FieldSpec, v: Any) -> str | None:
    if not isinstance(v, bool):
        return f"expected true or false, got {type(v).__name__}"
    return None


def parse_ts(v: Any) -> datetime | str:
    """Parse an event time to an aware UTC datetime, or return the problem. Never raises.

    Accepts ISO 8601 strings (``Z`` or an offset; a naive string is taken as UTC),
    epoch numbers (seconds below 1e11, milliseconds below 1e14: the magnitude
    says which), and datetimes.

    >>> parse_ts("2026-01-01T10:00:00+01:00")
    datetime.datetime(2026, 1, 1, 9, 0, tzinfo=datetime.timezone.utc)
    >>> parse_ts(1767261600000) == parse_ts(1767261600) == parse_ts("2026-01-01T10:00:00Z")
    True
    >>> parse_ts("yesterday"), parse_ts("9999-12-31T23:59:59-14:00")
    ("not an ISO 8601 time ('yesterday')", 'outside the range of representable times')
    """
    try:
        if isinstance(v, datetime):
            dt = v
        elif isinstance(v, np.datetime64):
            dt = datetime.fromtimestamp(v.astype("datetime64[us]").astype(np.int64) / 1e6, UTC)
        elif isinstance(v, bool) or not isinstance(v, str | int | float):
            return f"expected an ISO 8601 string or an epoch number, got {type(v).__name__}"
        elif isinstance(v, str):
            try:
                dt = datetime.fromisoformat(v)
            except ValueError:
                return f"not an ISO 8601 time ('{_shown(v)}')"
        else:
            dt = _from_epoch(v)  # type: ignore[assignment]
            if isinstance(dt, str):
                return dt
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        return dt.astimezone(UTC)
    except (OverflowError, OSError, ValueError):
        return "outside the range of representable times"


def _from_epoch(v: float) -> datetime | str:
    if isinstance(v, float) and not math.isfinite(v):
        return "must be a finite number"
    if abs(v) >= _MILLIS_BELOW:
        return "epoch number too large: give seconds or milliseconds"
    seconds = v if abs(v) < _SECONDS_BELOW else v / 1000.0
    return datetime.fromtimestamp(seconds, UTC)


_CHECKS = {
    "id": _check_id,
    "str": _check_str,
    "enum": _check_enum,
    "float": _check_float,
    "bool": _check_bool,
}


def _check_ts(v: Any, now: datetime, earliest: datetime) -> datetime | str:
    parsed = parse_ts(v)
    if isinstance(parsed, str):
        return parsed
    if parsed > now + MAX_FUTURE:
        return "more than 5 minutes in the future"
    if parsed < earliest:
        return f"earlier than the accepted window ({earliest:%Y-%m-%dT%H:%M}Z)"
    return parsed


def _check_row(
    row: Mapping[str, Any], now: datetime, earliest: datetime
) -> tuple[str | None, datetime | None]:
    """First problem of a row (``field: problem``), and its parsed time."""
    ts: datetime | None = None
    for spec in FIELDS:
        v = row.get(spec.name, _MISSING)
        if v is _MISSING or v is None or (isinstance(v, float) and math.isnan(v)):
            if spec.required:
                return f"{spec.name}: missing required field", None
            continue
        if spec.kind == "ts":
            checked = _check_ts(v, now, earliest)
            if isinstance(checked, str):
                return f"ts: {checked}", None
            ts = checked
            continue
        problem = _CHECKS[spec.kind](spec, v)
        if problem is not None:
            return f"{spec.name}: {problem}", None
    return None, ts


def validate_rows(
    rows: Iterable[Any], *, now: datetime | None = None, earliest: datetime = EARLIEST
) -> ValidationResult:
    """Check a batch of rows against the contract.

    Fields outside the contract are ignored. A row's reason names the first
    failing field, in contract order. Times must fall in ``[earliest, now +
    5 minutes]``.
    """
    now = now or datetime.now(UTC)
    kept: list[Mapping[str, Any]] = []
    stamps: list[datetime] = []
    positions: list[int] = []
    rejected: list[Rejection] = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping):
            rejected.append(Rejection({"_raw": sanitize(row)}, "row: expected a JSON object", i))
            continue
        try:
            reason, ts = _check_row(row, now, earliest)
        except Exception as exc:  # a row no check foresaw is rejected, never raised
            reason, ts = f"row: could not be read ({type(exc).__name__})", None
        if reason is None:
            assert ts is not None
            kept.append(row)
            stamps.append(ts)
            positions.append(i)
        else:
            rejected.append(Rejection(sanitize(dict(row)), reason, i))
    return ValidationResult(_to_columns(kept, stamps), rejected, positions)


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
            micros = [(t - _EPOCH) // _MICROSECOND for t in stamps]
            out[spec.name] = np.array(micros, dtype="int64").astype("datetime64[us]")
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


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC) - _EPOCH
