"""Prefect flow ``segment_sessions``: cluster the window's sessions into micro-segments.

It fits K-Means and HDBSCAN on the ended sessions' behaviour vectors, keeps the
better, keeps the champion segmenter's ids, validates (silhouette, bootstrap
stability), names the segments by their profiles, registers the segmenter in
MLflow as the champion, and writes the ``segment`` feature offline (every
session-feature row of the window) and online (each session's newest). The
core is :mod:`models.segment_run`.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from core.settings import Settings
from feature_repo.features import SEGMENT_INPUTS, SEGMENT_VIEW, SESSION_KEY
from features.offline import read_offline, write_days
from flows.context import flow_settings
from flows.locks import MODELS, exclusive
from flows.retry import MODEL_RETRIES
from models import registry
from models.segment_registry import champion_segmenter, register_segmenter
from models.segment_run import (
    ended_sessions,
    purchase_rates,
    segment,
    segment_rows,
    window_of,
    write_report,
)
from models.segments import Segmenter
from stores.feature_store import open_store
from stores.online_load import write_online


@task(name="segment-sessions", cache_policy=NO_CACHE, **MODEL_RETRIES)
def segment_task(settings: Settings, end: datetime | None) -> dict[str, Any]:
    """Cluster the window's ended sessions; register the segmenter with its report."""
    start, stop = window_of(settings, end)
    vectors = ended_sessions(settings, start, stop)
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    previous = champion_segmenter(client)
    result = segment(settings, vectors, previous[1] if previous else None)
    folder = settings.paths.reports / "segments" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    artifacts = write_report(folder, result, vectors)
    version = register_segmenter(
        client,
        result.segmenter,
        result.card(),
        metrics=result.metrics(),
        artifacts=artifacts,
        artifact_root=settings.artifact_root,
    )
    return {
        "version": version,
        "previous": previous[0] if previous else None,
        "method": result.segmenter.method,
        "window": result.window,
        "metrics": result.metrics(),
        "segments": purchase_rates(result.profiles),
        "report": str(folder),
        "start": start,
        "end": stop,
    }


@task(name="write-segment-feature", cache_policy=NO_CACHE, **MODEL_RETRIES)
def feature_task(settings: Settings, start: datetime, end: datetime) -> dict[str, int]:
    """The champion's ``segment`` of every session-feature row of the window, offline
    (day files, replaced whole) and online (each session's newest row)."""
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    found = champion_segmenter(client)
    assert found is not None  # segment_task registered one
    seg: Segmenter = found[1]
    rows = read_offline(settings.paths.session_features, end, start=start)
    if rows is None:
        return {"offline_rows": 0, "online_rows": 0}
    table = segment_rows(seg, rows.select([SESSION_KEY, "event_timestamp", *SEGMENT_INPUTS]))
    write_days(table, settings.paths.session_segments, start, end)
    online = write_online(open_store(settings), SEGMENT_VIEW, table, SESSION_KEY)
    return {"offline_rows": table.num_rows, "online_rows": online}


@flow(name="segment_sessions", flow_run_name="segment-sessions")
@exclusive(MODELS)
def segment_sessions(window_days: int | None = None, end: datetime | None = None) -> dict[str, Any]:
    """Segment the last ``window_days`` of sessions (default ``segments.window_days``)
    up to ``end`` (default: the newest ended session); register the segmenter."""
    settings = flow_settings()
    if window_days is not None:
        settings = settings.model_copy(
            update={"segments": settings.segments.model_copy(update={"window_days": window_days})}
        )
    out = segment_task(settings, end)
    out["feature"] = feature_task(settings, out.pop("start"), out.pop("end"))
    create_table_artifact(
        key="segments",
        table=out["segments"],
        description=f"Segmenter v{out['version']}: sizes and purchase rates",
    )
    m = out["metrics"]
    create_markdown_artifact(
        key="segment-report",
        markdown=(
            f"# Segments (v{out['version']})\n\n{int(m['k'])} segments of "
            f"{int(m['sessions'])} sessions; silhouette {m['silhouette']:.3f}, bootstrap "
            f"ARI {m['bootstrap_ari']:.3f} (K-Means {m['kmeans_silhouette']:.3f} with "
            f"k = {int(m['kmeans_k'])}, HDBSCAN {m['hdbscan_silhouette']:.3f} with "
            f"{int(m['hdbscan_k'])} clusters).\n\nReport: {out['report']}\n"
        ),
    )
    get_run_logger().info("segmenter v%s registered: %s", out["version"], out["segments"])
    return out
