"""Append-only JSON Lines logs under the home: the decision log and the live-event inbox.

Layout: ``<root>/date=YYYY-MM-DD/HH-<pid>.jsonl``. Each server process
appends to its own hourly file, so several workers never interleave partial
lines. The decision log holds one object per score::

    {"ts": 1780300000.5, "session_id": "s1", "user_id": "u1", "variant": "discount_10",
     "risk": 0.71, "risk_lgbm": 0.71, "risk_river": 0.64, "features": {...},
     "actions": ["show_discount_popup"], "models": {"abandonment-lgbm": "3", ...},
     "degraded": false, "drift_signal": false}

**Durability.** :meth:`AppendLog.append` hands the line to the operating system
(one ``write`` on a file opened for appending) before it returns, so the
route answers only once the line is written: a ``kill -9`` of the server
loses no acknowledged line. Whether the line has also reached the disk (an
operating-system crash, a power cut) is the ``fsync`` policy:

* ``interval`` (default): the server's flush loop syncs the files every
  second, one ``fsync`` for all the lines of that second (a group commit); a
  machine crash can lose up to that last second;
* ``always``: every append is synced before the answer (a batch of events is
  one append, one ``fsync``);
* ``never``: the operating system decides.

The drift flow and experiment analysis read the log back with
:func:`read_decisions`.

Examples
--------
>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> log = AppendLog(root)
>>> log.append({"ts": 1780300000.0, "session_id": "s1", "risk": 0.5,
...             "features": {"cart_adds": 1.0}, "drift_signal": False})
>>> log.flush()
1
>>> t = read_decisions(root, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
>>> t.column("cart_adds").to_pylist(), t.column("risk").to_pylist()
([1.0], [0.5])
"""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Callable, Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import orjson
import pyarrow as pa

from core.files import atomic_write_bytes

FsyncPolicy = Literal["interval", "always", "never"]
_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT


class AppendLog:
    """This process's append-only writer of one log (decisions, or live events)."""

    def __init__(self, root: Path, *, fsync: FsyncPolicy = "interval") -> None:
        self.root = root
        self.fsync = fsync
        self._fds: dict[Path, int] = {}
        self._hours: dict[int, Path] = {}
        self._dirty: set[int] = set()
        self._lock = threading.Lock()
        #: Lines written since the last :meth:`flush`, and in all.
        self.pending = 0
        self.written = 0

    def path_for(self, ts: float) -> Path:
        hour = int(ts // 3600)
        path = self._hours.get(hour)
        if path is None:
            t = datetime.fromtimestamp(hour * 3600, UTC)
            path = self.root / f"date={t:%Y-%m-%d}" / f"{t:%H}-{os.getpid()}.jsonl"
            if len(self._hours) > 1000:
                self._hours.clear()
            self._hours[hour] = path
        return path

    def append(self, record: dict[str, Any], ts: float | None = None) -> None:
        """Write one record now; ``ts`` (default ``record["ts"]``) picks its hourly file."""
        self.append_many([record], [float(record["ts"] if ts is None else ts)])

    def append_many(self, records: Iterable[dict[str, Any]], stamps: Iterable[float]) -> None:
        """Write records, one ``write`` per hourly file, before returning."""
        by_file: dict[Path, list[bytes]] = {}
        for record, ts in zip(records, stamps, strict=True):
            line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
            by_file.setdefault(self.path_for(ts), []).append(line)
        with self._lock:
            for path, lines in by_file.items():
                fd = self._fd(path)
                # Shared: an erasure rewriting this file (rewrite_log_lines) holds it
                # exclusively, and this write then lands after its rewrite.
                fcntl.flock(fd, fcntl.LOCK_SH)
                try:
                    _write_all(fd, b"".join(lines))
                finally:
                    fcntl.flock(fd, fcntl.LOCK_UN)
                self._dirty.add(fd)
                self.pending += len(lines)
                self.written += len(lines)
            if self.fsync == "always":
                self._sync_locked()

    def _fd(self, path: Path) -> int:
        fd = self._fds.get(path)
        if fd is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = self._fds[path] = os.open(path, _FLAGS, 0o644)
        return fd

    def _sync_locked(self) -> None:
        for fd in self._dirty:
            os.fsync(fd)
        self._dirty.clear()

    def flush(self) -> int:
        """Sync what was written (policy ``interval``), close the files of past hours.

        Returns the lines written since the last flush. The lines were already
        in the files: flushing adds durability against a machine crash only.
        The ``fsync`` runs outside the lock, so requests keep appending meanwhile.
        """
        hour = self.path_for(datetime.now(UTC).timestamp())
        with self._lock:
            dirty, self._dirty = self._dirty, set()
            old = [self._fds.pop(p) for p in list(self._fds) if p != hour]
            done, self.pending = self.pending, 0
        if self.fsync != "never":
            for fd in dirty:
                os.fsync(fd)
        for fd in old:
            os.close(fd)
        return done

    def close(self) -> None:
        with self._lock:
            if self.fsync != "never":
                self._sync_locked()
            for fd in self._fds.values():
                os.close(fd)
            self._fds.clear()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _files(root: Path, start: datetime, end: datetime) -> Iterator[Path]:
    day = start.astimezone(UTC).date()
    while day <= end.astimezone(UTC).date():
        yield from sorted((root / f"date={day:%Y-%m-%d}").glob("*.jsonl"))
        day += timedelta(days=1)


def read_decisions(root: Path, start: datetime, end: datetime) -> pa.Table:
    """Decisions with ``start <= ts < end``; ``features`` become one float column each.

    Columns: ``ts`` (timestamp, UTC), ``session_id``, ``user_id``,
    ``experiment``, ``variant``, ``policy_version``, ``propensity``, ``risk``,
    ``risk_lgbm``, ``risk_river``, ``degraded``, ``drift_signal``, ``actions``
    (comma-joined), ``discount_percent`` (0 without a discount), ``treatment``
    and ``treatment_propensity`` (the treatment key and its probability over
    the whole experiment), ``arm_policies`` (JSON: each arm's probability of each
    treatment, what it would have
    applied), then the features. Records written before a field existed hold null there. A torn
    last line (a process killed mid-write) is skipped.
    """
    lo, hi = start.timestamp(), end.timestamp()
    rows: list[dict[str, Any]] = []
    for path in _files(root, start, end):
        for raw in path.read_bytes().splitlines():
            try:
                rec = orjson.loads(raw)
            except orjson.JSONDecodeError:
                continue
            if lo <= float(rec.get("ts", -1)) < hi:
                rows.append(rec)
    names = sorted({k for r in rows for k in (r.get("features") or {})})
    cols: dict[str, pa.Array] = {
        "ts": pa.array(
            [datetime.fromtimestamp(float(r["ts"]), UTC) for r in rows], pa.timestamp("us", "UTC")
        ),
        "session_id": pa.array([r.get("session_id") for r in rows], pa.string()),
        "user_id": pa.array([r.get("user_id") for r in rows], pa.string()),
        "experiment": pa.array([r.get("experiment") for r in rows], pa.string()),
        "variant": pa.array([r.get("variant") for r in rows], pa.string()),
        "policy_version": pa.array([r.get("policy_version") for r in rows], pa.int64()),
        "segment": pa.array([r.get("segment") for r in rows], pa.int64()),
    }
    for c in ("propensity", "treatment_propensity", "risk", "risk_lgbm", "risk_river"):
        cols[c] = pa.array([r.get(c) for r in rows], pa.float64())
    for c in ("degraded", "drift_signal"):
        cols[c] = pa.array([bool(r.get(c, False)) for r in rows], pa.bool_())
    cols["actions"] = pa.array([",".join(r.get("actions") or []) for r in rows], pa.string())
    cols["discount_percent"] = pa.array([_discount(r) for r in rows], pa.float64())
    cols["treatment"] = pa.array([r.get("treatment") for r in rows], pa.string())
    cols["arm_policies"] = pa.array(
        [orjson.dumps(r["arm_policies"]).decode() if "arm_policies" in r else None for r in rows],
        pa.string(),
    )
    for n in names:
        cols[n] = pa.array([(r.get("features") or {}).get(n) for r in rows], pa.float64())
    return pa.table(cols)


def _discount(record: dict[str, Any]) -> float:
    """The discount a decision offered, in percent (0 without one)."""
    params = (record.get("params") or {}).get("show_discount_popup") or {}
    return float(params.get("percent", 0.0) or 0.0)


def drop_decisions_before(root: Path, cutoff: datetime) -> int:
    """Remove every decision with ``ts < cutoff`` from the log under ``root``; how many.

    Hourly files that end before the cutoff are deleted; the file of the
    cutoff's hour is rewritten without the older lines (atomically). A torn
    line is kept with its file. Safe to run again.
    """
    cut = cutoff.timestamp()
    removed = 0
    for day in sorted(root.glob("date=*")) if root.exists() else []:
        for path in sorted(day.glob("*.jsonl")):
            start = datetime.strptime(f"{day.name[5:]} {path.name[:2]}", "%Y-%m-%d %H")
            hour = start.replace(tzinfo=UTC).timestamp()
            if hour >= cut:
                continue
            lines = path.read_bytes().splitlines()
            if hour + 3600 <= cut:
                removed += len(lines)
                path.unlink()
                continue
            kept = [line for line in lines if _ts(line) >= cut]
            if len(kept) < len(lines):
                removed += len(lines) - len(kept)
                atomic_write_bytes(path, b"".join(line + b"\n" for line in kept))
        if not any(day.iterdir()):
            day.rmdir()
    return removed


def _ts(line: bytes) -> float:
    try:
        return float(orjson.loads(line).get("ts", float("inf")))
    except (orjson.JSONDecodeError, TypeError, ValueError, AttributeError):
        return float("inf")  # unreadable: kept (read_decisions skips it)


def rewrite_log_lines(
    path: Path,
    drop: Callable[[Any, Any], bool],
    row: Callable[[dict[str, Any]], Any] = lambda record: record,
    ids: Collection[str] = (),
) -> int:
    """Rewrite a log file without the lines whose (``session_id``, ``user_id``) ``drop``
    holds; how many went. ``row`` picks the object holding them from a line (the
    quarantine keeps it under ``"row"``). A torn line goes if it holds one of ``ids``.

    The file is rewritten in place (the same file, truncated and written again)
    under an exclusive ``flock``; :class:`AppendLog` takes the lock shared for
    each append, so a running scorer waits for the rewrite and then appends at
    the new end: no line it writes meanwhile is lost.
    """
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
        lines = data.splitlines(keepends=True)
        kept = [line for line in lines if not _dropped(line, drop, row, ids)]
        if len(kept) < len(lines):
            body = b"".join(kept)
            os.ftruncate(fd, 0)
            os.pwrite(fd, body, 0)
            os.fsync(fd)
        return len(lines) - len(kept)
    finally:
        os.close(fd)  # releases the lock


def _dropped(
    line: bytes,
    drop: Callable[[Any, Any], bool],
    row: Callable[[dict[str, Any]], Any],
    ids: Collection[str],
) -> bool:
    try:
        r = row(orjson.loads(line))
        return bool(drop(r.get("session_id"), r.get("user_id")))
    except (orjson.JSONDecodeError, AttributeError, TypeError, KeyError):
        return any(i.encode() in line for i in ids)  # torn or foreign: by its bytes
