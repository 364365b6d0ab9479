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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from dataclasses import field as dc_field
from functools import cached_property
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.contract import EventType, PageType
from flows.parallel import PARALLEL_MIN_ROWS, THREADS

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
        cols: set[str] = set()
        if self.types:
            cols.add("event_type")
        if self.pages:
            cols.add("page_type")
        if self.elements:
            cols.add("element_id")
        return cols

    @property
    def key(self) -> str:
        """Column name under which :func:`scan` caches this match's mask."""
        return f"__match__{self.types}{self.pages}{self.elements}"

    def mask(self, ev: Events) -> np.ndarray:
        if self.key in ev:  # precomputed once per batch by scan()
            return ev[self.key]
        n = len(next(iter(ev.values())))
        m = np.ones(n, dtype=bool)
        if self.types:
            m &= np.isin(ev["event_type"], [EVENT_TYPE_CODES[t] for t in self.types])
        if self.pages:
            m &= np.isin(ev["page_type"], [PAGE_TYPE_CODES[p] for p in self.pages])
        if self.elements:
            m &= np.isin(ev["element_id"], np.array(self.elements, dtype=object))
        return m

    def mask_coded(self, texts: Mapping[str, tuple[np.ndarray, list[Any]]], n: int) -> np.ndarray:
        """:meth:`mask` of ``n`` events from dictionary-encoded columns: per column,
        the indices (-1 for null) and the distinct values (see :func:`dictionary_codes`).
        Each distinct value is tested once, not each event.

        >>> texts = {"event_type": (np.array([0, 1, -1]), ["hover", "click"])}
        >>> Match(types=("hover",)).mask_coded(texts, 3).tolist()
        [True, False, False]
        """
        m = np.ones(n, dtype=bool)
        for name, allowed in zip(_MATCHED, (self.types, self.pages, self.elements), strict=True):
            if allowed:
                idx, values = texts[name]
                m &= np.array([v in allowed for v in values] + [False])[idx]
        return m


#: The event columns a :class:`Match` filters on, in the order of its fields.
_MATCHED = ("event_type", "page_type", "element_id")


ANY = Match()


# ---------------------------------------------------------------------------
# Segments: each entity's run of events in the sorted columns


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

    @cached_property
    def is_first(self) -> np.ndarray:
        out = np.zeros(int(self.lengths.sum()), dtype=bool)
        out[self.starts] = True
        return out

    def cumsum(self, x: np.ndarray) -> np.ndarray:
        """Running sum within each entity; exact for integer input."""
        cs = np.cumsum(x)
        if len(cs) == 0:
            return cs
        return cs - np.repeat(cs[self.starts] - x[self.starts], self.lengths)

    def latest(self, touched: np.ndarray) -> np.ndarray:
        """Per event: its entity's latest touched event so far, as a position among
        the touched events (``np.flatnonzero(touched)``); -1 when there is none."""
        count = np.cumsum(touched, dtype=np.int64)
        if len(count) == 0:
            return count
        before = np.repeat(count[self.starts] - touched[self.starts], self.lengths)
        return np.where(count > before, count - 1, -1)

    def previous(self, x: np.ndarray, fill: float = np.nan) -> np.ndarray:
        """``x`` of the entity's previous event (``fill`` at its first event)."""
        prev = np.empty_like(x, dtype=np.float64)
        prev[1:] = x[:-1]
        prev[self.is_first] = fill
        return prev


def carry(values: np.ndarray, last: np.ndarray, initial: float) -> np.ndarray:
    """``values`` at index ``last`` (the latest touched event), ``initial`` where none."""
    if len(values) == 0:
        return np.full(len(last), initial)
    return np.where(last >= 0, values[np.maximum(last, 0)], initial)


# ---------------------------------------------------------------------------
# Folds


@dataclass(frozen=True)
class Fold(ABC):
    """One feature: a named, described, incremental fold over events.

    ``step`` is the streaming definition. ``scan`` gives the state after every
    event of a sorted batch; the default runs ``step`` position by position
    over the events that can change the state (see :meth:`touches`), and kinds
    with a closed form override it with a vectorized equivalent. The property
    test in ``tests/test_features.py`` checks that both agree exactly.
    """

    name: str
    description: str

    #: Names of the extra state parts after the value (stored as ``name__part``).
    parts: tuple[str, ...] = dc_field(default=(), init=False)

    @property
    def columns(self) -> tuple[str, ...]:
        """Stored columns: the value, then the extra state parts."""
        return (self.name, *(f"{self.name}__{p}" for p in self.parts))

    @abstractmethod
    def inputs(self) -> set[str]:
        """Event columns the step reads, besides those of its ``match``."""

    def initial(self, n: int) -> State:
        """State of ``n`` entities that have seen no event."""
        return tuple(np.zeros(n) for _ in self.columns)

    @abstractmethod
    def step(self, state: State, ev: Events) -> State:
        """State after one more event per entity (arrays of equal length)."""

    def touches(self, ev: Events) -> np.ndarray:
        """Events that can change the state; the state carries over the others."""
        return np.ones(len(ev["ts"]), dtype=bool)

    def scan(self, ev: Events, seg: Segments) -> State:
        """State after every event of the sorted batch ``ev``."""
        mask = self.touches(ev)
        touched = np.flatnonzero(mask)
        sub = {k: ev[k][touched] for k in self._reads(ev)}
        states = _position_loop(self, sub, Segments.of(sub["entity"]))
        where = seg.latest(mask)
        init = self.initial(1)
        return tuple(carry(s, where, float(i[0])) for s, i in zip(states, init, strict=True))

    def _reads(self, ev: Events) -> set[str]:
        """Columns of ``ev`` that ``step`` and ``touches`` read (plus key and time)."""
        keys = {"entity", "ts", *self.inputs()} | {m.key for m in _matches(self)}
        for m in _matches(self):
            if m.key not in ev:
                keys |= m.columns
        return keys & set(ev)


def _position_loop(fold: Fold, ev: Events, seg: Segments) -> State:
    """Apply ``fold.step`` at position j of every entity at once, for each j."""
    n = len(ev["ts"])
    by_len = np.argsort(-seg.lengths, kind="stable")
    starts, lengths = seg.starts[by_len], seg.lengths[by_len]
    state = list(fold.initial(len(starts)))
    out = [np.empty(n) for _ in fold.columns]
    # Entities sorted longest first, so those still active at position j are a
    # prefix: active[j] = number of entities with more than j events.
    positions = np.arange(int(lengths.max(initial=0)))
    active = len(lengths) - np.searchsorted(lengths[::-1], positions, side="right")
    for j, k in enumerate(active):
        idx = starts[:k] + j
        new = fold.step(tuple(s[:k] for s in state), {c: v[idx] for c, v in ev.items()})
        for s, o, v in zip(state, out, new, strict=True):
            s[:k] = v
            o[idx] = v
    return tuple(out)


@dataclass(frozen=True)
class Count(Fold):
    """Number of matching events so far."""

    match: Match = ANY

    def inputs(self) -> set[str]:
        return set()

    def step(self, state: State, ev: Events) -> State:
        return (state[0] + self.match.mask(ev),)

    def scan(self, ev: Events, seg: Segments) -> State:
        return (seg.cumsum(self.match.mask(ev).astype(np.int64)).astype(np.float64),)


@dataclass(frozen=True)
class Sum(Fold):
    """Sum of a money ``field`` by event type (e.g. +1 add, -1 remove), kept in cents."""

    field: str = ""
    weights: tuple[tuple[str, float], ...] = ()
    parts: tuple[str, ...] = dc_field(default=("cents",), init=False)

    def inputs(self) -> set[str]:
        return {self.field, "event_type"}

    def _cents(self, ev: Events) -> np.ndarray:
        w = np.zeros(len(ev["event_type"]))
        for t, weight in self.weights:
            w = np.where(ev["event_type"] == EVENT_TYPE_CODES[t], weight, w)
        x = ev[self.field]
        return np.where((w != 0) & ~np.isnan(x), w * np.round(np.nan_to_num(x) * 100.0), 0.0)

    def step(self, state: State, ev: Events) -> State:
        cents = state[1] + self._cents(ev)
        return (cents / 100.0, cents)

    def scan(self, ev: Events, seg: Segments) -> State:
        cents = seg.cumsum(self._cents(ev).astype(np.int64)).astype(np.float64)
        return (cents / 100.0, cents)


@dataclass(frozen=True)
class Ewm(Fold):
    """Exponentially smoothed ``field`` over matching events (NaN until the first one).

    ``value <- alpha * x + (1 - alpha) * value``, starting from the first ``x``.
    """

    field: str = ""
    match: Match = ANY
    alpha: float = 0.3

    def inputs(self) -> set[str]:
        return {self.field}

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan),)

    def touches(self, ev: Events) -> np.ndarray:
        return self.match.mask(ev) & ~np.isnan(ev[self.field])

    def step(self, state: State, ev: Events) -> State:
        v, x = state[0], ev[self.field]
        smoothed = np.where(np.isnan(v), x, self.alpha * x + (1.0 - self.alpha) * v)
        return (np.where(self.touches(ev), smoothed, v),)


@dataclass(frozen=True)
class _RunningRatio(Fold):
    """A value from two running sums of whole numbers, kept as its extra state.

    Subclasses say what each event adds to the numerator and the denominator
    (:meth:`_increments`) and how the two make the value (:meth:`_ratio`: NaN
    while the denominator is 0). Whole numbers sum exactly in any order, so
    the scan's cumulative sums equal the step's additions.
    """

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan), np.zeros(n), np.zeros(n))

    @abstractmethod
    def _increments(self, ev: Events) -> tuple[np.ndarray, np.ndarray]:
        """What each event adds to the numerator and to the denominator."""

    def _ratio(self, num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    def step(self, state: State, ev: Events) -> State:
        num, den = self._increments(ev)
        num, den = state[1] + num, state[2] + den
        return (self._ratio(num, den), num, den)

    def scan(self, ev: Events, seg: Segments) -> State:
        num, den = self._increments(ev)
        num = seg.cumsum(num.astype(np.int64)).astype(np.float64)
        den = seg.cumsum(den.astype(np.int64)).astype(np.float64)
        return (self._ratio(num, den), num, den)


@dataclass(frozen=True)
class Mean(_RunningRatio):
    """Running mean of ``field`` over matching events (NaN before the first).

    Values are summed in whole units (rounded), so the sum is exact in any order.
    """

    field: str = ""
    match: Match = ANY
    parts: tuple[str, ...] = dc_field(default=("total", "n"), init=False)

    def inputs(self) -> set[str]:
        return {self.field}

    def _increments(self, ev: Events) -> tuple[np.ndarray, np.ndarray]:
        x = ev[self.field]
        hit = self.match.mask(ev) & ~np.isnan(x)
        return np.where(hit, np.round(np.nan_to_num(x)), 0.0), hit


@dataclass(frozen=True)
class Max(Fold):
    """Largest ``field`` among matching events (0 before the first)."""

    field: str = ""
    match: Match = ANY

    def inputs(self) -> set[str]:
        return {self.field}

    def touches(self, ev: Events) -> np.ndarray:
        return self.match.mask(ev) & ~np.isnan(ev[self.field])

    def step(self, state: State, ev: Events) -> State:
        x = np.where(self.touches(ev), ev[self.field], state[0])
        return (np.maximum(state[0], x),)


@dataclass(frozen=True)
class _FieldValue(Fold):
    """A fold that keeps one value of ``field`` (NaN until an event has it)."""

    field: str = "ts"

    def inputs(self) -> set[str]:
        return {self.field}

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan),)


@dataclass(frozen=True)
class First(_FieldValue):
    """``field`` of the first event that has it (e.g. session start time)."""

    def step(self, state: State, ev: Events) -> State:
        return (np.where(np.isnan(state[0]), ev[self.field], state[0]),)

    def scan(self, ev: Events, seg: Segments) -> State:
        x = ev[self.field]
        has = ~np.isnan(x)
        firsts = np.where(has, np.arange(len(x)), len(x))
        first_of_seg = np.minimum.reduceat(firsts, seg.starts) if len(x) else firsts
        f = np.repeat(first_of_seg, seg.lengths)
        seen = np.arange(len(x)) >= f
        return (np.where(seen, x[np.minimum(f, max(len(x) - 1, 0))], np.nan),)


@dataclass(frozen=True)
class Last(_FieldValue):
    """``field`` of the latest event that has it (e.g. time of the last interaction)."""

    def step(self, state: State, ev: Events) -> State:
        x = ev[self.field]
        return (np.where(np.isnan(x), state[0], x),)

    def scan(self, ev: Events, seg: Segments) -> State:
        x = ev[self.field]
        has = ~np.isnan(x)
        return (carry(x[has], seg.latest(has), np.nan),)


@dataclass(frozen=True)
class Dwell(Fold):
    """Seconds spent on pages of one type, from gaps between consecutive events.

    The gap after an event on a matching page counts towards the dwell, capped
    at ``cap_s`` so that an idle tab does not count as attention. Gaps are
    summed in whole milliseconds, so the sum is exact in any order.
    """

    page: str = PageType.PRODUCT.value
    cap_s: float = 300.0
    parts: tuple[str, ...] = dc_field(default=("ms", "prev_ts", "prev_on_page"), init=False)

    def inputs(self) -> set[str]:
        return {"ts", "page_type"}

    def initial(self, n: int) -> State:
        return (np.zeros(n), np.zeros(n), np.full(n, np.nan), np.zeros(n))

    def _gap_ms(self, ts: np.ndarray, prev_ts: np.ndarray, prev_on: np.ndarray) -> np.ndarray:
        gap = np.minimum(
            np.round(ts * 1000.0) - np.round(np.nan_to_num(prev_ts) * 1000.0), self.cap_s * 1000.0
        )
        return np.where(np.isnan(prev_ts) | (prev_on <= 0), 0.0, gap)

    def _on(self, ev: Events) -> np.ndarray:
        return (ev["page_type"] == PAGE_TYPE_CODES[self.page]).astype(np.float64)

    def step(self, state: State, ev: Events) -> State:
        _, ms, prev_ts, prev_on = state
        ms = ms + self._gap_ms(ev["ts"], prev_ts, prev_on)
        return (ms / 1000.0, ms, ev["ts"], self._on(ev))

    def scan(self, ev: Events, seg: Segments) -> State:
        ts, on = ev["ts"], self._on(ev)
        gap = self._gap_ms(ts, seg.previous(ts), seg.previous(on, 0.0))
        ms = seg.cumsum(gap.astype(np.int64)).astype(np.float64)
        return (ms / 1000.0, ms, ts.astype(np.float64), on)


@dataclass(frozen=True)
class Rate(Fold):
    """``numerator / denominator`` of two running counts of 0/1 fields (0 when empty)."""

    numerator: str = ""
    denominator: str | None = None
    parts: tuple[str, ...] = dc_field(default=("num", "den"), init=False)

    def inputs(self) -> set[str]:
        return {self.numerator} | ({self.denominator} if self.denominator else set())

    def _den(self, ev: Events) -> np.ndarray:
        return ev[self.denominator] if self.denominator else np.ones(len(ev[self.numerator]))

    @staticmethod
    def _rate(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)

    def step(self, state: State, ev: Events) -> State:
        num, den = state[1] + ev[self.numerator], state[2] + self._den(ev)
        return (self._rate(num, den), num, den)

    def scan(self, ev: Events, seg: Segments) -> State:
        num = seg.cumsum(ev[self.numerator].astype(np.int64)).astype(np.float64)
        den = seg.cumsum(self._den(ev).astype(np.int64)).astype(np.float64)
        return (self._rate(num, den), num, den)


# ---------------------------------------------------------------------------
# Running folds: batch scan and streaming step


def prepare_events(
    columns: Mapping[str, Any],
    *,
    folds: Sequence[Fold] | None = None,
    keep: Sequence[str] = (),
    where: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Encode raw event columns for folding, sorted by entity then time.

    ``entity`` (the key) and ``ts`` (epoch seconds, float) are required;
    columns may be numpy arrays, sequences or Arrow arrays. The entity becomes
    an integer code (its names are kept under ``entity_names``:
    ``entity_names[code]``), ``event_type`` and ``page_type`` become small
    integer codes, other strings (``element_id``) become object arrays, and
    measurements become float64 with NaN for missing. Equal (entity, ts) pairs
    keep their input order.

    With ``folds``, only the columns those folds read are kept, and the masks
    of their event filters (:class:`Match`) are computed here, on the encoded
    columns, under :attr:`Match.key`; :func:`scan` and :func:`fold_one` give
    the same values either way; ``keep`` names further columns to keep. With
    ``where`` (a boolean mask over the input rows), only those rows are kept.

    >>> ev = prepare_events({"entity": ["b", "a", "b"], "ts": [2.0, 1.0, 1.0]})
    >>> ev["entity"].tolist(), ev["ts"].tolist(), ev["entity_names"].tolist()
    ([0, 0, 1], [1.0, 2.0, 1.0], ['b', 'a'])
    >>> hovers = Count("hovers", "Hover events.", Match(types=("hover",), elements=("price",)))
    >>> ev = prepare_events({"entity": ["a", "a"], "ts": [1.0, 2.0],
    ...                      "event_type": ["hover", "hover"], "element_id": ["price", None]},
    ...                     folds=[hovers], where=np.array([True, True]))
    >>> sorted(ev), ev[hovers.match.key].tolist()
    (["__match__('hover',)()('price',)", 'entity', 'entity_names', 'ts'], [True, False])
    """
    codes, entity_names = dictionary_codes(columns["entity"])
    ts = _numpy(columns["ts"])
    order = _entity_time_order(codes, ts, where)
    if folds is None:
        wanted, matches = set(columns), {}
    else:
        wanted = {c for f in folds for c in f.inputs()} | set(keep)
        matches = {m.key: m for f in folds for m in _matches(f)}
    match_columns = {c for m in matches.values() for c in m.columns}
    prepared = {"entity": codes[order], "ts": ts[order]}
    texts: dict[str, tuple[np.ndarray, list[Any]]] = {}
    for name, v in columns.items():
        if name in ("entity", "ts") or name not in wanted | match_columns:
            continue
        if name in _CODED or _is_text(v):
            idx, values = dictionary_codes(v)
            texts[name] = (idx[order], values)
            if name in wanted:
                prepared[name] = _decode(name, *texts[name])
        else:
            prepared[name] = _numpy(v)[order]
    # Event filters straight from the dictionaries: one test per distinct value.
    for key, m in matches.items():
        prepared[key] = m.mask_coded(texts, len(order))
    prepared["entity_names"] = np.asarray(entity_names, dtype=object)
    return prepared


#: String columns that folds see as small integer codes.
_CODED = {"event_type": EVENT_TYPE_CODES, "page_type": PAGE_TYPE_CODES}


def _entity_time_order(codes: np.ndarray, ts: np.ndarray, where: np.ndarray | None) -> np.ndarray:
    """Indices of the kept rows, sorted by entity code then time (stable)."""
    rows = np.arange(len(codes)) if where is None else np.flatnonzero(where)
    keys, times = codes[rows], ts[rows]
    if len(times) > 1 and not bool(np.all(times[1:] >= times[:-1])):
        return rows[np.lexsort((times, keys))]
    # Already in time order (the raw store keeps its parts so): a stable sort by
    # entity alone gives entity-then-time order. Small keys sort by radix.
    small = keys.astype(np.uint16) if len(codes) and codes.max() < 65_536 else keys
    return rows[np.argsort(small, kind="stable")]


def _is_text(v: Any) -> bool:
    if isinstance(v, pa.ChunkedArray | pa.Array):
        t = v.type.value_type if pa.types.is_dictionary(v.type) else v.type
        return bool(pa.types.is_string(t) or pa.types.is_large_string(t))
    return np.asarray(v).dtype.kind in "OUS"


def dictionary_codes(v: Any) -> tuple[np.ndarray, list[Any]]:
    """Dictionary indices (-1 for null) and the distinct values of a string column.

    Dictionary-encoded Arrow columns (as Parquet reads them with
    ``read_dictionary``) are used as they are, without decoding every row.
    """
    if isinstance(v, pa.ChunkedArray):
        if pa.types.is_dictionary(v.type):
            v = v.unify_dictionaries()
        v = v.combine_chunks()
    elif not isinstance(v, pa.Array):
        v = pa.array(np.asarray(v, dtype=object), pa.string())
    if not pa.types.is_dictionary(v.type):
        v = pc.dictionary_encode(v.cast(pa.string()))
    idx = pc.fill_null(v.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return idx, v.dictionary.to_pylist()


def _decode(name: str, idx: np.ndarray, values: list[Any]) -> np.ndarray:
    """Ordered dictionary indices to fold input: codes for event and page types, else objects."""
    if name in _CODED:
        lut = np.array([_CODED[name].get(v, -1) for v in values] + [-1], dtype=np.int64)
        return lut[idx]
    return np.asarray([*values, None], dtype=object)[idx]


def _numpy(v: Any) -> np.ndarray:
    """Arrow or sequence to numpy: strings as objects, numbers as float64 (NaN for null)."""
    if isinstance(v, pa.ChunkedArray | pa.Array):
        if _is_text(v):
            return _decode("", *dictionary_codes(v))
        return pc.fill_null(v.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    a = np.asarray(v)
    return a.astype(object) if a.dtype.kind in "OUS" else a.astype(np.float64)


def scan(folds: Sequence[Fold], ev: Events) -> dict[str, np.ndarray]:
    """Every fold column after every event (columns aligned with ``ev``).

    ``ev`` must be sorted by entity then time (see :func:`prepare_events`).
    """
    ev = {k: v for k, v in ev.items() if k != "entity_names"}
    seg = Segments.of(ev["entity"])
    seg.is_first  # noqa: B018 (computed once, before the threads share it)
    # Masks of the folds' event filters, computed once for the whole batch;
    # Match.mask finds them under Match.key.
    matches = {m.key: m for f in folds for m in _matches(f)}
    ev = {**ev, **{key: m.mask(ev) for key, m in matches.items() if key not in ev}}
    # Folds are independent, and numpy releases the GIL in its array loops, so
    # large batches scan their folds on several threads. Values do not depend
    # on the threads: every fold runs the same operations either way.
    if len(ev["ts"]) >= PARALLEL_MIN_ROWS and len(folds) > 1:
        with ThreadPoolExecutor(THREADS) as pool:
            states = list(pool.map(lambda f: f.scan(ev, seg), folds))
    else:
        states = [f.scan(ev, seg) for f in folds]
    out: dict[str, np.ndarray] = {}
    for f, state in zip(folds, states, strict=True):
        out.update(zip(f.columns, state, strict=True))
    return out


def _matches(f: Fold) -> list[Match]:
    """Every event filter of ``f`` that reads an event column: its ``Match`` fields,
    and those of objects it holds (a tuple of terms, each with a ``match``)."""
    found: list[Match] = []
    for spec in fields(f):
        value = getattr(f, spec.name)
        for item in value if isinstance(value, tuple) else (value,):
            m = item if isinstance(item, Match) else getattr(item, "match", None)
            if isinstance(m, Match) and m.columns and m not in found:
                found.append(m)
    return found


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
            st = tuple(np.asarray([state[c]], dtype=np.float64) for c in f.columns)
        for col, v in zip(f.columns, f.step(st, ev), strict=True):
            out[col] = float(v[0])
    return out


def state_columns(folds: Sequence[Fold]) -> list[str]:
    """All stored columns of ``folds``, in declaration order."""
    return [c for f in folds for c in f.columns]


# ---------------------------------------------------------------------------
# Shares and log means: statistics that do not grow with the session's length


@dataclass(frozen=True)
class Share(_RunningRatio):
    """Share of the events matching ``of`` that also match ``match`` (NaN before the first).

    Trees split one column at a time, so a ratio of two counts is hard for them
    to learn; this fold stores it as a feature. Both counts are kept whole, so
    the ratio is exact in any order.

    >>> views = Match(types=("page_view",))
    >>> share = Share("product_share", "Product page views per page view.",
    ...               Match(pages=("product",)), of=views)
    >>> ev = prepare_events({
    ...     "entity": ["s1"] * 4, "ts": [1.0, 2.0, 3.0, 4.0],
    ...     "event_type": ["hover", "page_view", "page_view", "hover"],
    ...     "page_type": ["home", "home", "product", "product"]})
    >>> scan([share], ev)["product_share"].tolist()
    [nan, 0.0, 0.5, 0.5]
    """

    match: Match = ANY
    of: Match = ANY
    parts: tuple[str, ...] = dc_field(default=("num", "den"), init=False)

    def inputs(self) -> set[str]:
        return self.of.columns

    def _increments(self, ev: Events) -> tuple[np.ndarray, np.ndarray]:
        den = self.of.mask(ev)
        return den & self.match.mask(ev), den


#: A :class:`LogMean` sums its terms in millionths, as integers.
LOG_UNITS = 1e6


@dataclass(frozen=True)
class LogTerm:
    """One signal of a :class:`LogMean`.

    Each event that matches ``match`` and has ``field`` contributes
    ``(log(max(x, floor)) - log(center)) / scale``. ``center`` is a typical
    value in the field's units and ``scale`` the spread of ``log(x)``, so
    terms of different fields share one scale; a negative ``scale`` turns a
    signal around (a slow scroll counts like a long hover). ``floor`` keeps the
    logarithm of zero finite.

    >>> term = LogTerm("duration_ms", Match(types=("hover",)), center=100.0, scale=0.5)
    >>> hit, units = term.units({"event_type": np.array([EVENT_TYPE_CODES["hover"]] * 2),
    ...                          "duration_ms": np.array([100 * np.e, np.nan])})
    >>> hit.tolist(), units.tolist()
    ([True, False], [2000000.0, 0.0])
    """

    field: str
    match: Match = ANY
    center: float = 1.0
    scale: float = 1.0
    floor: float = 1.0

    def __post_init__(self) -> None:
        if self.center <= 0 or self.floor <= 0 or self.scale == 0:
            raise ValueError("LogTerm: center and floor must be positive, scale non-zero")

    def units(self, ev: Events) -> tuple[np.ndarray, np.ndarray]:
        """Which events count, and their contributions in :data:`LOG_UNITS` (whole numbers)."""
        x = ev[self.field]
        hit = self.match.mask(ev) & ~np.isnan(x)
        if not hit.any():  # most events of a live session: skip the arithmetic
            return hit, np.zeros(len(x))
        logs = np.log(np.maximum(np.where(hit, x, self.floor), self.floor))
        z = (logs - np.log(self.center)) / self.scale
        return hit, np.where(hit, np.round(z * LOG_UNITS), 0.0)


@dataclass(frozen=True)
class LogMean(_RunningRatio):
    """Running mean of the :class:`LogTerm` contributions of matching events.

    ``prior`` adds that many pseudo-events at 0 (the terms' centres), which
    shrinks the mean of a few events towards the typical value; with no
    prior, the value is NaN before the first contribution. The log of a
    duration or a speed is the statistic a lognormal spread calls for, where
    the plain mean is swayed by a few long values. Contributions are summed
    in millionths as whole numbers, so the sum is exact in any order.

    >>> hovers = Match(types=("hover",))
    >>> mean_log = LogMean("hover_log_ms", "Mean log hover duration.",
    ...                    terms=(LogTerm("duration_ms", hovers),))
    >>> shrunk = LogMean("slowness", "Hover slowness, shrunk.", prior=1.0,
    ...                  terms=(LogTerm("duration_ms", hovers, center=100.0, scale=0.5),))
    >>> ev = prepare_events({
    ...     "entity": ["s1"] * 3, "ts": [1.0, 2.0, 3.0],
    ...     "event_type": ["click", "hover", "hover"],
    ...     "duration_ms": [np.nan, 100.0, 100 * np.e ** 2]})
    >>> out = scan([mean_log, shrunk], ev)
    >>> [round(v, 6) for v in out["hover_log_ms"].tolist()]
    [nan, 4.60517, 5.60517]
    >>> out["slowness"].tolist()
    [0.0, 0.0, 1.3333333333333333]
    """

    terms: tuple[LogTerm, ...] = ()
    prior: float = 0.0
    parts: tuple[str, ...] = dc_field(default=("units", "n"), init=False)

    def inputs(self) -> set[str]:
        return {t.field for t in self.terms} | {c for t in self.terms for c in t.match.columns}

    def initial(self, n: int) -> State:
        return (np.full(n, np.nan if self.prior <= 0 else 0.0), np.zeros(n), np.zeros(n))

    def _increments(self, ev: Events) -> tuple[np.ndarray, np.ndarray]:
        hits = np.zeros(len(ev["ts"]))
        units = np.zeros(len(ev["ts"]))
        for term in self.terms:
            hit, u = term.units(ev)
            hits = hits + hit
            units = units + u
        return units, hits

    def _ratio(self, units: np.ndarray, n: np.ndarray) -> np.ndarray:
        den = n + self.prior
        return np.where(den > 0, units / LOG_UNITS / np.where(den > 0, den, 1.0), np.nan)
