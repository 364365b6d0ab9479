"""The raw store: accepted events, append-only Parquet partitioned by event date.

``raw/events/date=YYYY-MM-DD/part-<digest>.parquet``: part files are only ever
added (a repair rewrites them, :meth:`RawEventStore.repair`). A part's name is
the digest of the event ids it holds, so writing the same rows twice is a
no-op. The index beside them (:mod:`events.raw_index`) keeps every event id
once, store-wide, and gives each stored event its arrival sequence number
(column ``seq``), on which time ties break.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.files import atomic_write_parquet
from core.parallel import THREADS
from events.contract import ARROW_SCHEMA
from events.raw_index import EventIndex, Writer

#: The stored columns: the contract's, then the arrival sequence number (null in
#: parts written before it existed: such events order by time alone).
RAW_SCHEMA = ARROW_SCHEMA.append(pa.field("seq", pa.int64()))
#: String columns of the raw store; ``read(encoded=True)`` keeps them dictionary-encoded.
_TEXT_COLUMNS = [f.name for f in RAW_SCHEMA if pa.types.is_string(f.type)]
_DICTIONARY_SCHEMA = pa.schema(
    [
        f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name in _TEXT_COLUMNS else f
        for f in RAW_SCHEMA
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
        self.index = EventIndex(self.root / ".index.sqlite")

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

    def _name(self, part: Path) -> str:
        return str(part.relative_to(self.root))

    def _catch_up(self, w: Writer) -> None:
        """Index the parts the index does not know yet (written by a run that died)."""
        indexed = w.indexed_parts()
        for f in self.part_files():
            if self._name(f) not in indexed:
                t = pq.read_table(f, columns=["event_id", "seq"], schema=RAW_SCHEMA)
                seq = pc.max(t.column("seq")).as_py()
                w.add(self._name(f), t.column("event_id").to_pylist(), seq)

    def append(self, table: pa.Table) -> tuple[int, list[str]]:
        """Add the rows whose ``event_id`` is not stored yet, in the order given (their
        arrival order). Returns (duplicates, partitions written)."""
        if table.num_rows == 0:
            return 0, []
        with self.index.writing() as w:
            self._catch_up(w)
            ids = table.column("event_id").to_pylist()
            fresh = ~w.known(ids)
            duplicates = int((~fresh).sum())
            table = table.filter(pa.array(fresh))
            if table.num_rows == 0:
                return duplicates, []
            first = w.allocate(table.num_rows)
            seq = pa.array(np.arange(first, first + table.num_rows, dtype=np.int64))
            table = table.append_column("seq", seq)
            days = pc.cast(table.column("ts"), pa.date32()).to_numpy(zero_copy_only=False)
            written: list[str] = []
            for day in np.unique(days):
                part = table.filter(pa.array(days == day))
                d = day.astype(object)
                part = part.sort_by([("ts", "ascending"), ("seq", "ascending")])
                part_ids = part.column("event_id").to_pylist()
                path = self.partition(d) / f"part-{_digest(part_ids)}.parquet"
                # On the disk before the index says it holds these ids: an index that
                # outlived its part would take the events for duplicates forever.
                atomic_write_parquet(path, part, sync=True)
                w.add(self._name(path), part_ids)
                written.append(d.isoformat())
        return duplicates, written

    def duplicate_ids(self) -> int:
        """Ids stored more than once (by stores from before the index); see :meth:`repair`."""
        with self.index.writing() as w:
            self._catch_up(w)
        return self.index.duplicates()

    def repair(self) -> tuple[int, int]:
        """Keep the first arrival of every event id, store-wide, and rebuild the index.

        Parts holding a later copy are rewritten without it (new digest name,
        then the old part removed). Returns (copies removed, parts rewritten).
        Safe to run again: a store without duplicates is left as it is.
        """
        seen: set[str] = set()
        removed = rewritten = 0
        files = sorted(self.part_files(), key=_arrival_key)
        for f in files:
            t = pq.read_table(f, schema=RAW_SCHEMA)
            ids = t.column("event_id").to_pylist()
            keep = np.ones(len(ids), dtype=bool)
            for i, e in enumerate(ids):
                if e in seen:
                    keep[i] = False
                seen.add(e)
            if keep.all():
                continue
            removed += int((~keep).sum())
            rewritten += 1
            kept = t.filter(pa.array(keep))
            if kept.num_rows:
                digest = _digest(kept.column("event_id").to_pylist())
                atomic_write_parquet(f.with_name(f"part-{digest}.parquet"), kept)
            f.unlink()
        self.index.reset()
        with self.index.writing() as w:
            self._catch_up(w)
        return removed, rewritten

    def drop_before(self, cutoff: datetime) -> int:
        """Remove every event with ``ts < cutoff``; returns how many.

        Whole days before the cutoff's day are deleted; the parts of that day
        are rewritten without the older rows (new digest name, then the old
        part removed). The id index is rebuilt from what remains, so an event
        removed here and sent again is stored again. Safe to run again.
        """
        cut = cutoff.astimezone(UTC)
        removed = 0
        for d in self.dates():
            if d > cut.date():
                break
            for f in sorted(self.partition(d).glob("part-*.parquet")):
                if d < cut.date():
                    removed += pq.ParquetFile(f).metadata.num_rows
                    f.unlink()
                    continue
                t = pq.read_table(f, schema=RAW_SCHEMA)
                at = pa.scalar(cut, type=t.schema.field("ts").type)
                keep = pc.fill_null(pc.greater_equal(t.column("ts"), at), True)
                kept = t.filter(keep)
                if kept.num_rows == t.num_rows:
                    continue
                removed += t.num_rows - kept.num_rows
                if kept.num_rows:
                    digest = _digest(kept.column("event_id").to_pylist())
                    atomic_write_parquet(f.with_name(f"part-{digest}.parquet"), kept)
                f.unlink()
            if not any(self.partition(d).iterdir()):
                self.partition(d).rmdir()
        if removed:
            self.index.reset()
            with self.index.writing() as w:
                self._catch_up(w)
        return removed

    def drop_matching(self, sessions: Iterable[str], users: Iterable[str]) -> int:
        """Remove every event of these sessions or users; returns how many.

        The parts that hold one are rewritten without them (new digest name,
        then the old part removed), and the id index is rebuilt from what
        remains (event ids may carry a session id). Safe to run again.
        """
        wanted_s = pa.array(sorted(sessions), pa.string())
        wanted_u = pa.array(sorted(users), pa.string())
        removed = 0
        for f in self.part_files():
            t = pq.read_table(f, schema=RAW_SCHEMA)
            hit = pc.or_(
                pc.is_in(t.column("session_id"), value_set=wanted_s),
                pc.fill_null(pc.is_in(t.column("user_id"), value_set=wanted_u), False),
            )
            n = pc.sum(hit).as_py() or 0
            if not n:
                continue
            removed += n
            kept = t.filter(pc.invert(hit))
            if kept.num_rows:
                digest = _digest(kept.column("event_id").to_pylist())
                atomic_write_parquet(f.with_name(f"part-{digest}.parquet"), kept)
            f.unlink()
            if not any(f.parent.iterdir()):
                f.parent.rmdir()
        if removed:
            self.index.reset()
            with self.index.writing() as w:
                self._catch_up(w)
        return removed

    def read(
        self,
        start: datetime,
        end: datetime,
        columns: Sequence[str] | None = None,
        *,
        encoded: bool = False,
        where: Callable[[pa.Table], np.ndarray] | None = None,
    ) -> pa.Table:
        """Events with ``start <= ts < end`` (all columns, or those named).

        With ``encoded``, string columns come dictionary-encoded, as Parquet
        stores them: cheaper to read, filter and fold than one string per row.
        With ``where``, only the rows of each part file it marks are kept, part
        by part: a reader of one partition of the window holds only that much.
        """
        days = [d for d in self.dates() if start.date() <= d <= end.date()]
        cols = list(columns) if columns else None
        schema = _DICTIONARY_SCHEMA if encoded else RAW_SCHEMA
        wanted = schema if cols is None else pa.schema([schema.field(c) for c in cols])
        files = self.part_files(days)
        if not files:
            return wanted.empty_table()

        def one(f: Path) -> pa.Table:
            t = pq.read_table(
                f, schema=schema, columns=cols, read_dictionary=_TEXT_COLUMNS if encoded else None
            )
            return t if where is None else t.filter(pa.array(where(t)))

        with ThreadPoolExecutor(THREADS) as pool:
            tables = list(pool.map(one, files))
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


def _arrival_key(part: Path) -> tuple[float, str]:
    """Parts in arrival order: by their first sequence number (parts without one first)."""
    seq = pq.read_table(part, columns=["seq"], schema=RAW_SCHEMA).column(0)
    first = pc.min(seq).as_py()
    return (-1.0 if first is None else float(first), str(part))
