"""Ingestion: quarantine with reasons, dedup, consent minimization, partitions."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import LATER, T0, event

from events.contract import ARROW_SCHEMA
from events.ingest import ingest_files
from events.raw_store import RAW_SCHEMA, RawEventStore


def write_jsonl(path: Path, rows: list) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows) + b"{broken json\n")
    return path


def test_bad_rows_are_quarantined_and_good_rows_kept(tmp_path: Path) -> None:
    rows = [event(at=i) for i in range(3)] + [event(scroll_depth=2.0), event(event_type="x")]
    src = write_jsonl(tmp_path / "batch.jsonl", rows)
    store = RawEventStore(tmp_path / "raw")
    report = ingest_files([src], store, tmp_path / "q", now=LATER)
    assert report.accepted == 3
    assert report.rejected == {
        "event_type: unknown event type": 1,
        "row: invalid JSON": 1,
        "scroll_depth: outside [0, 1]": 1,
    }
    quarantined = [
        json.loads(line)
        for f in (tmp_path / "q").glob("*.jsonl")
        for line in f.read_text().splitlines()
    ]
    assert sorted(q["position"] for q in quarantined) == [3, 4, 5]
    assert all(q["source"] == str(src) and q["reason"] for q in quarantined)
    assert {q["row"].get("scroll_depth") for q in quarantined} >= {2.0}


def test_reingesting_the_same_file_adds_nothing(tmp_path: Path) -> None:
    src = write_jsonl(tmp_path / "batch.jsonl", [event(at=i) for i in range(4)])
    store = RawEventStore(tmp_path / "raw")
    first = ingest_files([src], store, tmp_path / "q", now=LATER)
    files_before = sorted(p.name for p in (tmp_path / "raw").rglob("*.parquet"))
    quarantine_before = sorted(p.name for p in (tmp_path / "q").glob("*"))
    again = ingest_files([src], store, tmp_path / "q", now=LATER)
    assert (first.accepted, again.accepted, again.duplicates) == (4, 0, 4)
    assert sorted(p.name for p in (tmp_path / "raw").rglob("*.parquet")) == files_before
    assert sorted(p.name for p in (tmp_path / "q").glob("*")) == quarantine_before


def test_duplicates_inside_one_batch_are_dropped(tmp_path: Path) -> None:
    e = event()
    src = write_jsonl(tmp_path / "b.jsonl", [e, e, event(at=1)])
    report = ingest_files([src], RawEventStore(tmp_path / "raw"), tmp_path / "q", now=LATER)
    assert (report.accepted, report.duplicates) == (2, 1)


def test_store_is_partitioned_by_event_date_and_append_only(tmp_path: Path) -> None:
    day1 = [event(at=i) for i in range(2)]
    day2 = [event(at=86_400 + i) for i in range(2)]
    store = RawEventStore(tmp_path / "raw")
    ingest_files([write_jsonl(tmp_path / "a.jsonl", day1)], store, tmp_path / "q", now=LATER)
    ingest_files([write_jsonl(tmp_path / "b.jsonl", day2)], store, tmp_path / "q", now=LATER)
    assert [d.isoformat() for d in store.dates()] == ["2026-06-01", "2026-06-02"]
    assert len(store.part_files()) == 2


def test_parquet_input_is_accepted(tmp_path: Path) -> None:
    from events.validation import validate_rows

    table = validate_rows([event(at=i, duration_ms=10.0) for i in range(3)], now=LATER).to_arrow()
    pq.write_table(table, tmp_path / "in.parquet")
    report = ingest_files(
        [tmp_path / "in.parquet"], RawEventStore(tmp_path / "raw"), tmp_path / "q", now=LATER
    )
    assert report.accepted == 3


def test_events_without_consent_are_minimized(tmp_path: Path) -> None:
    rows = [
        event(consent=False, user_id="u9", element_id="price", duration_ms=5.0, event_type="hover")
    ]
    store = RawEventStore(tmp_path / "raw")
    ingest_files([write_jsonl(tmp_path / "c.jsonl", rows)], store, tmp_path / "q", now=LATER)
    stored = pa.concat_tables([pq.read_table(f, schema=ARROW_SCHEMA) for f in store.part_files()])
    row = stored.to_pylist()[0]
    assert row["consent"] is False and row["event_type"] == "hover"
    assert row["user_id"] is None and row["element_id"] is None
    assert row["duration_ms"] is None and row["device"] is None and row["browser"] is None


def test_encoded_read_holds_the_same_events_and_honours_the_window(tmp_path: Path) -> None:
    rows = [
        event(session=f"s{i % 3}", at=600 * i, element_id=["price", None][i % 2]) for i in range(8)
    ]
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    store = RawEventStore(tmp_path / "raw")
    ingest_files([src], store, tmp_path / "q", now=LATER)
    lo, hi = T0 + timedelta(seconds=600), T0 + timedelta(seconds=3600)
    plain = store.read(lo, hi)
    encoded = store.read(lo, hi, encoded=True)
    assert pa.types.is_dictionary(encoded.schema.field("session_id").type)
    assert encoded.cast(RAW_SCHEMA).equals(plain)
    assert plain.num_rows == 5  # 600 s .. 3000 s: the window is [lo, hi)


def test_writers_opening_a_new_index_together_all_get_it(tmp_path: Path) -> None:
    """Putting a new index in WAL mode takes SQLite's exclusive lock without waiting: six
    writers opening one together (two stream workers' first stores) saw "database is
    locked" in 2 of 30 rounds before the mode change was retried."""
    for round_ in range(30):
        errors = _open_together(tmp_path / f"r{round_}" / "index.db", writers=6)
        assert errors == [], (round_, errors)


def _open_together(path: Path, writers: int) -> list[str]:
    """``writers`` threads open one write of the index at ``path`` at the same moment."""
    import threading

    from events.raw_index import EventIndex

    start, errors = threading.Barrier(writers), []

    def write() -> None:
        start.wait()
        try:
            with EventIndex(path).writing():
                pass
        except Exception as exc:
            errors.append(repr(exc))

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors
