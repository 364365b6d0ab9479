"""The decision log: every score the server made, as JSON Lines under the home.

Layout: ``$MICROTUNE_HOME/decisions/date=YYYY-MM-DD/HH-<pid>.jsonl``. Each
server process appends to its own hourly file, so several workers never
interleave partial lines. One object per line::

    {"ts": 1780300000.5, "session_id": "s1", "user_id": "u1", "variant": "discount_10",
     "risk": 0.71, "risk_lgbm": 0.71, "risk_river": 0.64, "features": {...},
     "actions": ["show_discount_popup"], "models": {"abandonment-lgbm": "3", ...},
     "degraded": false, "drift_signal": false}

Lines are buffered in memory and flushed at least every ``flush_s`` seconds
and when the server stops. The drift flow reads the log back with
:func:`read_decisions`.

Examples
--------
>>> import tempfile
>>> root = Path(tempfile.mkdtemp())
>>> log = DecisionLog(root)
>>> log.append({"ts": 1780300000.0, "session_id": "s1", "risk": 0.5,
...             "features": {"cart_adds": 1.0}, "drift_signal": False})
>>> log.flush()
1
>>> t = read_decisions(root, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
>>> t.column("cart_adds").to_pylist(), t.column("risk").to_pylist()
([1.0], [0.5])
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa


class DecisionLog:
    """Buffered, append-only writer of this process's decisions."""

    def __init__(self, root: Path, *, max_buffer: int = 2_000) -> None:
        self.root = root
        self.max_buffer = max_buffer
        self._lines: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self.written = 0

    def append(self, record: dict[str, Any], ts: float | None = None) -> None:
        """Buffer one record; ``ts`` (default ``record["ts"]``) picks its hourly file."""
        line = orjson.dumps(record, option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
        with self._lock:
            self._lines.append((float(record["ts"] if ts is None else ts), line))
            full = len(self._lines) >= self.max_buffer
        if full:
            self.flush()

    def path_for(self, ts: float) -> Path:
        t = datetime.fromtimestamp(ts, UTC)
        return self.root / f"date={t:%Y-%m-%d}" / f"{t:%H}-{os.getpid()}.jsonl"

    def flush(self) -> int:
        """Append buffered lines to their hourly files; returns the lines written."""
        with self._lock:
            lines, self._lines = self._lines, []
        by_file: dict[Path, list[bytes]] = {}
        for ts, line in lines:
            by_file.setdefault(self.path_for(ts), []).append(line)
        for path, chunk in by_file.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "ab") as f:
                f.write(b"".join(chunk))
        self.written += len(lines)
        return len(lines)


def _files(root: Path, start: datetime, end: datetime) -> Iterator[Path]:
    day = start.astimezone(UTC).date()
    while day <= end.astimezone(UTC).date():
        yield from sorted((root / f"date={day:%Y-%m-%d}").glob("*.jsonl"))
        day += timedelta(days=1)


def read_decisions(root: Path, start: datetime, end: datetime) -> pa.Table:
    """Decisions with ``start <= ts < end``; ``features`` become one float column each.

    Columns: ``ts`` (timestamp, UTC), ``session_id``, ``user_id``, ``variant``,
    ``risk``, ``risk_lgbm``, ``risk_river``, ``degraded``, ``drift_signal``,
    ``actions`` (comma-joined), then the features. A torn last line (a
    process killed mid-write) is skipped.
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
        "variant": pa.array([r.get("variant") for r in rows], pa.string()),
    }
    for c in ("risk", "risk_lgbm", "risk_river"):
        cols[c] = pa.array([r.get(c) for r in rows], pa.float64())
    for c in ("degraded", "drift_signal"):
        cols[c] = pa.array([bool(r.get(c, False)) for r in rows], pa.bool_())
    cols["actions"] = pa.array([",".join(r.get("actions") or []) for r in rows], pa.string())
    for n in names:
        cols[n] = pa.array([(r.get("features") or {}).get(n) for r in rows], pa.float64())
    return pa.table(cols)
