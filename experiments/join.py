"""Outcomes joined to decisions, point in time: one row per assigned session.

A session enters an experiment at its first decision (its assignment). Its
outcome is what the session did *strictly after* that decision: a purchase
and its revenue, an exposure (the front end showed the adjustment), a further
cart add, the time to purchase. An event at the decision's own timestamp or
before never counts: the decision could have seen it.

>>> from datetime import UTC, datetime
>>> t = lambda s: datetime.fromtimestamp(s, UTC)
>>> decisions = pa.table({"ts": [t(100), t(150)], "session_id": ["a", "a"],
...     "experiment": ["x", "x"], "variant": ["b", "b"], "propensity": [0.5, 0.5],
...     "risk": [0.7, 0.6], "actions": ["show_discount_popup", "none"]})
>>> events = pa.table({"ts": [t(90), t(100), t(160)], "session_id": ["a"] * 3,
...     "event_type": ["purchase", "purchase", "purchase"], "cart_value": [5.0, 7.0, 9.0],
...     "device": ["mobile"] * 3, "element_id": [None] * 3})
>>> row = join_outcomes(decisions, events).to_pylist()[0]
>>> row["purchased"], row["revenue"], row["time_to_purchase_s"], row["action"]
(True, 9.0, 60.0, 'show_discount_popup')
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from events.contract import EventType

#: Columns of the joined table, one row per assigned session.
OUTCOME_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), False),
        pa.field("decided_at", pa.timestamp("us", tz="UTC"), False),
        pa.field("experiment", pa.string()),
        pa.field("variant", pa.string()),
        pa.field("propensity", pa.float64()),
        pa.field("policy_version", pa.int64()),
        pa.field("risk", pa.float64()),
        pa.field("action", pa.string()),
        pa.field("discount_percent", pa.float64()),
        pa.field("device", pa.string()),
        pa.field("purchased", pa.bool_(), False),
        pa.field("revenue", pa.float64(), False),
        pa.field("exposed", pa.bool_(), False),
        pa.field("added_to_cart_after", pa.bool_(), False),
        pa.field("time_to_purchase_s", pa.float64()),
        # The assignment decision's treatment key, its probability over the whole
        # experiment, and what every arm would have applied (JSON): off-policy
        # evaluation's inputs (experiments.policy_eval).
        pa.field("consent", pa.bool_()),
        pa.field("treatment", pa.string()),
        pa.field("treatment_propensity", pa.float64()),
        pa.field("arm_policies", pa.string()),
        # The session's micro-segment at its assignment (null without a segmenter).
        pa.field("segment", pa.int64()),
    ]
)
_PURCHASE, _EXPOSURE = EventType.PURCHASE.value, EventType.EXPOSURE.value
_ADD = EventType.ADD_TO_CART.value


def first_decisions(decisions: pa.Table) -> pa.Table:
    """Each session's first decision (its assignment), sorted by session."""
    order = pc.sort_indices(decisions, [("session_id", "ascending"), ("ts", "ascending")])
    d = decisions.take(order)
    sid = d.column("session_id").to_numpy(zero_copy_only=False)
    first = np.ones(len(sid), dtype=bool)
    first[1:] = sid[1:] != sid[:-1]
    return d.filter(pa.array(first))


def join_outcomes(decisions: pa.Table, events: pa.Table) -> pa.Table:
    """One row per session with a decision: its assignment and its outcome after it.

    ``decisions`` needs ``ts``, ``session_id``, ``experiment``, ``variant``,
    ``propensity``, ``risk`` and ``actions`` (as ``read_decisions`` gives);
    ``events`` needs ``ts``, ``session_id``, ``event_type``, ``cart_value`` and
    ``device`` (the raw store's schema), and may hold ``consent``.
    """
    first = first_decisions(decisions)
    n = first.num_rows
    at = _seconds(first.column("ts"))
    idx = pc.index_in(events.column("session_id"), value_set=first.column("session_id"))
    keep = pc.is_valid(idx)
    ev = events.filter(keep)
    unit = pc.filter(idx, keep).to_numpy(zero_copy_only=False).astype(np.int64)
    ts = _seconds(ev.column("ts"))
    kind = ev.column("event_type").to_numpy(zero_copy_only=False)
    value = pc.fill_null(ev.column("cart_value"), 0.0).to_numpy(zero_copy_only=False)
    after = ts > at[unit]
    bought = after & (kind == _PURCHASE)
    purchased = np.bincount(unit[bought], minlength=n) > 0
    revenue = np.bincount(unit[bought], weights=value[bought], minlength=n)
    exposed = np.bincount(unit[after & (kind == _EXPOSURE)], minlength=n) > 0
    added = np.bincount(unit[after & (kind == _ADD)], minlength=n) > 0
    first_buy = np.full(n, np.inf)
    np.minimum.at(first_buy, unit[bought], ts[bought])
    to_buy = np.where(purchased, first_buy - at, np.nan)
    device = np.full(n, None, dtype=object)
    device[unit] = ev.column("device").to_numpy(zero_copy_only=False)  # any of the session's
    consent = np.full(n, None, dtype=object)
    if "consent" in ev.column_names:
        consent[unit] = ev.column("consent").to_numpy(zero_copy_only=False)
    actions = first.column("actions").to_numpy(zero_copy_only=False)
    cols = {
        "session_id": first.column("session_id"),
        "decided_at": first.column("ts"),
        "experiment": first.column("experiment"),
        "variant": first.column("variant"),
        "propensity": first.column("propensity"),
        "policy_version": _optional(first, "policy_version", pa.int64()),
        "risk": first.column("risk"),
        "action": pa.array([a.split(",")[0] if a else None for a in actions], pa.string()),
        "discount_percent": _optional(first, "discount_percent", pa.float64()),
        "device": pa.array(device, pa.string()),
        "purchased": pa.array(purchased),
        "revenue": pa.array(np.round(revenue, 2)),
        "exposed": pa.array(exposed),
        "added_to_cart_after": pa.array(added),
        "time_to_purchase_s": pa.array(to_buy, from_pandas=True),
        "consent": pa.array(consent, pa.bool_()),
        "treatment": _optional(first, "treatment", pa.string()),
        "treatment_propensity": _optional(first, "treatment_propensity", pa.float64()),
        "arm_policies": _optional(first, "arm_policies", pa.string()),
        "segment": _optional(first, "segment", pa.int64()),
    }
    return pa.Table.from_pydict(cols, schema=OUTCOME_SCHEMA)


def _optional(table: pa.Table, name: str, kind: pa.DataType) -> pa.Array:
    if name in table.column_names:
        return pc.cast(table.column(name), kind)
    return pa.nulls(table.num_rows, kind)


def _seconds(col: pa.ChunkedArray | pa.Array) -> np.ndarray:
    micros = pc.cast(col, pa.timestamp("us", tz="UTC")).cast(pa.int64())
    return micros.to_numpy(zero_copy_only=False).astype(np.float64) / 1e6
