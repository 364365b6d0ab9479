"""Live learning of the river model, with a single writer across server workers.

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
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
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
    session_id TEXT PRIMARY KEY, last_ts REAL NOT NULL, purchased INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS activity_last ON activity (last_ts);
CREATE INDEX IF NOT EXISTS activity_purchased ON activity (purchased);
"""
#: Upsert of a session's latest activity: decisions and events both move it.
_TOUCH = (
    "INSERT INTO activity (session_id, last_ts, purchased) VALUES (?, ?, ?) "
    "ON CONFLICT(session_id) DO UPDATE SET last_ts = max(last_ts, excluded.last_ts), "
    "purchased = max(purchased, excluded.purchased)"
)

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

Example = tuple[int, str, float, dict[str, float], float | None, int]


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
        self._activity: list[tuple[str, float, int]] = []
        with self._lock, self._conn:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)

    def add_decision(
        self, session_id: str, ts: float, x: dict[str, float], p: float | None
    ) -> None:
        with self._buffers:
            self._decisions.append((session_id, ts, orjson.dumps(x), p))

    def add_activity(self, session_id: str, last_ts: float, *, purchased: bool) -> None:
        with self._buffers:
            self._activity.append((session_id, last_ts, int(purchased)))

    def flush(self) -> None:
        """Write buffered rows in one transaction (every worker calls it each second).

        The buffers are swapped under their own lock and written under the
        connection's, so a request adding a row never waits for the write.
        """
        with self._buffers:
            decisions, self._decisions = self._decisions, []
            activity, self._activity = self._activity, []
        if not decisions and not activity:
            return
        with self._lock, self._conn:
            self._conn.executemany(
                "INSERT INTO decisions (session_id, ts, x, p) VALUES (?, ?, ?, ?)", decisions
            )
            self._conn.executemany(_TOUCH, [(s, ts, 0) for s, ts, _, _ in decisions])
            self._conn.executemany(_TOUCH, activity)

    def take_labelled(self, now: float, gap_s: float, limit: int = 5_000) -> list[Example]:
        """Remove and return decision points whose outcome is known, in time order."""
        self.flush()
        # A session's outcome is known when it purchased, or when nothing (no
        # event, no score) happened for a whole gap: abandoned.
        with self._lock, self._conn:
            rows = self._conn.execute(TAKE_LABELLED, (now - gap_s, limit)).fetchall()
            self._conn.executemany("DELETE FROM decisions WHERE id = ?", [(r[0],) for r in rows])
            self._conn.execute(
                "DELETE FROM activity WHERE (purchased = 1 OR last_ts < ?) AND NOT EXISTS "
                "(SELECT 1 FROM decisions d WHERE d.session_id = activity.session_id)",
                (now - gap_s,),
            )
        return [(i, s, ts, orjson.loads(x), p, int(y)) for i, s, ts, x, p, y in rows]

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
