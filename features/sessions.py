"""Session and user feature rows, folded from raw events with the declared folds.

* :class:`SessionEvents`: consented raw events, encoded once and sorted by
  session then time; the session feature rows (a session's features after
  each of its events, the last row when several events share a time) and the
  session outcomes (one row per ended session) are both read off it.
* :func:`user_features`: a user's history after each ended session.

The folds and the columns they read come from ``feature_repo/features.py``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.parallel import PARALLEL_MIN_ROWS, THREADS
from events.contract import RECORD_ONLY_TYPES, EventType
from feature_repo.features import SESSION_FOLDS, USER_FOLDS
from features.offline import TS_TYPE, epoch_seconds, micros, strictly_increasing, to_ts
from folds import (
    EVENT_TYPE_CODES,
    Fold,
    Segments,
    dictionary_codes,
    inputs_of,
    prepare_events,
    scan,
)

#: Event columns the session folds read, and the event type the outcomes read,
#: besides the key and the time: derived from the folds themselves.
EVENT_INPUTS: tuple[str, ...] = tuple(sorted({*inputs_of(SESSION_FOLDS), "event_type"} - {"ts"}))
#: Raw columns the builder reads (ids, device and browser are not features).
RAW_COLUMNS = ("session_id", "user_id", "ts", "seq", "consent", *EVENT_INPUTS)


def fold_table(
    folds: Sequence[Fold], key: str, keys: Any, ts: np.ndarray, columns: dict[str, Any]
) -> pa.Table:
    """Scan ``folds`` and return one row per (key, time), the last when times repeat."""
    ev = prepare_events({"entity": keys, "ts": ts, **columns}, folds=folds)
    return _rows_table(key, ev, scan(folds, ev), _last_of_time(ev), micros(ev["ts"]))


def _last_of_time(ev: Mapping[str, np.ndarray]) -> np.ndarray:
    """Per event: True when it is its entity's last event at that time."""
    n = len(ev["entity"])
    last = np.ones(n, dtype=bool)
    if n:
        last[:-1] = (ev["entity"][1:] != ev["entity"][:-1]) | (ev["ts"][1:] != ev["ts"][:-1])
    return last


def _rows_table(
    key: str,
    ev: Mapping[str, np.ndarray],
    values: Mapping[str, np.ndarray],
    keep: np.ndarray,
    stamps: np.ndarray,
) -> pa.Table:
    """The kept rows as a table (key, event_timestamp, values), ordered by UTC day.

    ``stamps`` are the rows' times in microseconds. Within a day rows keep
    their (entity, time) order, so :func:`write_days` only slices the table.
    """
    rows = np.flatnonzero(keep)
    days = stamps[rows] // 86_400_000_000
    if len(days) > 1 and not bool(np.all(days[1:] >= days[:-1])):
        rows = rows[np.argsort(days, kind="stable")]
    names = pa.array(ev["entity_names"].tolist(), pa.string())
    data: dict[str, Any] = {
        key: names.take(pa.array(ev["entity"][rows])),
        "event_timestamp": pa.array(stamps[rows].astype("datetime64[us]"), TS_TYPE),
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
    """Consented raw events, encoded once and sorted by session, time and arrival.

    The session feature rows and the session outcomes are both read off it.
    Every event gets a feature row: the session's features after it, stamped
    with its order time (:func:`features.offline.strictly_increasing`: its
    time, pushed a microsecond past the row before it on a tie). A decision at
    an event therefore sees exactly the events up to and including it, never
    one that arrived after it at the same second.
    """

    ev: dict[str, np.ndarray]
    users: pa.Array  # user ids; ``ev["user"]`` holds their positions (NaN: anonymous)

    @classmethod
    def of(cls, events: pa.Table) -> SessionEvents:
        user_codes, users = _string_ranks(events.column("user_id"))
        consent = pc.fill_null(events.column("consent"), False).to_numpy(zero_copy_only=False)
        # Exposures record what the site showed: never behaviour features.
        behaviour = ~pc.is_in(
            events.column("event_type"), pa.array(sorted(RECORD_ONLY_TYPES))
        ).to_numpy(zero_copy_only=False)
        ev = prepare_events(
            {
                "entity": events.column("session_id"),
                "ts": epoch_seconds(events.column("ts")),
                "user": user_codes,
                **{c: events.column(c) for c in EVENT_INPUTS},
            },
            folds=SESSION_FOLDS,
            keep=("user", "event_type"),
            where=np.asarray(consent, dtype=bool) & behaviour,
            arrival=events.column("seq") if "seq" in events.column_names else None,
        )
        return cls(ev, users)

    @property
    def stamps(self) -> np.ndarray:
        """Each event's order time in microseconds (see :class:`SessionEvents`)."""
        return strictly_increasing(self.ev["entity"], micros(self.ev["ts"]))

    def feature_rows(self, start: datetime | None = None, end: datetime | None = None) -> pa.Table:
        """Session feature rows with ``start <= event_timestamp < end`` (bounds optional)."""
        ev = self.ev
        values = scan(SESSION_FOLDS, ev)
        stamps = self.stamps
        keep = np.ones(len(stamps), dtype=bool)
        if start is not None:
            keep &= stamps >= start.timestamp() * 1_000_000
        if end is not None:
            keep &= stamps < end.timestamp() * 1_000_000
        return _rows_table("session_id", ev, values, keep, stamps)

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
                "start_ts": to_ts(ev["ts"][starts]),
                "last_ts": to_ts(last),
                "event_timestamp": to_ts(end),
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
