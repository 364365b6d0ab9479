"""Per-process decision state: the rolling risk baseline and each session's guard state.

Both live in the scorer's memory (they are cheap to rebuild: the baseline from
the next scores, the guards from the next decisions) and are read on every
decision by :class:`serving.policy.Policy`.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import OrderedDict, deque
from dataclasses import dataclass


class RiskBaseline:
    """Recent risk scores: percentile rank and z-score of a new score.

    >>> b = RiskBaseline(window=4, min_samples=2)
    >>> for r in (0.1, 0.2, 0.3, 0.4): b.add(r)
    >>> b.percentile(0.35), round(b.zscore(0.4), 3)
    (75.0, 1.342)
    """

    def __init__(self, window: int, min_samples: int) -> None:
        self.window, self.min_samples = window, min_samples
        self._fifo: deque[float] = deque()
        self._sorted: list[float] = []
        self._sum = self._sq = 0.0

    def add(self, risk: float) -> None:
        if math.isnan(risk):
            return
        self._fifo.append(risk)
        insort(self._sorted, risk)
        self._sum += risk
        self._sq += risk * risk
        if len(self._fifo) > self.window:
            old = self._fifo.popleft()
            del self._sorted[bisect_left(self._sorted, old)]
            self._sum -= old
            self._sq -= old * old

    def __len__(self) -> int:
        return len(self._fifo)

    def percentile(self, risk: float) -> float | None:
        """Share (0-100) of recent scores strictly below ``risk``; None until warmed up."""
        if len(self) < self.min_samples:
            return None
        return 100.0 * bisect_left(self._sorted, risk) / len(self._sorted)

    def zscore(self, risk: float) -> float | None:
        n = len(self)
        if n < self.min_samples:
            return None
        mean = self._sum / n
        var = max(self._sq / n - mean * mean, 0.0)
        return (risk - mean) / math.sqrt(var) if var > 1e-12 else 0.0


@dataclass
class Guard:
    """Adjustments shown to one session so far."""

    shown: int = 0
    last_at: float | None = None


class Guards:
    """Guard state of recent sessions (least recently used evicted)."""

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._by_session: OrderedDict[str, Guard] = OrderedDict()

    def get(self, session_id: str) -> Guard:
        g = self._by_session.get(session_id)
        if g is None:
            g = self._by_session[session_id] = Guard()
            if len(self._by_session) > self.capacity:
                self._by_session.popitem(last=False)
        else:
            self._by_session.move_to_end(session_id)
        return g


# ---------------------------------------------------------------------------
# Deciding


class MarginSpend:
    """Discount margin offered in a rolling window, against a budget.

    >>> m = MarginSpend(amount=10.0, window_s=60.0)
    >>> m.allows(8.0, now=0.0)
    True
    >>> m.spend(8.0, now=0.0)
    >>> m.allows(3.0, now=1.0), m.allows(3.0, now=61.0)
    (False, True)
    """

    def __init__(self, amount: float, window_s: float) -> None:
        self.amount, self.window_s = amount, window_s
        self._offers: deque[tuple[float, float]] = deque()
        self.spent = 0.0

    def _expire(self, now: float) -> None:
        while self._offers and self._offers[0][0] <= now - self.window_s:
            self.spent -= self._offers.popleft()[1]

    def allows(self, cost: float, now: float) -> bool:
        self._expire(now)
        return self.spent + cost <= self.amount + 1e-9

    def spend(self, cost: float, now: float) -> None:
        if cost > 0:
            self._offers.append((now, cost))
            self.spent += cost
