"""Features as incremental folds over an entity's events.

A :class:`Fold` declares a feature once: its name, description and a ``step``
that turns the state before an event into the state after it. The step is
written in numpy array arithmetic, so the same code serves two callers:

* the streaming updater applies it to one event of one entity
  (:func:`fold_one`), and
* the batch builder (:func:`scan`) applies it at every position of every
  entity's event sequence at once: position ``j`` of all entities in one
  vectorized call. The loop runs over positions, not events, so a batch of a
  million events with sessions of at most a few hundred events costs a few
  hundred numpy calls per fold.

Because both paths run the identical floating-point operations in the same
order, batch and streaming values are bit-identical, not merely close.

A fold's state is a tuple of float64 columns; the first is the feature value,
the others (``<name>__<part>``) are the extra state needed to continue the fold
later. All of them are stored in the feature view, so an online row is the
complete state of the fold.

Examples
--------
>>> import numpy as np
>>> hovers = Count("hovers", "Hover events so far.", Match(types=("hover",)))
>>> ev = prepare_events({
...     "entity": np.array(["s1", "s1", "s2"], dtype=object),
...     "ts": np.array([10.0, 11.0, 10.5]),
...     "event_type": np.array(["hover", "hover", "click"], dtype=object),
... })
>>> scan([hovers], ev)["hovers"].tolist()
[1.0, 2.0, 0.0]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from flows.contract import EventType, PageType

State = tuple[np.ndarray, ...]
#: Event columns as the folds see them; see :func:`prepare_events`.
Events = Mapping[str, np.ndarray]

EVENT_TYPE_CODES: dict[str, int] = {t.value: i for i, t in enumerate(EventType)}
PAGE_TYPE_CODES: dict[str, int] = {p.value: i for i, p in enumerate(PageType)}


@dataclass(frozen=True)
class Match:
    """Which events a fold reacts to. Empty tuples match everything.

    >>> m = Match(types=("hover",), elements=("price",))
    >>> ev = {"event_type": np.array([EVENT_TYPE_CODES["hover"]] * 2),
    ...       "element_id": np.array(["price", "image"], dtype=object)}
    >>> m.mask(ev).tolist()
    [True, False]
    """

    types: tuple[str, ...] = ()
    pages: tuple[str, ...] = ()
    elements: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for t in self.types:
            if t not in EVENT_TYPE_CODES:
                raise ValueError(f"Match: unknown event type {t!r}")
        for p in self.pages:
            if p not in PAGE_TYPE_CODES:
                raise ValueError(f"Match: unknown page type {p!r}")

    @property
    def columns(self) -> set[str]:
        cols = set()
        if self.types:
            cols.add("event_type")
        if self.pages:
            cols.add("page_type")
        if self.elements:
            cols.add("element_id")
        return cols

    def mask(self, ev: Events) -> np.ndarray:
        n = len(next(iter(ev.values())))
        m = np.ones(n, dtype=bool)
        if self.types:
            m &= np.isin(ev["event_type"], [EVENT_TYPE_CODES[t] for t in self.types])
        if self.pages:
            m &= np.isin(ev["page_type"], [PAGE_TYPE_CODES[p] for p in self.pages])
        if self.elements:
            m &= np.isin(ev["element_id"], np.array(self.elements, dtype=object))
        return m


ANY = Match()


@dataclass(frozen=True)
class Fold(ABC):
    """One feature: a named, described, incremental fold over events."""

    name: str
    description: str

    #: Names of the extra state parts after the value (stored as ``name__part``).
    parts: tuple[str, ...] = field(default=(), init=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """Stored columns: the value, then the extra state parts."""
        return (self.name, *(f"{self.name}__{p}" for p in self.parts))

    @abstractmethod
    def inputs(self) -> set[str]:
        """Event columns the step reads."""

    def initial(self, n: int) -> State:
        """State of ``n`` entities that have seen no event."""
        return tuple(np.zeros(n) for _ in self.columns)

    @abstractmethod
    def step(self, state: State, ev: Events) -> State:
        """State after one more event per entity (arrays of equal length)."""


@dataclass(frozen=True)
class Count(Fold):
    """Number of matching events so far."""

    match: Match = ANY

    def inputs(self) -> set[str]:
        return self.match.columns

    def step(self, state: State, ev: Events) -> State:
        return (state[0] + self.match.mask(ev),)


@dataclass(frozen=True)
class Sum(Fold):
    """Sum of ``field`` over events, weighted by event type (e.g. +1 add, -1 remove)."""

    field: str = ""
    weights: tuple[tuple[str, float], ...] = ()

    def inputs(self) -> set[str]:
        return {self.field, "event_type"}

    def step(self, state: State, ev: Events) -> State:
        w = np.zeros(len(ev["event_type"]))
        for t, weight in self.weights:
            w = np.where(ev["event_type"] == EVENT_TYPE_CODES[t], weight, w)
        x = ev[self.field]
        add = np.where((w != 0) & ~np.isnan(x), w * x, 0.0)
        return (state[0] + add,)


@dataclass(frozen=True)
class Ewm(Fold):
    """Exponentially smoothed ``field`` over matching events (NaN until the first one).

    ``value <- alpha * x + (1 - alpha) * value``, starting from the first ``x``.
    """

    field: str = ""
    match: Match = ANY
    alpha: float = 0.3

    def inputs(self) -> set[str]:
        return {self.field} | self.match.columns

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan),)

    def step(self, state: State, ev: Events) -> State:
        v, x = state[0], ev[self.field]
        hit = self.match.mask(ev) & ~np.isnan(x)
        smoothed = np.where(np.isnan(v), x, self.alpha * x + (1.0 - self.alpha) * v)
        return (np.where(hit, smoothed, v),)


@dataclass(frozen=True)
class Max(Fold):
    """Largest ``field`` among matching events (0 before the first)."""

    field: str = ""
    match: Match = ANY

    def inputs(self) -> set[str]:
        return {self.field} | self.match.columns

    def step(self, state: State, ev: Events) -> State:
        x = ev[self.field]
        hit = self.match.mask(ev) & ~np.isnan(x)
        return (np.where(hit, np.maximum(state[0], np.where(hit, x, 0.0)), state[0]),)


@dataclass(frozen=True)
class First(Fold):
    """``field`` of the first event (e.g. session start time)."""

    field: str = "ts"

    def inputs(self) -> set[str]:
        return {self.field}

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan),)

    def step(self, state: State, ev: Events) -> State:
        return (np.where(np.isnan(state[0]), ev[self.field], state[0]),)


@dataclass(frozen=True)
class Last(Fold):
    """``field`` of the latest event (e.g. time of the last interaction)."""

    field: str = "ts"

    def inputs(self) -> set[str]:
        return {self.field}

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan),)

    def step(self, state: State, ev: Events) -> State:
        x = ev[self.field]
        return (np.where(np.isnan(x), state[0], x),)


@dataclass(frozen=True)
class Dwell(Fold):
    """Seconds spent on pages of one type, from gaps between consecutive events.

    The gap after an event on a matching page counts towards the dwell, capped
    at ``cap_s`` so that an idle tab does not count as attention.
    """

    page: str = PageType.PRODUCT.value
    cap_s: float = 300.0
    parts: tuple[str, ...] = field(default=("prev_ts", "prev_on_page"), init=False)

    def inputs(self) -> set[str]:
        return {"ts", "page_type"}

    def initial(self, n: int) -> State:
        return (np.zeros(n), np.full(n, np.nan), np.zeros(n))

    def step(self, state: State, ev: Events) -> State:
        total, prev_ts, prev_on = state
        ts = ev["ts"]
        gap = np.where(np.isnan(prev_ts), 0.0, np.minimum(ts - prev_ts, self.cap_s))
        total = total + np.where(prev_on > 0, gap, 0.0)
        on = (ev["page_type"] == PAGE_TYPE_CODES[self.page]).astype(np.float64)
        return (total, ts, on)


@dataclass(frozen=True)
class Rate(Fold):
    """``numerator / denominator`` of two running sums of 0/1 fields (0 when empty)."""

    numerator: str = ""
    denominator: str | None = None
    parts: tuple[str, ...] = field(default=("num", "den"), init=False)

    def inputs(self) -> set[str]:
        return {self.numerator} | ({self.denominator} if self.denominator else set())

    def step(self, state: State, ev: Events) -> State:
        num = state[1] + ev[self.numerator]
        den = state[2] + (ev[self.denominator] if self.denominator else 1.0)
        rate = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
        return (rate, num, den)


# ---------------------------------------------------------------------------
# Running folds: batch scan and streaming step


def prepare_events(columns: Mapping[str, np.ndarray | Sequence[Any]]) -> dict[str, np.ndarray]:
    """Encode raw event columns for folding, sorted by entity then time.

    ``entity`` (the key) and ``ts`` (epoch seconds, float) are required;
    ``event_type`` and ``page_type`` become small integer codes, ``element_id``
    stays an object array, measurements become float64 with NaN for missing.
    The sort is stable on (entity, ts) so equal times keep their input order.
    """
    cols = {k: np.asarray(v) for k, v in columns.items()}
    n = len(cols["entity"])
    out: dict[str, np.ndarray] = {"entity": cols["entity"].astype(object)}
    out["ts"] = cols["ts"].astype(np.float64)
    for name, codes in (("event_type", EVENT_TYPE_CODES), ("page_type", PAGE_TYPE_CODES)):
        if name in cols:
            raw = cols[name]
            out[name] = np.array([codes.get(v, -1) if v is not None else -1 for v in raw]) if (
                raw.dtype == object
            ) else raw.astype(np.int64)
    for name, v in cols.items():
        if name not in out:
            out[name] = v.astype(object) if v.dtype.kind in "OUS" else v.astype(np.float64)
    order = np.lexsort((out["ts"], out["entity"])) if n else np.arange(0)
    return {k: v[order] for k, v in out.items()}


@dataclass(frozen=True)
class Segments:
    """Where each entity's run of events starts in the sorted columns, and its length."""

    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def of(cls, entity: np.ndarray) -> Segments:
        n = len(entity)
        if n == 0:
            return cls(np.zeros(0, np.int64), np.zeros(0, np.int64))
        change = np.ones(n, dtype=bool)
        change[1:] = entity[1:] != entity[:-1]
        starts = np.flatnonzero(change)
        lengths = np.diff(np.append(starts, n))
        return cls(starts, lengths)


def scan(
    folds: Sequence[Fold], ev: Events, initial: Mapping[str, np.ndarray] | None = None
) -> dict[str, np.ndarray]:
    """Every fold column after every event (columns aligned with ``ev``).

    ``ev`` must be sorted by entity then time (see :func:`prepare_events`).
    ``initial`` optionally gives each entity's starting state (one value per
    segment, keyed by column name), for continuing folds across windows.
    """
    n = len(ev["entity"])
    seg = Segments.of(ev["entity"])
    by_len = np.argsort(-seg.lengths, kind="stable")
    starts, lengths = seg.starts[by_len], seg.lengths[by_len]
    states: dict[str, list[np.ndarray]] = {}
    for f in folds:
        st = list(f.initial(len(starts)))
        if initial is not None:
            for i, col in enumerate(f.columns):
                if col in initial:
                    st[i] = np.asarray(initial[col], dtype=np.float64)[by_len].copy()
        states[f.name] = st
    out = {c: np.empty(n) for f in folds for c in f.columns}
    needed = {"ts"}.union(*(f.inputs() for f in folds))
    # Entities sorted longest first, so those still active at position j are a
    # prefix: active_at[j] = number of entities with more than j events.
    positions = np.arange(int(lengths.max(initial=0)))
    active_at = len(lengths) - np.searchsorted(lengths[::-1], positions, side="right")
    for j, k in enumerate(active_at):
        idx = starts[:k] + j
        view = {c: ev[c][idx] for c in needed}
        for f in folds:
            st = states[f.name]
            new = f.step(tuple(s[:k] for s in st), view)
            for s, v, col in zip(st, new, f.columns, strict=True):
                s[:k] = v
                out[col][idx] = v
    return out


def fold_one(
    folds: Sequence[Fold], state: Mapping[str, float] | None, event: Mapping[str, Any]
) -> dict[str, float]:
    """Streaming step: the state after one more event of one entity.

    ``state`` maps column names to the stored values (``None`` for an entity
    with no events yet); ``event`` is one prepared event (scalars).
    """
    out: dict[str, float] = {}
    ev = {k: np.asarray([v]) for k, v in event.items()}
    for f in folds:
        if state is None:
            st = f.initial(1)
        else:
            st = tuple(np.asarray([state.get(c, np.nan)], dtype=np.float64) for c in f.columns)
        for col, v in zip(f.columns, f.step(st, ev), strict=True):
            out[col] = float(v[0])
    return out


def state_columns(folds: Sequence[Fold]) -> list[str]:
    """All stored columns of ``folds``, in declaration order."""
    return [c for f in folds for c in f.columns]
