"""Fold kinds whose value is a ratio of two running sums of whole numbers.

:class:`Mean`, :class:`Share` and :class:`LogMean` keep their numerator and
denominator as extra state; whole numbers sum exactly in any order, so the
scan's cumulative sums equal the step's additions. Shares and log means are
statistics that do not grow with the session's length.
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from dataclasses import field as dc_field

import numpy as np

from folds.fold import Fold
from folds.match import ANY, Events, Match, Segments, State


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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        num, den = self._increments(ev)
        num = self.before(ev, 1, init) + seg.cumsum(num.astype(np.int64)).astype(np.float64)
        den = self.before(ev, 2, init) + seg.cumsum(den.astype(np.int64)).astype(np.float64)
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
class Share(_RunningRatio):
    """Share of the events matching ``of`` that also match ``match`` (NaN before the first).

    Trees split one column at a time, so a ratio of two counts is hard for them
    to learn; this fold stores it as a feature. Both counts are kept whole, so
    the ratio is exact in any order.

    >>> from folds import prepare_events, scan
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

    >>> from folds.match import EVENT_TYPE_CODES
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

    >>> from folds import prepare_events, scan
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
