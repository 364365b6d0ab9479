"""The batch feature build on a Dask cluster: the local build, partitioned by session.

:func:`build_window_dask` writes the same three offline tables as
:func:`features.build.build_window`, row for row:

1. one task per partition (``MICROTUNE_DASK__PARTITIONS``): it reads the
   window from the raw store part file by part file, keeping only the events
   of its sessions (a CRC-32 of the session id, as the event stream splits
   them), so it never holds more than its share of the window; folds them
   with the same code as the local build; and writes its session rows and
   outcomes to the run's scratch folder;
2. one task per day: the day's session rows of every partition, written as
   the day file one partition after the other (each in (session, time)
   order), so that a task holds one partition's share of a day;
3. on the client: the outcomes of every partition (one row a session) and the
   users' history rows, as the local build makes them.

A session's events all fall in one partition, and the folds see them in the
same order as in the local build (time, then arrival), so each session's rows
are the same numbers; only the order of the rows within a day file differs
(the local build keeps the raw store's order of sessions).
"""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from events.raw_store import RawEventStore
from features.build import BuildResult, fold_window, users_and_outcomes
from features.offline import DAY, DAY_FILE_OPTIONS, ceil_day, day_name, floor_day, write_days

_COUNTS = ("events", "consented", "session_rows", "sessions")


def partition_mask(k: int, partitions: int) -> Callable[[pa.Table], np.ndarray]:
    """A row filter: the events whose session falls in partition ``k``.

    >>> t = pa.table({"session_id": ["s-1", "a", "s-1"]})
    >>> [partition_mask(k, 2)(t).tolist() for k in (0, 1)]
    [[True, False, True], [False, True, False]]
    """

    def mask(table: pa.Table) -> np.ndarray:
        col = table.column("session_id")
        out = np.empty(len(col), dtype=bool)
        at = 0
        for chunk in col.chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_encode()
            names = chunk.dictionary.to_pylist()
            part = np.fromiter(
                (zlib.crc32(n.encode()) % partitions for n in names), np.int64, len(names)
            )
            out[at : at + len(chunk)] = part[chunk.indices.to_numpy(zero_copy_only=False)] == k
            at += len(chunk)
        return out

    return mask


def build_window_dask(
    client: Any,
    raw: RawEventStore,
    offline: Path,
    scratch: Path,
    start: datetime,
    end: datetime,
    *,
    partitions: int = 16,
    gap: timedelta = timedelta(minutes=30),
    lookback: timedelta = timedelta(hours=6),
    now: datetime | None = None,
) -> BuildResult:
    """:func:`features.build.build_window` on the cluster of ``client`` (see the module)."""
    start, end = floor_day(start), ceil_day(end)
    result = BuildResult(start, end)
    work = scratch / f"build-{uuid4().hex[:12]}"
    try:
        args = (str(raw.root), str(work), partitions, start, end, gap, lookback)
        counts = client.gather(
            client.map(_partition, range(partitions), *[[a] * partitions for a in args])
        )
        for c in counts:
            for name in _COUNTS:
                setattr(result, name, getattr(result, name) + c[name])
        days = []
        day = start
        while day < end:
            days.append(day)
            day += DAY
        n = len(days)
        written = client.gather(
            client.map(_day, days, [str(work)] * n, [str(offline / "session_features")] * n)
        )
        result.files += [f for w in written for f in w]
        outcomes = _concat(sorted(work.glob("*/session_outcomes.parquet")))
        users, outcomes = users_and_outcomes(offline, outcomes, start, end, gap, now, result)
        for table, name in ((outcomes, "session_outcomes"), (users, "user_features")):
            result.files += write_days(table, offline / name, start, end)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # session ids: nothing kept
    return result


def _partition(
    k: int,
    raw_root: str,
    work: str,
    partitions: int,
    start: datetime,
    end: datetime,
    gap: timedelta,
    lookback: timedelta,
) -> dict[str, int]:
    """Task: fold partition ``k`` of the window; its rows and outcomes to ``work/k``."""
    part = BuildResult(start, end)
    raw = RawEventStore(Path(raw_root))
    sessions, outcomes = fold_window(
        raw, start, end, gap, lookback, part, where=partition_mask(k, partitions)
    )
    out = Path(work) / f"{k:05d}"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(sessions, out / "session_features.parquet")
    pq.write_table(outcomes, out / "session_outcomes.parquet")
    return {name: getattr(part, name) for name in _COUNTS}


def _day(day: datetime, work: str, root: str) -> list[str]:
    """Task: the day's session rows of every partition, as one day file.

    Written partition by partition (each in (session, time) order) through one
    Parquet writer, so the task holds one partition's share of the day, not
    the whole day; the file replaces the old one when complete.
    """
    files = sorted(Path(work).glob("*/session_features.parquet"))
    filters = [("event_timestamp", ">=", day), ("event_timestamp", "<", day + DAY)]
    target = Path(root) / f"{day_name(day)}.parquet"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    target.parent.mkdir(parents=True, exist_ok=True)
    writer: pq.ParquetWriter | None = None
    try:
        for f in files:
            rows = pq.read_table(f, filters=filters)
            if rows.num_rows == 0:
                continue
            rows = rows.sort_by([("session_id", "ascending"), ("event_timestamp", "ascending")])
            if writer is None:
                writer = pq.ParquetWriter(tmp, rows.schema, **DAY_FILE_OPTIONS)
            writer.write_table(rows)
    finally:
        if writer is not None:
            writer.close()
    if writer is None:
        target.unlink(missing_ok=True)  # no row that day, as the local build leaves it
        return []
    os.replace(tmp, target)
    return [str(target)]


def _concat(files: list[Path]) -> pa.Table:
    return pa.concat_tables([pq.read_table(f) for f in files])
