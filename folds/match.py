"""Which events a fold reacts to (:class:`Match`), and each entity's run of events.

Event and page types reach the folds as small integer codes
(:data:`EVENT_TYPE_CODES`, :data:`PAGE_TYPE_CODES`); :class:`Segments` says
where each entity's events start in columns sorted by entity then time.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from events.contract import EventType, PageType

State = tuple[np.ndarray, ...]
#: Event columns as the folds see them; see :func:`folds.engine.prepare_events`.
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


def carry(values: np.ndarray, last: np.ndarray, initial: float | np.ndarray) -> np.ndarray:
    """``values`` at index ``last`` (the latest touched event), ``initial`` where none
    (one value, or one per event)."""
    if len(values) == 0:
        return np.broadcast_to(np.asarray(initial, dtype=np.float64), len(last)).copy()
    return np.where(last >= 0, values[np.maximum(last, 0)], initial)
