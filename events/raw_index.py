"""The raw store's index: every stored event id once, and the arrival sequence.

A SQLite file beside the partitions (``raw/events/.index.sqlite``) holds

* ``ids``: every stored ``event_id``, so an id is stored once whatever day it
  claims;
* ``parts``: the part files whose ids are in ``ids``. A part written by a
  run that died before it could record it is indexed by the next run
  (:meth:`EventIndex.catch_up`), so the index can always be rebuilt from the
  parts themselves;
* ``seq``: the next arrival sequence number. Every stored event gets one, in
  the order it arrived: line order within a file, arrival order on the API.
  Time ties break on it.

Writers take SQLite's write lock for the whole append (``BEGIN IMMEDIATE``),
so two ingests of one store never allocate the same numbers or store an id
twice.

>>> import tempfile
>>> idx = EventIndex(Path(tempfile.mkdtemp()) / ".index.sqlite")
>>> with idx.writing() as w:
...     w.known(["a", "b"]).tolist(), w.allocate(2)
([False, False], 1)
>>> with idx.writing() as w:
...     w.add("part-1", ["a", "b"]), w.known(["a", "c"]).tolist(), w.allocate(1)
(0, [True, False], 3)
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np

_SCHEMA = """
CREATE TABLE IF NOT EXISTS ids (event_id TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS parts (name TEXT PRIMARY KEY, events INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
INSERT OR IGNORE INTO meta VALUES ('next_seq', 1);
INSERT OR IGNORE INTO meta VALUES ('duplicates', 0);
"""
_CHUNK = 900  # below SQLite's 999 bound variables


class Writer:
    """One append, under the store's write lock."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def known(self, ids: Sequence[str]) -> np.ndarray:
        """Per id: True when the store already holds it."""
        found: set[str] = set()
        for lo in range(0, len(ids), _CHUNK):
            chunk = list(ids[lo : lo + _CHUNK])
            marks = ",".join("?" * len(chunk))
            rows = self.conn.execute(f"SELECT event_id FROM ids WHERE event_id IN ({marks})", chunk)
            found.update(r[0] for r in rows)
        return np.fromiter((i in found for i in ids), dtype=bool, count=len(ids))

    def allocate(self, n: int) -> int:
        """The first of ``n`` fresh arrival sequence numbers."""
        (first,) = self.conn.execute("SELECT value FROM meta WHERE key = 'next_seq'").fetchone()
        self.conn.execute("UPDATE meta SET value = value + ? WHERE key = 'next_seq'", (n,))
        return int(first)

    def add(self, part: str, ids: Iterable[str], max_seq: int | None = None) -> int:
        """Record a written part and its ids; returns how many ids were already stored."""
        before = self.conn.total_changes
        ids = list(ids)
        self.conn.executemany("INSERT OR IGNORE INTO ids VALUES (?)", ((i,) for i in ids))
        repeated = len(ids) - (self.conn.total_changes - before)
        self.conn.execute("INSERT OR REPLACE INTO parts VALUES (?, ?)", (part, len(ids)))
        if repeated:
            self.conn.execute(
                "UPDATE meta SET value = value + ? WHERE key = 'duplicates'", (repeated,)
            )
        if max_seq is not None:
            self.conn.execute(
                "UPDATE meta SET value = max(value, ?) WHERE key = 'next_seq'", (max_seq + 1,)
            )
        return repeated

    def indexed_parts(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT name FROM parts")}

    def forget_part(self, part: str) -> None:
        self.conn.execute("DELETE FROM parts WHERE name = ?", (part,))


def _wal(conn: sqlite3.Connection, timeout_s: float = 60.0) -> None:
    """Put the database in WAL mode, once. Changing the mode takes SQLite's exclusive lock
    without waiting on the busy timeout: two writers opening a new index together (two
    stream workers' first stores) would see "database is locked", so it is retried."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


class EventIndex:
    """The store-wide id index and sequence counter of one raw store."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def writing(self) -> Iterator[Writer]:
        """The write lock for one append: committed on success, rolled back on error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            _wal(conn)
            conn.executescript(_SCHEMA)
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield Writer(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        finally:
            conn.close()

    def duplicates(self) -> int:
        """Ids that the parts hold more than once (stored before the index existed)."""
        if not self.path.exists():
            return 0
        conn = sqlite3.connect(self.path, timeout=60.0)
        try:
            row = conn.execute("SELECT value FROM meta WHERE key = 'duplicates'").fetchone()
        except sqlite3.OperationalError:
            return 0
        finally:
            conn.close()
        return int(row[0]) if row else 0

    def reset(self) -> None:
        """Forget everything; the next append re-indexes every part."""
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.path}{suffix}").unlink(missing_ok=True)
