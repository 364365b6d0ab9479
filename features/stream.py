"""The streaming side of the declared features: live events folded into stored session state.

:func:`fold_sessions` continues every session of a batch from its stored
state with one vectorized scan (:func:`folds.scan` with ``init``): the same
folds and the same arithmetic as the batch build, so a session's live state
equals its batch row, bit for bit, and a batch of 1,000 events costs a few
array operations per fold instead of a Python step per event.

Folds depend on order. An event older than the session's last folded event
cannot be folded exactly online: it is counted as late and left to the next
batch build, which sees every event in order. Events of one time keep their
order of arrival.

>>> out, late = fold_sessions(
...     {"s1": None},
...     {"s1": [{"ts": 10.0, "event_type": "hover", "page_type": "product",
...              "duration_ms": 400.0}]})
>>> state, ts = out["s1"]
>>> state["event_count"], state["hover_count"], ts, late
(1.0, 1.0, 10.0, 0)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from events.contract import ARROW_SCHEMA
from feature_repo.features import SESSION_FOLDS
from features.sessions import EVENT_INPUTS
from folds import Segments, initial_states, prepare_events, scan, state_columns

#: Every stored column of a session's state.
SESSION_STATE = state_columns(SESSION_FOLDS)


@dataclass
class Row:
    """One entity's stored values and their event time (epoch seconds)."""

    values: dict[str, float]
    ts: float


def fold_sessions(
    stored: Mapping[str, Row | None], events: Mapping[str, Sequence[Mapping[str, Any]]]
) -> tuple[dict[str, tuple[dict[str, float], float]], int]:
    """Fold each session's events (in arrival order) into its stored state.

    Returns the new state and its time for every session that changed, and
    the number of late events left to the batch build.
    """
    keys: list[str] = []
    rows: list[Mapping[str, Any]] = []
    late = 0
    for session, evs in events.items():
        row = stored.get(session)
        since = row.values.get("last_event_ts", -math.inf) if row else -math.inf
        for e in evs:
            if e["ts"] < since:
                late += 1
            else:
                keys.append(session)
                rows.append(e)
    if not rows:
        return {}, late
    columns: dict[str, Any] = {
        "entity": keys,
        "ts": np.array([e["ts"] for e in rows], dtype=np.float64),
    }
    for c in EVENT_INPUTS:  # typed like the raw store's columns, nulls as NaN
        columns[c] = pa.array([e.get(c) for e in rows], ARROW_SCHEMA.field(c).type)
    ev = prepare_events(columns, folds=SESSION_FOLDS, arrival=np.arange(len(rows)))
    names = ev.pop("entity_names").tolist()
    start = [stored[n].values if stored.get(n) else None for n in names]  # type: ignore[union-attr]
    values = scan(SESSION_FOLDS, ev, initial_states(SESSION_FOLDS, start))
    seg = Segments.of(ev["entity"])
    ends = seg.starts + seg.lengths - 1
    out: dict[str, tuple[dict[str, float], float]] = {}
    for code, end in zip(ev["entity"][seg.starts], ends, strict=True):
        state = {c: float(values[c][end]) for c in SESSION_STATE}
        out[names[code]] = (state, state["last_event_ts"])
    return out, late


def fold_session(
    state: Row | None, events: Sequence[Mapping[str, Any]]
) -> tuple[dict[str, float] | None, float, int]:
    """One session's events folded into its stored state (see :func:`fold_sessions`).

    Returns the new state (None when nothing changed), its time, and the
    number of late events.
    """
    out, late = fold_sessions({"s": state}, {"s": events})
    if "s" not in out:
        return None, state.ts if state else 0.0, late
    new, ts = out["s"]
    return new, ts, late
