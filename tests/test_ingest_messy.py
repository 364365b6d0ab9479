"""Messy input never breaks ingest: every bad row quarantined with its reason, good rows kept.

The mixed file holds each kind of row the audits found breaking ingest or
silently corrupting features, beside good rows. The command line must store
every good row, quarantine every bad one with its reason, exit 0, and change
nothing (quarantine included) when the file comes again.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import LATER, T0, event

from core.settings import Settings
from events.ingest import ingest_files
from events.raw_store import RawEventStore
from features import build_window

NOW = datetime.now(UTC).replace(microsecond=0)
RECENT = NOW - timedelta(days=1)

#: (reason the contract gives, the row's changes): one of each kind of bad row.
BAD = [
    ("ts: outside the range of representable times", {"ts": "9999-12-31T23:59:59-14:00"}),
    ("ts: outside the range of representable times", {"ts": "0001-01-01T00:00:00+14:00"}),
    ("ts: earlier than the accepted window", {"ts": "1900-01-01T00:00:00Z"}),
    ("ts: earlier than the accepted window", {"ts": 0}),
    ("ts: epoch number too large", {"ts": 1.7e15}),
    ("ts: more than 5 minutes in the future", {"ts": (NOW + timedelta(hours=2)).isoformat()}),
    ("duration_ms: outside [0, 8.64e+07]", {"duration_ms": 1e308}),
    ("cart_value: outside [0, 1e+06]", {"cart_value": 1e12}),
    ("scroll_velocity: outside [0, 100000]", {"scroll_velocity": 5e7}),
    ("session_id: must be 1 to 64 printable ASCII characters", {"session_id": "   "}),
    ("session_id: must be 1 to 64 printable ASCII characters", {"session_id": "a\x00b"}),
    ("session_id: must be 1 to 64 printable ASCII characters", {"session_id": "café-😀"}),
    ("user_id: must be 1 to 64 printable ASCII characters", {"user_id": ""}),
    ("browser: must not be empty", {"browser": "  "}),
    ("element_id: must be printable text", {"element_id": "price\x07"}),
]


def _good(i: int) -> dict:
    return event(
        session=f"good-{i % 3}", at=0, event_id=f"good-{i}", ts=_iso(RECENT + timedelta(seconds=i))
    )


def _iso(t: datetime) -> str:
    return t.isoformat().replace("+00:00", "Z")


def _mixed_file(path: Path) -> tuple[list[dict], int]:
    """Good rows, every bad kind, a non-object row, broken JSON, a BOM in front."""
    good = [_good(i) for i in range(6)]
    bad = [{**_good(100 + k), **change} for k, (_, change) in enumerate(BAD)]
    # Epoch seconds are seconds (not 1970 milliseconds): a good row.
    seconds = {**_good(200), "ts": int(RECENT.timestamp())}
    lines = [orjson.dumps(r) for r in [*good[:3], *bad, seconds, *good[3:]]]
    lines += [b"[1, 2, 3]", b'{"event_id": "x", broken', b'{"session_id": "\\ud800"}']
    path.write_bytes(b"\xef\xbb\xbf" + b"\n".join(lines) + b"\n")
    return [*good, seconds], len(BAD) + 3


def _ingest(home: Settings, *paths: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **home.environment(), "COLUMNS": "200"}
    cmd = [sys.executable, "-m", "cli.main", "ingest", *map(str, paths)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _digests(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def test_a_file_of_every_bad_kind_keeps_every_good_row(home: Settings, tmp_path: Path) -> None:
    src = tmp_path / "mixed.jsonl"
    good, n_bad = _mixed_file(src)
    done = _ingest(home, src)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert "accepted" in done.stdout and "rejected" in done.stdout  # the summary

    raw = RawEventStore(home.paths.raw_events)
    stored = raw.read(RECENT - timedelta(days=1), NOW + timedelta(days=1))
    assert sorted(stored.column("event_id").to_pylist()) == sorted(e["event_id"] for e in good)
    assert min(stored.column("ts").to_pylist()) >= RECENT  # the epoch-seconds row included

    quarantined = [
        json.loads(line)
        for f in home.paths.quarantine.glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert len(quarantined) == n_bad
    reasons = [q["reason"] for q in quarantined]
    for expected, _ in BAD:
        assert any(r.startswith(expected) for r in reasons), (expected, reasons)
    assert sum(r.startswith("row:") for r in reasons) == 3  # not an object, twice broken JSON

    before = _digests(home.paths.quarantine) | _digests(home.paths.raw_events)
    again = _ingest(home, src)
    assert again.returncode == 0, again.stderr
    assert _digests(home.paths.quarantine) | _digests(home.paths.raw_events) == before


def test_compressed_logs_are_read_and_unreadable_ones_named(home: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "logs"
    folder.mkdir()
    rows = [_good(i) for i in range(4)]
    with gzip.open(folder / "day.jsonl.gz", "wb") as fh:
        fh.write(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    with zipfile.ZipFile(folder / "day2.zip", "w") as z:
        z.writestr("day2.jsonl", orjson.dumps(_good(9)))
    report = ingest_files([folder], RawEventStore(home.paths.raw_events), home.paths.quarantine)
    assert report.accepted == 4
    assert list(report.skipped) == [str(folder / "day2.zip")]
    assert "compressed or archived" in report.skipped[str(folder / "day2.zip")]
    done = _ingest(home, folder)
    assert done.returncode == 0 and "day2.zip" in done.stdout and "not read" in done.stdout


def test_an_event_id_on_two_days_is_stored_once_and_the_build_runs(tmp_path: Path) -> None:
    first = event(event_id="twice", at=0)
    later = event(event_id="twice", at=0, ts=(T0 + timedelta(days=1)).isoformat())
    store = RawEventStore(tmp_path / "raw")
    for i, row in enumerate([first, later]):
        src = tmp_path / f"{i}.jsonl"
        src.write_bytes(orjson.dumps(row))
        ingest_files([src], store, tmp_path / "q", now=LATER)
    everything = store.read(T0 - timedelta(days=1), T0 + timedelta(days=3))
    assert everything.column("event_id").to_pylist() == ["twice"]
    assert store.duplicate_ids() == 0
    built = build_window(store, tmp_path / "off", T0, T0 + timedelta(days=2), now=LATER)
    assert built.events == 1


def test_a_store_with_old_duplicates_is_repaired(tmp_path: Path) -> None:
    """A store written before store-wide deduplication: the same id on two days."""
    store = RawEventStore(tmp_path / "raw")
    src = tmp_path / "first.jsonl"
    src.write_bytes(orjson.dumps(event(event_id="old", at=0)))
    ingest_files([src], store, tmp_path / "q", now=LATER)
    # The same event, a day later, in a part written the way ingest wrote them before.
    copy = store.read(T0 - timedelta(days=1), T0 + timedelta(days=1))
    day = T0 + timedelta(days=1)
    moved = copy.set_column(3, "ts", pa.array([day], copy.schema.field("ts").type))
    store.partition(day.date()).mkdir(parents=True)
    pq.write_table(moved, store.partition(day.date()) / "part-written-before.parquet")
    assert store.duplicate_ids() == 1
    assert store.repair() == (1, 1)
    assert store.duplicate_ids() == 0
    kept = store.read(T0 - timedelta(days=1), T0 + timedelta(days=3))
    assert kept.column("ts").to_pylist() == [T0]  # the first arrival
    assert store.repair() == (0, 0)  # safe to run again
