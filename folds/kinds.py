"""The fold kinds whose state is one running value: counts, sums, extremes, times.

Each kind's ``scan`` is a closed form over :class:`~folds.match.Segments`
(``cumsum``, ``latest``, ``previous``), except :class:`Ewm` and :class:`Max`,
which use the position loop. Sums are kept in whole units (cents,
milliseconds), so batch and streaming values are bit-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np

from events.contract import PageType
from folds.fold import Fold
from folds.match import (
    ANY,
    EVENT_TYPE_CODES,
    PAGE_TYPE_CODES,
    Events,
    Match,
    Segments,
    State,
    carry,
)


@dataclass(frozen=True)
class Count(Fold):
    """Number of matching events so far."""

    match: Match = ANY

    def inputs(self) -> set[str]:
        return set()

    def step(self, state: State, ev: Events) -> State:
        return (state[0] + self.match.mask(ev),)

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        counts = seg.cumsum(self.match.mask(ev).astype(np.int64)).astype(np.float64)
        return (self.before(ev, 0, init) + counts,)


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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        added = seg.cumsum(self._cents(ev).astype(np.int64)).astype(np.float64)
        cents = self.before(ev, 1, init) + added
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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        x = ev[self.field]
        has = ~np.isnan(x)
        firsts = np.where(has, np.arange(len(x)), len(x))
        first_of_seg = np.minimum.reduceat(firsts, seg.starts) if len(x) else firsts
        f = np.repeat(first_of_seg, seg.lengths)
        seen = np.arange(len(x)) >= f
        found = np.where(seen, x[np.minimum(f, max(len(x) - 1, 0))], np.nan)
        kept = self.before(ev, 0, init)  # a value held from before the batch stays
        return (np.where(np.isnan(kept), found, kept),)


@dataclass(frozen=True)
class Last(_FieldValue):
    """``field`` of the latest event that has it (e.g. time of the last interaction)."""

    def step(self, state: State, ev: Events) -> State:
        x = ev[self.field]
        return (np.where(np.isnan(x), state[0], x),)

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        x = ev[self.field]
        has = ~np.isnan(x)
        return (carry(x[has], seg.latest(has), self.before(ev, 0, init)),)


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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        ts, on = ev["ts"], self._on(ev)
        prev_ts, prev_on = seg.previous(ts), seg.previous(on, 0.0)
        if init is not None:  # the first event of a batch follows the stored one
            first = seg.starts
            prev_ts[first] = np.asarray(self.before(ev, 2, init))[first]
            prev_on[first] = np.asarray(self.before(ev, 3, init))[first]
        gap = self._gap_ms(ts, prev_ts, prev_on)
        ms = self.before(ev, 1, init) + seg.cumsum(gap.astype(np.int64)).astype(np.float64)
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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        num = seg.cumsum(ev[self.numerator].astype(np.int64)).astype(np.float64)
        den = seg.cumsum(self._den(ev).astype(np.int64)).astype(np.float64)
        num = self.before(ev, 1, init) + num
        den = self.before(ev, 2, init) + den
        return (self._rate(num, den), num, den)
