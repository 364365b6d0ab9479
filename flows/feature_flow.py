"""Prefect flow ``build_features``: ingest, validate, build, apply, materialize.

The flow only wires the pure cores together (``events``, ``features``,
``stores``). Tasks are coarse: one per step and window, never per
event or session. Tasks that touch stores retry with backoff. Re-running a
window gives the same offline files and the same online rows.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.cluster import dask_client
from core.errors import InputError
from core.privacy import pseudonymizer
from core.settings import Settings
from events.ingest import IngestReport, ingest_files, live_inbox_files, retire_inbox_files
from events.raw_store import RawEventStore
from feature_repo.features import SESSION_KEY, SESSION_VIEW, USER_KEY, USER_VIEW
from features import BuildResult, build_window, ceil_day, floor_day, read_offline
from features.distributed import build_window_dask
from flows.context import flow_settings
from flows.locks import FEATURES, exclusive
from flows.retry import IO_RETRIES
from stores.feature_store import apply_definitions, ensure_uci, open_store
from stores.online_load import write_online
from stores.online_state import record_write


@dataclass
class FeatureBuildSummary:
    """What one run of ``build_features`` did."""

    start: str
    end: str
    ingest: dict[str, Any] = field(default_factory=dict)
    build: dict[str, Any] = field(default_factory=dict)
    applied: bool = False
    online_rows: dict[str, int] = field(default_factory=dict)


@task(name="ingest", cache_policy=NO_CACHE, **IO_RETRIES)
def ingest_task(settings: Settings, paths: list[str]) -> IngestReport:
    """Validate event files; accepted rows to the raw store, rejected to quarantine."""
    raw = RawEventStore(settings.paths.raw_events)
    return ingest_files(
        [Path(p) for p in paths],
        raw,
        settings.paths.quarantine,
        pseudonymize=pseudonymizer(settings),
    )


@task(name="validate-window", cache_policy=NO_CACHE)
def validate_window_task(settings: Settings) -> None:
    """Check that the raw store holds every event id once (its index tells, without a read)."""
    repeated = RawEventStore(settings.paths.raw_events).duplicate_ids()
    if repeated:
        raise InputError(
            f"raw store holds {repeated} duplicate event ids, stored before ingest "
            "deduplicated store-wide: run `microtune raw repair` (it keeps the first copy "
            "of each event), then build again."
        )


@task(name="build-offline", cache_policy=NO_CACHE)
def build_task(settings: Settings, start: datetime, end: datetime) -> BuildResult:
    """Offline feature rows of the window (day files, rewritten whole), on the Dask
    cluster when ``MICROTUNE_DASK__ADDRESS`` names one."""
    raw = RawEventStore(settings.paths.raw_events)
    gap = timedelta(minutes=settings.features.session_gap_minutes)
    lookback = timedelta(hours=settings.features.session_lookback_hours)
    if settings.dask.address is None:
        return build_window(raw, settings.paths.offline, start, end, gap=gap, lookback=lookback)
    with dask_client(settings) as client:
        return build_window_dask(
            client,
            raw,
            settings.paths.offline,
            settings.paths.scratch,
            start,
            end,
            partitions=settings.dask.partitions,
            gap=gap,
            lookback=lookback,
        )


@task(name="feast-apply", cache_policy=NO_CACHE, **IO_RETRIES)
def apply_task(settings: Settings) -> bool:
    """Register the feature repo when its definitions changed."""
    ensure_uci(settings)
    return apply_definitions(settings, open_store(settings)).changed


@task(name="materialize", cache_policy=NO_CACHE, **IO_RETRIES)
def materialize_task(settings: Settings, start: datetime) -> dict[str, int]:
    """Latest rows of entities seen since ``start`` into the online store.

    Reading to the end of the offline data (not only to the window's end) makes
    a re-run of an old window write the newest values, never older ones.
    """
    store = open_store(settings)
    written: dict[str, int] = {}
    for view, key, table_dir in (
        (SESSION_VIEW, SESSION_KEY, settings.paths.session_features),
        (USER_VIEW, USER_KEY, settings.paths.user_features),
    ):
        recent = read_offline(table_dir, start=start)
        written[view] = 0 if recent is None else write_online(store, view, recent, key)
        if written[view]:
            record_write(settings.paths.feast, view, time.time())
    return written


def resolve_window(
    settings: Settings, start: datetime | None, end: datetime | None, hours: int | None
) -> tuple[datetime, datetime]:
    """The window to build (whole UTC days): explicit, the last ``hours``, or all stored data."""
    if hours is not None:
        now = datetime.now(UTC)
        return floor_day(now - timedelta(hours=hours)), ceil_day(now)
    if start is None or end is None:
        span = RawEventStore(settings.paths.raw_events).time_range()
        if span is None:
            raise InputError("no events stored yet: run `microtune ingest PATH` first.")
        start = start or span[0]
        end = end or span[1] + timedelta(seconds=1)
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    if end <= start:
        raise InputError(
            f"window end {end:%Y-%m-%d %H:%M} is not after start {start:%Y-%m-%d %H:%M}"
        )
    return floor_day(start), ceil_day(end)


def _run_name() -> str:
    from prefect.runtime import flow_run

    p = flow_run.parameters
    if p.get("hours"):
        now = datetime.now(UTC)
        lo, hi = floor_day(now - timedelta(hours=p["hours"])), ceil_day(now)
        return f"build-features-{lo:%Y-%m-%d}..{hi:%Y-%m-%d}-last-{p['hours']}h"
    s, e = (
        datetime.fromisoformat(v) if isinstance(v, str) else v
        for v in (p.get("start"), p.get("end"))
    )
    if s and e:
        return f"build-features-{s:%Y-%m-%dT%H}..{e:%Y-%m-%dT%H}"
    return "build-features-all"


@flow(name="build_features", flow_run_name=_run_name)
@exclusive(FEATURES)
def build_features(
    start: datetime | None = None,
    end: datetime | None = None,
    hours: int | None = None,
    inbox: list[str] | None = None,
) -> FeatureBuildSummary:
    """Ingest ``inbox`` files and the scorer's live events, then build and materialize.

    The window is ``[start, end)`` rounded out to whole UTC days, or the days
    covering the last ``hours`` hours, or every stored event when neither is given.
    """
    settings = flow_settings()
    logger = get_run_logger()
    # Events the scorer took live are always collected (nothing typed in is lost).
    live = live_inbox_files(settings.paths.live_inbox)
    paths = [*(inbox or []), *map(str, live)]
    ingest = ingest_task(settings, paths) if paths else IngestReport()
    retired = retire_inbox_files(live, settings.paths.ingested_inbox)
    if retired:
        logger.info("moved %d ingested live-event files to inbox/ingested", len(retired))
    lo, hi = resolve_window(settings, start, end, hours)
    summary = FeatureBuildSummary(start=lo.isoformat(), end=hi.isoformat(), ingest=asdict(ingest))
    validate_window_task(settings)
    built = build_task(settings, lo, hi)
    summary.build = {k: v for k, v in asdict(built).items() if k != "files"}
    summary.build["start"], summary.build["end"] = lo.isoformat(), hi.isoformat()
    summary.applied = apply_task(settings)
    summary.online_rows = materialize_task(settings, lo)
    logger.info("build_features %s..%s: %s", lo, hi, summary.online_rows)
    create_markdown_artifact(
        key="build-features", markdown=_artifact(summary), description="Feature build counts"
    )
    return summary


def _artifact(s: FeatureBuildSummary) -> str:
    rejected = "".join(
        f"| rejected: {k} | {v} |\n" for k, v in s.ingest.get("rejected", {}).items()
    )
    return (
        f"# Feature build {s.start} .. {s.end}\n\n| what | count |\n|---|---|\n"
        f"| rows read | {s.ingest.get('rows', 0)} |\n| accepted | {s.ingest.get('accepted', 0)} |\n"
        f"| duplicates | {s.ingest.get('duplicates', 0)} |\n{rejected}"
        f"| events in window | {s.build.get('events', 0)} |\n"
        f"| session feature rows | {s.build.get('session_rows', 0)} |\n"
        f"| ended sessions | {s.build.get('ended_sessions', 0)} |\n"
        f"| user history rows | {s.build.get('user_rows', 0)} |\n"
        f"| feast apply | {'applied' if s.applied else 'unchanged'} |\n"
        + "".join(f"| online rows: {k} | {v} |\n" for k, v in s.online_rows.items())
    )
