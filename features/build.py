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

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.memory import keep_freed_memory
from events.ingest import RawEventStore
from features.offline import ceil_day, floor_day, in_window, read_offline, write_days
from features.sessions import RAW_COLUMNS, SessionEvents, user_features


@dataclass
class BuildResult:
    """Counts of what one window build wrote."""

    start: datetime
    end: datetime
    #: Stored events in the window, and those of them with consent (the folded ones).
    events: int = 0
    consented: int = 0
    session_rows: int = 0
    sessions: int = 0
    ended_sessions: int = 0
    user_rows: int = 0
    files: list[str] = field(default_factory=list)


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
    sessions, outcomes = fold_window(raw, start, end, gap, lookback, result)
    users, outcomes = users_and_outcomes(offline, outcomes, start, end, gap, now, result)
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


def fold_window(
    raw: RawEventStore,
    start: datetime,
    end: datetime,
    gap: timedelta,
    lookback: timedelta,
    result: BuildResult,
    where: Callable[[pa.Table], np.ndarray] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """The window's session feature rows and every folded session's outcome (not yet
    cut to the window), counted into ``result``; ``where`` keeps a part of the events
    (:mod:`features.distributed`'s partitions)."""
    table = raw.read(start - lookback - gap, end, columns=RAW_COLUMNS, encoded=True, where=where)
    events = SessionEvents.of(table)
    since_start = pc.greater_equal(
        table.column("ts"), pa.scalar(start, table.schema.field("ts").type)
    )
    result.events += int(pc.sum(since_start).as_py() or 0)
    result.consented += int(np.count_nonzero(events.ev["ts"] >= start.timestamp()))
    sessions = events.feature_rows(start, end)
    result.session_rows += sessions.num_rows
    result.sessions += len(pc.unique(sessions.column("session_id"))) if sessions.num_rows else 0
    return sessions, events.outcomes(gap)


def users_and_outcomes(
    offline: Path,
    outcomes: pa.Table,
    start: datetime,
    end: datetime,
    gap: timedelta,
    now: datetime | None,
    result: BuildResult,
) -> tuple[pa.Table, pa.Table]:
    """The window's user history rows and its ended sessions' outcomes."""
    # A session has ended only once its gap has passed by the clock; before
    # that, a build near "now" must not give a running session an outcome.
    ended_by = min(end, now or datetime.now(UTC))
    outcomes = in_window(outcomes, start, ended_by)
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
    return users, outcomes
