"""A build that fails leaves no half-written window that a later run would trust."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import features.build
from events.ingest import expand_paths, ingest_files
from events.raw_store import RawEventStore
from events.synth import GeneratorConfig, write_event_log
from features import build_window

DAY0 = datetime(2026, 6, 1, tzinfo=UTC)
LATER = DAY0 + timedelta(days=10)


@pytest.fixture
def raw(tmp_path: Path) -> RawEventStore:
    log = tmp_path / "log"
    write_event_log(GeneratorConfig(sessions=300, days=2, seed=4, start=DAY0.date()), log)
    store = RawEventStore(tmp_path / "raw")
    ingest_files(expand_paths([log / "events"]), store, tmp_path / "quarantine")
    return store


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.parquet"))}


def test_a_failing_build_replaces_no_day_file(
    raw: RawEventStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    off = tmp_path / "offline"
    build_window(raw, off, DAY0, DAY0 + timedelta(days=1), now=LATER)
    before = _files(off)
    assert before

    # The last table of a wider build fails: the first two were already computed.
    def broken(outcomes: object) -> None:
        raise RuntimeError("user history failed")

    monkeypatch.setattr(features.build, "user_features", broken)
    with pytest.raises(RuntimeError, match="user history failed"):
        build_window(raw, off, DAY0, DAY0 + timedelta(days=2), now=LATER)
    assert _files(off) == before
    assert not list(off.rglob(".*.tmp"))


def test_day_by_day_builds_equal_one_build(raw: RawEventStore, tmp_path: Path) -> None:
    # The second day's user history reads the first day's stored outcomes.
    build_window(raw, tmp_path / "daily", DAY0, DAY0 + timedelta(days=1), now=LATER)
    build_window(
        raw, tmp_path / "daily", DAY0 + timedelta(days=1), DAY0 + timedelta(days=2), now=LATER
    )
    build_window(raw, tmp_path / "whole", DAY0, DAY0 + timedelta(days=2), now=LATER)
    assert _files(tmp_path / "daily") == _files(tmp_path / "whole")
