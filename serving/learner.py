"""Live learning of the river model and the bandit, with a single writer across server workers.

Every worker records, in a small SQLite queue under the home
(``serving/labels.db``, WAL mode), the decision points it scored (features
and river's prediction) and the sessions' activity from ``POST /v1/events``.
Exactly one process learns: the one holding an exclusive ``flock`` on
``serving/river.lock``. It turns decision points into labelled examples once
their session's outcome is known (a ``purchase`` event: 0; no event for
``session_gap_minutes`` after adding to cart: 1), learns them in decision-time
order, and writes a checkpoint. The other workers score with the newest
checkpoint. When the learner exits, the lock is released and another worker
takes over at its next tick.

Examples
--------
>>> import tempfile
>>> q = LabelQueue(Path(tempfile.mkdtemp()) / "labels.db")
>>> q.add_decision("s1", 100.0, {"cart_adds": 1.0}, 0.4)
>>> q.add_activity("s1", 130.0, purchased=True)
>>> [(s, y) for _, s, _, _, _, y in q.take_labelled(now=140.0, gap_s=1800.0)]
[('s1', 0)]
>>> q.take_labelled(now=140.0, gap_s=1800.0)
[]

The bandit's examples: a session's first decision and the revenue that followed.

>>> q.add_assignment("s2", 200.0, {"risk": 0.8}, "emphasize_cta", 0.3)
>>> q.add_assignment("s2", 210.0, {"risk": 0.9}, "none", 0.6)
>>> q.add_activity("s2", 260.0, purchased=True, revenue=54.5)
>>> q.take_rewards(now=270.0, gap_s=1800.0)
[('s2', 200.0, {'risk': 0.8}, 'emphasize_cta', 0.3, 54.5)]
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

_SCHEMA = """
CREATE TABLE IF NOT EXISTS decisions (
    id INTEGER PRIMARY KEY, session_id TEXT NOT NULL, ts REAL NOT NULL,
    x BLOB NOT NULL, p REAL);
CREATE INDEX IF NOT EXISTS decisions_session ON decisions (session_id);
CREATE TABLE IF NOT EXISTS activity (
    session_id TEXT PRIMARY KEY, last_ts REAL NOT NULL, purchased INTEGER NOT NULL,
    revenue REAL NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS assignments (
    session_id TEXT PRIMARY KEY, ts REAL NOT NULL, ctx BLOB NOT NULL, treatment TEXT NOT NULL,
    propensity REAL NOT NULL);
CREATE INDEX IF NOT EXISTS activity_last ON activity (last_ts);
CREATE TABLE IF NOT EXISTS segment_points (
    session_id TEXT PRIMARY KEY, ts REAL NOT NULL, point BLOB NOT NULL);
CREATE INDEX IF NOT EXISTS segment_points_ts ON segment_points (ts);
CREATE INDEX IF NOT EXISTS activity_purchased ON activity (purchased);
"""
#: Upsert of a session's latest activity: decisions and events both move it.
_TOUCH = (
    "INSERT INTO activity (session_id, last_ts, purchased, revenue) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(session_id) DO UPDATE SET last_ts = max(last_ts, excluded.last_ts), "
    "purchased = max(purchased, excluded.purchased), revenue = revenue + excluded.revenue"
)
#: Sessions whose outcome is known and that nothing waits for any more.
_FORGET = (
    "DELETE FROM activity WHERE (purchased = 1 OR last_ts < ?) AND NOT EXISTS "
    "(SELECT 1 FROM decisions d WHERE d.session_id = activity.session_id) AND NOT EXISTS "
    "(SELECT 1 FROM assignments g WHERE g.session_id = activity.session_id)"
)
#: The bandit's examples: each session's first decision, once its outcome is known.
TAKE_REWARDS = """
    SELECT g.session_id, g.ts, g.ctx, g.treatment, g.propensity,
           CASE WHEN a.purchased = 1 THEN a.revenue ELSE 0.0 END
    FROM activity a CROSS JOIN assignments g ON g.session_id = a.session_id
    WHERE a.purchased = 1 OR a.last_ts < ?
    ORDER BY g.ts LIMIT ?"""

#: Decision points of the sessions whose outcome is known. ``CROSS JOIN`` keeps
#: ``activity`` outside: SQLite then finds the ended sessions by their indexes and
#: their decisions by ``decisions_session``. Left to itself, it scanned every
#: pending decision once a second (15 ms at 27,000 open decisions, growing with
#: traffic, on the scorer's core: bench/bench_serving.py's p99).
TAKE_LABELLED = """
    SELECT d.id, d.session_id, d.ts, d.x, d.p, 1 - a.purchased
    FROM activity a CROSS JOIN decisions d ON d.session_id = a.session_id
    WHERE a.purchased = 1 OR a.last_ts < ?
    ORDER BY d.ts LIMIT ?"""

#: Sessions remembered as assigned (beyond them, the queue's table still keeps only
#: the first decision of a session).
ASSIGNED_MEMORY = 200_000

Example = tuple[int, str, float, dict[str, float], float | None, int]
#: (session, decision time, bandit context, treatment, its probability, reward).
Reward = tuple[str, float, dict[str, Any], str, float, float]


class LabelQueue:
    """Decision points waiting for their label, shared by all workers of a home."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._conn = sqlite3.connect(path, timeout=1.0, check_same_thread=False)
        self._lock = threading.Lock()  # the connection
        self._buffers = threading.Lock()  # the rows waiting for flush
        # Rows are buffered and written once a second (flush), off the request path.
        self._decisions: list[tuple[str, float, bytes, float | None]] = []
        self._activity: list[tuple[str, float, int, float]] = []
        self._assignments: list[tuple[str, float, bytes, str, float]] = []
        #: Each scored session's newest whitened behaviour vector (the streaming clusterer's).
        self._points: dict[str, tuple[float, bytes]] = {}
        #: Sessions whose assignment is queued already: only a session's first decision
        #: teaches the bandit, so the others are not even buffered (a session is scored
        #: on every page; bench/bench_serving.py measured the flushes' cost in the p99).
        self._assigned: OrderedDict[str, None] = OrderedDict()
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
            columns = {r[1] for r in self._conn.execute("PRAGMA table_info(activity)")}
            if "revenue" not in columns:  # a queue written before the bandit learnt
                self._conn.execute(
                    "ALTER TABLE activity ADD COLUMN revenue REAL NOT NULL DEFAULT 0"
                )

    def add_decision(
        self, session_id: str, ts: float, x: dict[str, float], p: float | None
    ) -> None:
        with self._buffers:
            self._decisions.append((session_id, ts, orjson.dumps(x), p))

    def add_activity(
        self, session_id: str, last_ts: float, *, purchased: bool, revenue: float = 0.0
    ) -> None:
        with self._buffers:
            self._activity.append((session_id, last_ts, int(purchased), revenue))

    def add_assignment(
        self, session_id: str, ts: float, ctx: dict[str, Any], treatment: str, propensity: float
    ) -> None:
        """A session's decision for the bandit to learn from; only the first one counts."""
        with self._buffers:
            if session_id in self._assigned:
                return
            self._assigned[session_id] = None
            if len(self._assigned) > ASSIGNED_MEMORY:
                self._assigned.popitem(last=False)
            self._assignments.append((session_id, ts, orjson.dumps(ctx), treatment, propensity))

    def add_segment_point(self, session_id: str, ts: float, point: list[float]) -> None:
        """A session's behaviour vector in the segmenter's PCA space; the newest counts."""
        data = orjson.dumps(point)
        with self._buffers:
            self._points[session_id] = (ts, data)

    def take_segment_points(
        self, now: float, gap_s: float, limit: int = 5_000
    ) -> list[tuple[str, list[float]]]:
        """Remove and return the newest points of sessions not scored for a whole gap
        (ended), in time order."""
        self.flush()
        with self._lock, self._conn:
            rows = self._conn.execute(
                "SELECT session_id, point FROM segment_points WHERE ts < ? ORDER BY ts LIMIT ?",
                (now - gap_s, limit),
            ).fetchall()
            self._conn.executemany(
                "DELETE FROM segment_points WHERE session_id = ?", [(r[0],) for r in rows]
            )
        return [(sid, orjson.loads(p)) for sid, p in rows]

    def flush(self) -> None:
        """Write buffered rows in one transaction (every worker calls it each second).

        The buffers are swapped under their own lock and written under the
        connection's, so a request adding a row never waits for the write.
        """
        with self._buffers:
            decisions, self._decisions = self._decisions, []
            activity, self._activity = self._activity, []
            assignments, self._assignments = self._assignments, []
            points, self._points = self._points, {}
        if not decisions and not activity and not assignments and not points:
            return
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT OR REPLACE INTO segment_points (session_id, ts, point) VALUES (?, ?, ?)",
                [(sid, ts, data) for sid, (ts, data) in points.items()],
            )
            self._conn.executemany(
                "INSERT INTO decisions (session_id, ts, x, p) VALUES (?, ?, ?, ?)", decisions
            )
            self._conn.executemany(
                "INSERT OR IGNORE INTO assignments (session_id, ts, ctx, treatment, propensity) "
                "VALUES (?, ?, ?, ?, ?)",
                assignments,
            )
            touched = [(s, ts, 0, 0.0) for s, ts, _, _ in decisions]
            touched += [(s, ts, 0, 0.0) for s, ts, _, _, _ in assignments]
            self._conn.executemany(_TOUCH, touched)
            self._conn.executemany(_TOUCH, activity)

    def take_labelled(self, now: float, gap_s: float, limit: int = 5_000) -> list[Example]:
        """Remove and return decision points whose outcome is known, in time order."""
        self.flush()
        # A session's outcome is known when it purchased, or when nothing (no
        # event, no score) happened for a whole gap: abandoned.
        with self._lock, self._conn:
            rows = self._conn.execute(TAKE_LABELLED, (now - gap_s, limit)).fetchall()
            self._conn.executemany("DELETE FROM decisions WHERE id = ?", [(r[0],) for r in rows])
            self._conn.execute(_FORGET, (now - gap_s,))
        return [(i, s, ts, orjson.loads(x), p, int(y)) for i, s, ts, x, p, y in rows]

    def take_rewards(self, now: float, gap_s: float, limit: int = 5_000) -> list[Reward]:
        """Remove and return the bandit's examples whose reward is known, in time order.

        The reward is the revenue the session's purchases carried (net of any
        discount, as the front end reports it), or 0 when it ended without one.
        """
        self.flush()
        with self._lock, self._conn:
            rows = self._conn.execute(TAKE_REWARDS, (now - gap_s, limit)).fetchall()
            self._conn.executemany(
                "DELETE FROM assignments WHERE session_id = ?", [(r[0],) for r in rows]
            )
            self._conn.execute(_FORGET, (now - gap_s,))
        return [(s, ts, orjson.loads(c), t, float(p), float(r)) for s, ts, c, t, p, r in rows]

    def pending(self) -> int:
        self.flush()
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM decisions").fetchone()[0])

    def close(self) -> None:
        self._conn.close()


class WriterLock:
    """Non-blocking exclusive ``flock``: held by at most one process at a time."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._fh: IO[str] | None = None

    @property
    def held(self) -> bool:
        return self._fh is not None

    def try_acquire(self) -> bool:
        if self._fh is not None:
            return True
        fh = open(self.path, "a+")  # noqa: SIM115 - held open for the process's life
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _sessions(examples: list[Example]) -> list[list[Example]]:
    """The examples grouped by session, in the order each session's first example came."""
    sessions: dict[str, list[Example]] = {}
    for e in examples:
        sessions.setdefault(e[1], []).append(e)
    return list(sessions.values())


def by_session(examples: list[Example], size: int) -> Iterator[list[Example]]:
    """The examples in chunks of about ``size`` that never split a session.

    Each chunk holds whole sessions, in the order their first example came.

    >>> ex = [(i, s, float(i), {}, None, 1) for i, s in enumerate("aabab")]
    >>> [[e[1] for e in part] for part in by_session(ex, 2)]
    [['a', 'a', 'a'], ['b', 'b']]
    """
    part: list[Example] = []
    for rows in _sessions(examples):
        part += rows
        if len(part) >= size:
            yield part
            part = []
    if part:
        yield part


def learn(model: Any, examples: list[Example]) -> list[float]:
    """Learn labelled examples session by session; returns the times ADWIN fired.

    Each session's decision points are learnt in time order, then its mean
    error goes to ADWIN (``RiverRiskModel.learn_session``); a signal is dated
    by the session's last decision. Pass whole sessions (:func:`by_session`):
    ``take_labelled`` returns every decision point of an ended session, unless
    its ``limit`` cuts one, which then counts as two.
    """
    fired: list[float] = []
    for rows in _sessions(examples):
        rows.sort(key=lambda e: e[2])
        if model.learn_session([(x, p) for _, _, _, x, p, _ in rows], rows[0][5]):
            fired.append(rows[-1][2])
    return fired
