"""Ingestion: event files in, validated rows into the append-only raw store.

See :mod:`events.raw_store` for the store itself. Duplicates are dropped by
``event_id`` within the batch and against the rows already stored for the same
event date (client retries resend an event with its original time).

Rejected rows go to ``quarantine/<source>-<digest>.jsonl``, one JSON object a
line with the original row, the reason (``field: problem``), the source file
and the row's position in it.

Examples
--------
>>> import tempfile, orjson
>>> from datetime import datetime, timezone
>>> d = Path(tempfile.mkdtemp())
>>> good = {"event_id": "e1", "session_id": "s1", "ts": "2026-01-01T11:00:00Z",
...         "event_type": "click", "page_type": "home", "device": "desktop",
...         "browser": "chrome", "consent": True}
>>> bad = dict(good, event_id="e2", scroll_depth=1.5)
>>> _ = (d / "in.jsonl").write_bytes(orjson.dumps(good) + b"\\n" + orjson.dumps(bad) + b"\\n")
>>> store = RawEventStore(d / "raw")
>>> report = ingest_files([d / "in.jsonl"], store, d / "quarantine",
...                       now=datetime(2026, 1, 2, tzinfo=timezone.utc))
>>> report.accepted, report.rejected
(1, {'scroll_depth: outside [0, 1]': 1})
>>> ingest_files([d / "in.jsonl"], store, d / "quarantine",
...              now=datetime(2026, 1, 2, tzinfo=timezone.utc)).duplicates
1
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import atomic_write_bytes
from events.contract import CONSENTLESS_FIELDS, minimize_unconsented
from events.raw_store import RawEventStore
from events.validation import Rejection, count_reasons, validate_rows

#: Raw user id -> pseudonym (core.privacy.Pseudonymizer).
Pseudonymize = Callable[[str | None], str | None]
JSONL_SUFFIXES = (".jsonl", ".ndjson", ".json")
PARQUET_SUFFIXES = (".parquet", ".pq")


@dataclass
class IngestReport:
    """What one ingest did: counts of accepted, duplicate and rejected rows."""

    files: int = 0
    rows: int = 0
    accepted: int = 0
    duplicates: int = 0
    unconsented: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    partitions: list[str] = field(default_factory=list)
    quarantine_files: list[str] = field(default_factory=list)
    #: Files inside the given directories that were not read, with the reason.
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def merge(self, other: IngestReport) -> None:
        self.files += other.files
        self.rows += other.rows
        self.accepted += other.accepted
        self.duplicates += other.duplicates
        self.unconsented += other.unconsented
        for k, v in other.rejected.items():
            self.rejected[k] = self.rejected.get(k, 0) + v
        self.rejected = dict(sorted(self.rejected.items()))
        self.partitions = sorted(set(self.partitions) | set(other.partitions))
        self.quarantine_files += other.quarantine_files
        self.skipped.update(other.skipped)


#: Compressed JSON Lines are read as they are.
GZIP_SUFFIXES = tuple(s + ".gz" for s in JSONL_SUFFIXES)
#: Archives and compressions this reader cannot open: refused with a message.
_UNREADABLE = (".gz", ".zip", ".bz2", ".xz", ".zst", ".7z", ".tar", ".tgz")
_BOM = b"\xef\xbb\xbf"


def event_kind(path: Path) -> str | None:
    """``jsonl``, ``jsonl.gz`` or ``parquet`` by the file's suffixes; None otherwise.

    >>> [event_kind(Path(n)) for n in ("a.jsonl", "a.NDJSON.gz", "a.pq", "a.csv")]
    ['jsonl', 'jsonl.gz', 'parquet', None]
    """
    name = path.name.lower()
    if name.endswith(GZIP_SUFFIXES):
        return "jsonl.gz"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return None


def _unsupported(path: Path) -> str:
    if path.name.lower().endswith(_UNREADABLE):
        return (
            f"{path}: compressed or archived in a form ingest cannot read. Decompress it, "
            "or give gzip-compressed JSON Lines (.jsonl.gz)."
        )
    return (
        f"{path}: unsupported file type '{path.suffix}'. Give JSON Lines (.jsonl, .ndjson, "
        ".json, optionally .gz) or Parquet (.parquet) files."
    )


def _json_lines(fh: Any) -> Iterator[dict[str, Any] | Rejection]:
    i = -1
    try:
        for i, line in enumerate(fh):
            if i == 0 and line.startswith(_BOM):  # written by some Windows tools
                line = line[len(_BOM) :]
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raw = line.decode("utf-8", "replace")[:500]
                yield Rejection({"_raw": raw}, f"row: invalid JSON ({exc.msg})", i)
    except (EOFError, OSError) as exc:  # a truncated or corrupt compressed file
        yield Rejection({}, f"file: unreadable after line {i + 1} ({type(exc).__name__})", i + 1)


def read_event_file(path: Path) -> Iterator[dict[str, Any] | Rejection]:
    """Rows of a JSON Lines (optionally gzip-compressed) or Parquet file.

    Unparseable lines come back as rejections, as does the rest of a
    truncated compressed file; the rows before them are kept.
    """
    kind = event_kind(path)
    if kind == "jsonl":
        with path.open("rb") as fh:
            yield from _json_lines(fh)
    elif kind == "jsonl.gz":
        with gzip.open(path, "rb") as fh:
            yield from _json_lines(fh)
    elif kind == "parquet":
        try:
            batches = pq.ParquetFile(path).iter_batches(batch_size=65_536)
            for batch in batches:
                yield from batch.to_pylist()
        except (pa.ArrowException, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
    else:
        raise InputError(_unsupported(path))


def expand_paths(paths: Sequence[Path], skipped: dict[str, str] | None = None) -> list[Path]:
    """Files named directly, plus event files inside named directories (sorted).

    Inside a directory, files that are not event files are left out; each one
    is named with the reason in ``skipped`` (dotfiles and the generator's
    ``oracle.parquet`` are not events and are left out silently).
    """
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(f for f in p.rglob("*") if f.is_file()):
                if f.name.startswith(".") or f.name == "oracle.parquet":
                    continue
                if event_kind(f) is not None:
                    out.append(f)
                elif skipped is not None:
                    skipped[str(f)] = _unsupported(f).split(": ", 1)[1]
        elif p.is_file():
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or directory. Check the path and try again.")
    return out


def quarantined_row(row: Any, pseudonymize: Pseudonymize | None) -> Any:
    """A rejected row as the quarantine keeps it: minimized without consent (a row that
    does not say it has consent has none) and its user id pseudonymized."""
    if not isinstance(row, dict):
        return row
    if row.get("consent") is not True:
        row = {k: v for k, v in row.items() if k in CONSENTLESS_FIELDS}
    elif pseudonymize is not None and isinstance(row.get("user_id"), str):
        row = {**row, "user_id": pseudonymize(row["user_id"])}
    return row


def quarantine_record(
    r: Rejection, source: str, pseudonymize: Pseudonymize | None
) -> dict[str, Any]:
    """What the quarantine keeps of a rejected row: its reason, where it came from, its
    position there, and the row as :func:`quarantined_row` leaves it (ingest's files and
    the scorer's ``POST /v1/events`` alike)."""
    return {
        "reason": r.reason,
        "source": source,
        "position": r.position,
        "row": _storable(quarantined_row(r.row, pseudonymize)),
    }


def _storable(value: Any) -> Any:
    """A rejected row as JSON can keep it: integers beyond 64 bits (which the JSON
    encoder refuses) as text.

    >>> _storable({"ts": 2**70, "x": [1, {"y": -(2**64)}]})
    {'ts': '1180591620717411303424', 'x': [1, {'y': '-18446744073709551616'}]}
    """
    if isinstance(value, dict):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_storable(v) for v in value]
    if isinstance(value, int) and not -(2**63) <= value < 2**64:
        return str(value)
    return value


def _write_quarantine(
    rejected: list[Rejection],
    source: Path,
    quarantine: Path,
    pseudonymize: Pseudonymize | None = None,
) -> str:
    lines = [
        orjson.dumps(
            quarantine_record(r, str(source), pseudonymize),
            option=orjson.OPT_APPEND_NEWLINE | orjson.OPT_NON_STR_KEYS,
            default=str,
        )
        for r in rejected
    ]
    body = b"".join(lines)
    target = quarantine / f"{source.stem}-{hashlib.sha256(body).hexdigest()[:16]}.jsonl"
    atomic_write_bytes(target, body)
    return str(target)


def ingest_file(
    path: Path,
    store: RawEventStore,
    quarantine: Path,
    *,
    now: datetime | None = None,
    pseudonymize: Pseudonymize | None = None,
) -> IngestReport:
    """Validate one file; store the accepted rows, quarantine the rejected ones.

    ``pseudonymize`` replaces each user id before anything is written
    (:mod:`core.privacy`; the flows always pass the home's).
    """
    now = now or datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    early: list[Rejection] = []
    for item in read_event_file(path):
        if isinstance(item, Rejection):
            early.append(item)
        else:
            rows.append(item)
    result = validate_rows(rows, now=now)
    rejected = early + result.rejected
    table = result.to_arrow()
    # A batch can repeat an event; keep the first copy.
    _, first = np.unique(table.column("event_id").to_numpy(zero_copy_only=False), return_index=True)
    in_batch_dups = table.num_rows - len(first)
    table = table.take(pa.array(np.sort(first)))
    if pseudonymize is not None:
        users = [pseudonymize(u) for u in table.column("user_id").to_pylist()]
        i = table.schema.get_field_index("user_id")
        table = table.set_column(i, "user_id", pa.array(users, table.schema.field(i).type))
    unconsented = table.num_rows - int(pc.sum(table.column("consent")).as_py() or 0)
    stored_dups, partitions = store.append(minimize_unconsented(table))
    report = IngestReport(
        files=1,
        rows=len(rows) + len(early),
        accepted=table.num_rows - stored_dups,
        duplicates=in_batch_dups + stored_dups,
        unconsented=unconsented,
        partitions=partitions,
    )
    if rejected:
        report.rejected = count_reasons(rejected)
        report.quarantine_files.append(_write_quarantine(rejected, path, quarantine, pseudonymize))
    return report


def ingest_files(
    paths: Sequence[Path],
    store: RawEventStore,
    quarantine: Path,
    *,
    now: datetime | None = None,
    progress: Callable[[Path], None] | None = None,
    pseudonymize: Pseudonymize | None = None,
) -> IngestReport:
    """Ingest every event file in ``paths`` (directories are searched)."""
    report = IngestReport()
    for f in expand_paths(paths, report.skipped):
        report.merge(ingest_file(f, store, quarantine, now=now, pseudonymize=pseudonymize))
        if progress:
            progress(f)
    return report


def live_inbox_files(root: Path) -> list[Path]:
    """Event files the scorer's ``POST /v1/events`` kept under ``root`` (sorted)."""
    return sorted(root.rglob("*.jsonl")) if root.exists() else []


def retire_inbox_files(
    files: Sequence[Path], done: Path, *, quiet_s: float = 600.0, now: float | None = None
) -> list[Path]:
    """Move ingested inbox files that nobody has written to for ``quiet_s`` into ``done``.

    A scorer appends to an hour's file while events of that hour arrive; a
    file still being written is left in place and ingested again next time
    (deduplication by ``event_id`` makes that harmless). A late event for a
    retired hour starts a new file. Returns the files moved.

    >>> import tempfile, os
    >>> root = Path(tempfile.mkdtemp()); (root / "live").mkdir()
    >>> old, new = root / "live" / "00-1.jsonl", root / "live" / "01-1.jsonl"
    >>> _ = old.write_text("{}"), new.write_text("{}")
    >>> os.utime(old, (0, 0))
    >>> [p.name.split(".")[0] for p in retire_inbox_files([old, new], root / "done")]
    ['00-1']
    >>> new.exists(), old.exists()
    (True, False)
    """
    import time

    now = time.time() if now is None else now
    moved = []
    for f in files:
        try:
            if now - f.stat().st_mtime < quiet_s:
                continue
        except FileNotFoundError:
            continue
        target = done / f.parent.name / f"{f.stem}.{int(now)}{f.suffix}"
        target.parent.mkdir(parents=True, exist_ok=True)
        f.rename(target)
        moved.append(target)
    return moved
