"""The batch feature builder: raw events of a window to offline feature rows.

For a window ``[start, end)`` it writes three day-partitioned Parquet tables
under ``offline/`` (one file per UTC day, ``YYYY-MM-DD.parquet``):

* ``session_features``: a session's features as they stood after each of its
  events (the last row when several events share a time), timestamped with
  the event time. Feast's point-in-time join then gives exactly what was known
  at any decision time.
* ``session_outcomes``: one row per ended session (no event for
  ``session_gap_minutes``), timestamped with the end. A session's outcome is
  never known before it ends.
* ``user_features``: a user's history after each ended session.

Only events with consent feed these tables. Windows are rounded out to whole
days and each day file is rewritten whole from the append-only raw store, so
re-running a window gives the same bytes. Windows are built in time order; a
window reads ``session_lookback_hours`` before its start so that sessions
crossing its start are folded whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from feature_repo.features import SESSION_FOLDS, USER_FOLDS
from flows.contract import EventType
from flows.files import atomic_write_parquet
from flows.folds import Fold, prepare_events, scan
from flows.ingest import RawEventStore

TS_TYPE = pa.timestamp("us", tz="UTC")
#: Event columns the session folds read, besides the key and the time.
EVENT_INPUTS = (
    "event_type",
    "page_type",
    "element_id",
    "duration_ms",
    "scroll_depth",
    "scroll_velocity",
    "cart_value",
)
DAY = timedelta(days=1)
#: Raw columns the builder reads (ids, device and browser are not features).
RAW_COLUMNS = ("session_id", "user_id", "ts", "consent", *EVENT_INPUTS)


@dataclass
class BuildResult:
    """Counts of what one window build wrote."""

    start: datetime
    end: datetime
    events: int = 0
    session_rows: int = 0
    sessions: int = 0
    ended_sessions: int = 0
    user_rows: int = 0
    files: list[str] = field(default_factory=list)


def floor_day(t: datetime) -> datetime:
    return t.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def ceil_day(t: datetime) -> datetime:
    f = floor_day(t)
    return f if f == t.astimezone(UTC) else f + DAY


def epoch_seconds(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Timestamp column to float epoch seconds."""
    us = pc.cast(col, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return us.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6


def _to_ts(seconds: np.ndarray) -> pa.Array:
    return pa.array(np.round(seconds * 1e6).astype("int64").astype("datetime64[us]"), TS_TYPE)


def fold_table(
    folds: Sequence[Fold], key: str, keys: Any, ts: np.ndarray, columns: dict[str, Any]
) -> pa.Table:
    """Scan ``folds`` and return one row per (key, time), the last when times repeat."""
    ev = prepare_events({"entity": keys, "ts": ts, **columns})
    values = scan(folds, ev)
    n = len(ev["entity"])
    last = np.ones(n, dtype=bool)
    if n:
        last[:-1] = (ev["entity"][1:] != ev["entity"][:-1]) | (ev["ts"][1:] != ev["ts"][:-1])
    names = pa.array(ev["entity_names"].tolist(), pa.string())
    data: dict[str, pa.Array] = {
        key: names.take(pa.array(ev["entity"][last])),
        "event_timestamp": _to_ts(ev["ts"][last]),
    }
    for col, v in values.items():
        data[col] = pa.array(v[last], pa.float64())
    return pa.table(data)


def session_features(events: pa.Table) -> pa.Table:
    """Session feature rows from raw events (consented events only)."""
    events = events.filter(pc.equal(events.column("consent"), True))
    return fold_table(
        SESSION_FOLDS,
        "session_id",
        events.column("session_id"),
        epoch_seconds(events.column("ts")),
        {c: events.column(c) for c in EVENT_INPUTS},
    )


def session_outcomes(events: pa.Table, gap: timedelta) -> pa.Table:
    """One row per session: its user, start, last event, end and outcome."""
    events = events.filter(pc.equal(events.column("consent"), True))
    t = events.select(["session_id", "user_id", "ts", "event_type"])
    etype = t.column("event_type")
    t = t.append_column("is_add", pc.equal(etype, EventType.ADD_TO_CART.value))
    t = t.append_column("is_buy", pc.equal(etype, EventType.PURCHASE.value))
    g = t.group_by("session_id").aggregate(
        [
            ("user_id", "min"),
            ("ts", "min"),
            ("ts", "max"),
            ("is_add", "any"),
            ("is_buy", "any"),
        ]
    )
    last = g.column("ts_max")
    added = g.column("is_add_any")
    bought = g.column("is_buy_any")
    abandoned = pc.and_(added, pc.invert(bought))
    end = _to_ts(epoch_seconds(last) + gap.total_seconds())
    out = pa.table(
        {
            "session_id": g.column("session_id"),
            "user_id": g.column("user_id_min"),
            "start_ts": g.column("ts_min"),
            "last_ts": last,
            "event_timestamp": end,
            "added_to_cart": pc.cast(added, pa.float64()),
            "purchased": pc.cast(bought, pa.float64()),
            "abandoned": pc.cast(abandoned, pa.float64()),
        }
    )
    return out.sort_by([("event_timestamp", "ascending"), ("session_id", "ascending")])


def user_features(outcomes: pa.Table) -> pa.Table:
    """User history rows: the user's record after each ended session."""
    known = outcomes.filter(pc.is_valid(outcomes.column("user_id")))
    cols = {c: known.column(c) for c in ("added_to_cart", "purchased", "abandoned")}
    return fold_table(
        USER_FOLDS,
        "user_id",
        known.column("user_id"),
        epoch_seconds(known.column("event_timestamp")),
        cols,
    )


# ---------------------------------------------------------------------------
# Day-partitioned offline tables


def day_name(t: datetime) -> str:
    return floor_day(t).strftime("%Y-%m-%d")


def in_window(table: pa.Table, start: datetime, end: datetime) -> pa.Table:
    ts = table.column("event_timestamp")
    return table.filter(
        pc.and_(
            pc.greater_equal(ts, pa.scalar(start, TS_TYPE)), pc.less(ts, pa.scalar(end, TS_TYPE))
        )
    )


def write_days(table: pa.Table, root: Path, start: datetime, end: datetime) -> list[str]:
    """Replace every day file of ``[start, end)`` under ``root`` with ``table``'s rows."""
    root.mkdir(parents=True, exist_ok=True)
    days = (epoch_seconds(table.column("event_timestamp")) // 86_400).astype(np.int64)
    order = np.argsort(days, kind="stable")
    table, days = table.take(pa.array(order)), days[order]
    written: list[str] = []
    day = floor_day(start)
    while day < end:
        index = int(day.timestamp() // 86_400)
        lo, hi = np.searchsorted(days, [index, index + 1])
        target = root / f"{day_name(day)}.parquet"
        if hi > lo:
            atomic_write_parquet(target, table.slice(lo, hi - lo), use_dictionary=False)
            written.append(str(target))
        elif target.exists():
            target.unlink()
        day += DAY
    return written


def read_offline(
    root: Path, end: datetime | None = None, *, start: datetime | None = None
) -> pa.Table | None:
    """Rows of a day-partitioned table with ``start <= event_timestamp < end``.

    Day files wholly before ``start`` are not read. Returns None when empty.
    """
    files = sorted(root.glob("*.parquet")) if root.exists() else []
    if start is not None:
        files = [f for f in files if f.stem >= day_name(start)]
    if end is not None:
        files = [f for f in files if f.stem <= day_name(end)]
    if not files:
        return None
    table = pa.concat_tables([pq.read_table(f) for f in files])
    if start is None and end is None:
        return table
    return in_window(
        table, start or datetime(1970, 1, 1, tzinfo=UTC), end or datetime(9999, 1, 1, tzinfo=UTC)
    )


def build_window(
    raw: RawEventStore,
    offline: Path,
    start: datetime,
    end: datetime,
    *,
    gap: timedelta = timedelta(minutes=30),
    lookback: timedelta = timedelta(hours=6),
    now: datetime | None = None,
) -> BuildResult:
    """Build the three offline tables for ``[start, end)``, rounded out to whole days."""
    start, end = floor_day(start), ceil_day(end)
    result = BuildResult(start, end)
    events = raw.read(start - lookback - gap, end, columns=RAW_COLUMNS)
    result.events = (
        int(
            pc.sum(
                pc.and_(
                    pc.greater_equal(events.column("ts"), pa.scalar(start, TS_TYPE)),
                    pc.equal(events.column("consent"), True),
                )
            ).as_py()
            or 0
        )
        if events.num_rows
        else 0
    )

    sessions = in_window(session_features(events), start, end)
    result.session_rows = sessions.num_rows
    result.sessions = len(pc.unique(sessions.column("session_id"))) if sessions.num_rows else 0

    # A session has ended only once its gap has passed by the clock; before
    # that, a build near "now" must not give a running session an outcome.
    ended_by = min(end, now or datetime.now(UTC))
    outcomes = in_window(session_outcomes(events, gap), start, ended_by)
    result.ended_sessions = outcomes.num_rows

    # User history: the stored outcomes before the window, then the window's own.
    before = read_offline(offline / "session_outcomes", start)
    history = (
        outcomes
        if before is None
        else pa.concat_tables(
            [before.select(outcomes.column_names).cast(outcomes.schema), outcomes]
        )
    )
    users = in_window(user_features(history), start, end)
    result.user_rows = users.num_rows

    # Every table is computed before any day file is replaced, so a run that fails
    # (bad data, a bug) leaves the previous build whole. Each file is replaced
    # atomically; only a failure between two writes (disk full) can mix old and new
    # day files, and the next run of the window rewrites them all.
    for table, name in (
        (sessions, "session_features"),
        (outcomes, "session_outcomes"),
        (users, "user_features"),
    ):
        result.files += write_days(table, offline / name, start, end)
    return result
