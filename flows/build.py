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

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
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
from flows.folds import EVENT_TYPE_CODES, Fold, Segments, dictionary_codes, prepare_events, scan
from flows.ingest import RawEventStore
from flows.memory import keep_freed_memory
from flows.parallel import PARALLEL_MIN_ROWS, THREADS

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
    ev = prepare_events({"entity": keys, "ts": ts, **columns}, folds=folds)
    return _rows_table(key, ev, scan(folds, ev), _last_of_time(ev))


def _last_of_time(ev: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per event: True when it is its entity's last event at that time."""
    n = len(ev["entity"])
    last = np.ones(n, dtype=bool)
    if n:
        last[:-1] = (ev["entity"][1:] != ev["entity"][:-1]) | (ev["ts"][1:] != ev["ts"][:-1])
    return last


def _rows_table(
    key: str, ev: Mapping[str, np.ndarray], values: Mapping[str, np.ndarray], keep: np.ndarray
) -> pa.Table:
    """The kept rows as a table (key, event_timestamp, values), ordered by UTC day.

    Within a day rows keep their (entity, time) order, so :func:`write_days`
    only slices the table.
    """
    rows = np.flatnonzero(keep)
    days = (ev["ts"][rows] // 86_400).astype(np.int64)
    if len(days) > 1 and not bool(np.all(days[1:] >= days[:-1])):
        rows = rows[np.argsort(days, kind="stable")]
    names = pa.array(ev["entity_names"].tolist(), pa.string())
    data: dict[str, Any] = {
        key: names.take(pa.array(ev["entity"][rows])),
        "event_timestamp": _to_ts(ev["ts"][rows]),
    }
    for col, v in _gather(values, rows).items():
        data[col] = pa.array(v, pa.float64())
    # No column holds nulls (a feature not seen yet is NaN), and saying so in the
    # schema halves the Parquet writer's work: it writes no definition levels.
    schema = pa.schema([pa.field(c, a.type, nullable=False) for c, a in data.items()])
    return pa.table(data, schema=schema)


def _gather(values: Mapping[str, np.ndarray], rows: np.ndarray) -> dict[str, np.ndarray]:
    """``v[rows]`` for every column; large tables gather on several threads."""
    if len(rows) < PARALLEL_MIN_ROWS:
        return {c: v[rows] for c, v in values.items()}
    with ThreadPoolExecutor(THREADS) as pool:
        return dict(zip(values, pool.map(lambda v: v[rows], values.values()), strict=True))


def _string_ranks(col: pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Codes of a string column that sort like the strings (NaN for null), and the strings."""
    idx, values = dictionary_codes(col)
    strings = pa.array(values, pa.string())
    order = pc.sort_indices(strings).to_numpy(zero_copy_only=False)
    rank = np.empty(len(order) + 1, dtype=np.float64)
    rank[order] = np.arange(len(order), dtype=np.float64)
    rank[-1] = np.nan  # index -1: null
    return rank[idx], strings.take(pa.array(order))


@dataclass
class SessionEvents:
    """Consented raw events, encoded once and sorted by session then time.

    The session feature rows and the session outcomes are both read off it.
    """

    ev: dict[str, np.ndarray]
    users: pa.Array  # user ids; ``ev["user"]`` holds their positions (NaN: anonymous)

    @classmethod
    def of(cls, events: pa.Table) -> SessionEvents:
        user_codes, users = _string_ranks(events.column("user_id"))
        consent = pc.fill_null(events.column("consent"), False).to_numpy(zero_copy_only=False)
        ev = prepare_events(
            {
                "entity": events.column("session_id"),
                "ts": epoch_seconds(events.column("ts")),
                "user": user_codes,
                **{c: events.column(c) for c in EVENT_INPUTS},
            },
            folds=SESSION_FOLDS,
            keep=("user", "event_type"),
            where=np.asarray(consent, dtype=bool),
        )
        return cls(ev, users)

    def feature_rows(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Session feature rows with ``start <= event_timestamp < end`` (bounds optional)."""
        ev = self.ev
        values = scan(SESSION_FOLDS, ev)
        keep = _last_of_time(ev)
        if start is not None:
            keep &= ev["ts"] >= start.timestamp()
        if end is not None:
            keep &= ev["ts"] < end.timestamp()
        return _rows_table("session_id", ev, values, keep)

    def outcomes(self, gap: timedelta) -> pa.Table:
        """One row per session: its user, start, last event, end and outcome."""
        ev = self.ev
        seg = Segments.of(ev["entity"])
        starts = seg.starts
        ends = starts + seg.lengths - 1
        empty = len(starts) == 0
        etype = ev["event_type"]
        added = _any_per_session(etype == EVENT_TYPE_CODES[EventType.ADD_TO_CART.value], starts)
        bought = _any_per_session(etype == EVENT_TYPE_CODES[EventType.PURCHASE.value], starts)
        user = np.fmin.reduceat(ev["user"], starts) if not empty else np.zeros(0)
        anonymous = np.isnan(user)
        user_ids = self.users.take(
            pa.array(np.where(anonymous, 0, user).astype(np.int64), mask=anonymous)
        )
        names = pa.array(ev["entity_names"].tolist(), pa.string()).take(
            pa.array(ev["entity"][starts])
        )
        last = ev["ts"][ends]
        end = last + gap.total_seconds()
        abandoned = added & ~bought
        out = pa.table(
            {
                "session_id": names,
                "user_id": user_ids,
                "start_ts": _to_ts(ev["ts"][starts]),
                "last_ts": _to_ts(last),
                "event_timestamp": _to_ts(end),
                "added_to_cart": pa.array(added.astype(np.float64)),
                "purchased": pa.array(bought.astype(np.float64)),
                "abandoned": pa.array(abandoned.astype(np.float64)),
            }
        )
        return out.sort_by([("event_timestamp", "ascending"), ("session_id", "ascending")])


def session_features(events: pa.Table) -> pa.Table:
    """Session feature rows from raw events (consented events only), at every time."""
    return SessionEvents.of(events).feature_rows()


def session_outcomes(events: pa.Table, gap: timedelta) -> pa.Table:
    """One row per session of the raw events (consented events only)."""
    return SessionEvents.of(events).outcomes(gap)


def _any_per_session(hit: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return np.maximum.reduceat(hit, starts) if len(starts) else np.zeros(0, dtype=bool)


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
    if len(days) > 1 and not bool(np.all(days[1:] >= days[:-1])):
        order = np.argsort(days, kind="stable")
        table, days = table.take(pa.array(order)), days[order]
    parts: dict[Path, pa.Table] = {}
    day = floor_day(start)
    while day < end:
        index = int(day.timestamp() // 86_400)
        lo, hi = np.searchsorted(days, [index, index + 1])
        target = root / f"{day_name(day)}.parquet"
        if hi > lo:
            parts[target] = table.slice(lo, hi - lo)
        elif target.exists():
            target.unlink()
        day += DAY
    # Parquet encoding releases the GIL: the day files are written side by side.
    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(lambda item: _write_day(*item), parts.items()))
    return [str(p) for p in parts]


def _write_day(path: Path, table: pa.Table) -> None:
    # Snappy: about twice as fast to write as zstd here, for files about 1.5x larger.
    atomic_write_parquet(path, table, use_dictionary=False, compression="snappy")


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
    # Files written by earlier versions may differ in nullability only.
    table = pa.concat_tables([pq.read_table(f) for f in files], promote_options="default")
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
    keep_freed_memory()
    start, end = floor_day(start), ceil_day(end)
    result = BuildResult(start, end)
    events = SessionEvents.of(
        raw.read(start - lookback - gap, end, columns=RAW_COLUMNS, encoded=True)
    )
    result.events = int(np.count_nonzero(events.ev["ts"] >= start.timestamp()))

    sessions = events.feature_rows(start, end)
    result.session_rows = sessions.num_rows
    result.sessions = len(pc.unique(sessions.column("session_id"))) if sessions.num_rows else 0

    # A session has ended only once its gap has passed by the clock; before
    # that, a build near "now" must not give a running session an outcome.
    ended_by = min(end, now or datetime.now(UTC))
    outcomes = in_window(events.outcomes(gap), start, ended_by)
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
