"""The raw store: accepted events, append-only Parquet partitioned by event date.

``raw/events/date=YYYY-MM-DD/part-<digest>.parquet``: part files are only ever
added, never rewritten. A part's name is the digest of the event ids it holds,
so writing the same rows twice is a no-op.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.files import atomic_write_parquet
from core.parallel import THREADS
from events.contract import (
    ARROW_SCHEMA,
)

#: String columns of the raw store; ``read(encoded=True)`` keeps them dictionary-encoded.
_TEXT_COLUMNS = [f.name for f in ARROW_SCHEMA if pa.types.is_string(f.type)]
_DICTIONARY_SCHEMA = pa.schema(
    [
        f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in _TEXT_COLUMNS else f
        for f in ARROW_SCHEMA
    ]
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _micros(t: datetime) -> int:
    """``t`` as integer microseconds since the epoch (the raw store's ``ts`` unit).

    A time without a zone is taken as UTC.

    >>> _micros(datetime(1970, 1, 1, 0, 0, 1, 5))
    1000005
    """
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    return (t - _EPOCH) // timedelta(microseconds=1)


class RawEventStore:
    """Append-only, date-partitioned Parquet store of accepted events."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def partition(self, day: date) -> Path:
        return self.root / f"date={day.isoformat()}"

    def dates(self) -> list[date]:
        if not self.root.exists():
            return []
        return sorted(
            date.fromisoformat(p.name[5:]) for p in self.root.glob("date=*") if p.is_dir()
        )

    def part_files(self, days: Sequence[date] | None = None) -> list[Path]:
        days = self.dates() if days is None else days
        files: list[Path] = []
        for d in days:
            files += sorted(self.partition(d).glob("part-*.parquet"))
        return files

    def stored_ids(self, day: date) -> set[str]:
        ids: set[str] = set()
        for f in self.part_files([day]):
            ids.update(pq.read_table(f, columns=["event_id"]).column(0).to_pylist())
        return ids

    def append(self, table: pa.Table) -> tuple[int, list[str]]:
        """Add rows whose ``event_id`` is not stored yet. Returns (duplicates, partitions)."""
        if table.num_rows == 0:
            return 0, []
        days = pc.cast(table.column("ts"), pa.date32()).to_numpy(zero_copy_only=False)
        duplicates = 0
        written: list[str] = []
        for day in np.unique(days):
            part = table.filter(pa.array(days == day))
            d = day.astype(object)
            seen = self.stored_ids(d)
            if seen:
                fresh = np.array([e not in seen for e in part.column("event_id").to_pylist()])
                duplicates += int((~fresh).sum())
                part = part.filter(pa.array(fresh))
            if part.num_rows == 0:
                continue
            part = part.sort_by([("ts", "ascending"), ("event_id", "ascending")])
            digest = _digest(part.column("event_id").to_pylist())
            atomic_write_parquet(self.partition(d) / f"part-{digest}.parquet", part)
            written.append(d.isoformat())
        return duplicates, written

    def read(
        self,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
        *,
        encoded: bool = False,
    ) -> pa.Table:
        """Events with ``start <= ts < end`` (all columns, or those named).

        With ``encoded``, string columns come dictionary-encoded, as Parquet
        stores them: cheaper to read, filter and fold than one string per row.
        """
        days = [d for d in self.dates() if start.date() <= d <= end.date()]
        cols = list(columns) if columns else None
        schema = _DICTIONARY_SCHEMA if encoded else ARROW_SCHEMA
        wanted = schema if cols is None else pa.schema([schema.field(c) for c in cols])
        files = self.part_files(days)
        if not files:
            return wanted.empty_table()
        with ThreadPoolExecutor(THREADS) as pool:
            tables = list(
                pool.map(
                    lambda f: pq.read_table(
                        f,
                        schema=schema,
                        columns=cols,
                        read_dictionary=_TEXT_COLUMNS if encoded else None,
                    ),
                    files,
                )
            )
        t = pa.concat_tables(tables)
        us = t.column("ts").cast(pa.int64()).to_numpy()
        inside = (us >= _micros(start)) & (us < _micros(end))
        return t if bool(inside.all()) else t.filter(pa.array(inside))

    def time_range(self) -> tuple[datetime, datetime] | None:
        """Earliest and latest stored event time, or None when empty."""
        files = self.part_files()
        if not files:
            return None
        lo, hi = None, None
        for f in files:
            col = pq.read_table(f, columns=["ts"]).column(0)
            mn, mx = pc.min(col).as_py(), pc.max(col).as_py()
            lo = mn if lo is None or mn < lo else lo
            hi = mx if hi is None or mx > hi else hi
        assert lo is not None and hi is not None
        return lo, hi


def _digest(items: Sequence[str]) -> str:
    h = hashlib.sha256()
    for s in items:
        h.update(s.encode())
        h.update(b"\0")
    return h.hexdigest()[:20]
