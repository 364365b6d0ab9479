"""The :class:`Fold` base: one feature as an incremental fold over events.

``step`` is the streaming definition; ``scan`` gives the state after every
event of a sorted batch. The default ``scan`` runs ``step`` position by
position (:func:`position_loop`); kinds with a closed form override it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from dataclasses import field as dc_field

import numpy as np

from folds.match import Events, Match, Segments, State, carry


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

    def scan(self, ev: Events, seg: Segments, init: State | None = None) -> State:
        """State after every event of the sorted batch ``ev``.

        ``init`` is each entity's state before its first event of the batch
        (arrays indexed by entity code; None: :meth:`initial`), so a batch can
        continue stored states exactly as :meth:`step` would, event by event.
        """
        mask = self.touches(ev)
        touched = np.flatnonzero(mask)
        sub = {k: ev[k][touched] for k in self._reads(ev)}
        states = position_loop(self, sub, Segments.of(sub["entity"]), init)
        where = seg.latest(mask)
        return tuple(carry(s, where, self.before(ev, i, init)) for i, s in enumerate(states))

    def before(self, ev: Events, part: int, init: State | None) -> np.ndarray | float:
        """Per event: state column ``part`` of its entity before the batch."""
        if init is None:
            return float(self.initial(1)[part][0])
        return init[part][ev["entity"]]

    def _reads(self, ev: Events) -> set[str]:
        """Columns of ``ev`` that ``step`` and ``touches`` read (plus key and time)."""
        keys = {"entity", "ts", *self.inputs()} | {m.key for m in filters_of(self)}
        for m in filters_of(self):
            if m.key not in ev:
                keys |= m.columns
        return keys & set(ev)


def position_loop(fold: Fold, ev: Events, seg: Segments, init: State | None = None) -> State:
    """Apply ``fold.step`` at position j of every entity at once, for each j.

    Entities start from ``init`` (indexed by entity code) or :meth:`Fold.initial`.
    """
    n = len(ev["ts"])
    by_len = np.argsort(-seg.lengths, kind="stable")
    starts, lengths = seg.starts[by_len], seg.lengths[by_len]
    if init is None:
        state = list(fold.initial(len(starts)))
    else:
        codes = ev["entity"][starts] if len(starts) else np.zeros(0, dtype=np.int64)
        state = [np.asarray(s, dtype=np.float64)[codes].copy() for s in init]
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


def filters_of(f: Fold) -> list[Match]:
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
