"""Prefect flow ``apply_retention``: personal data older than its retention is deleted.

A thin wrapper around :func:`stores.retention.apply_retention`; it holds the
features lock, because it rewrites the raw store that ``build_features``
appends to. Its daily deployment is ``apply_retention/daily``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.context import flow_settings
from flows.locks import FEATURES, exclusive
from stores.retention import apply_retention as apply


@flow(name="apply_retention", flow_run_name="apply-retention")
@exclusive(FEATURES)
def apply_retention(now: str | None = None) -> dict[str, Any]:
    """Delete raw events, decisions, quarantined rows and ingested inbox files older than
    their retention (``MICROTUNE_RETENTION__*``), as of ``now`` (ISO; default: now)."""
    settings = flow_settings()
    at = datetime.fromisoformat(now) if now else datetime.now(UTC)
    report = apply(settings, at)
    get_run_logger().info("retention removed %s", report.as_dict())
    create_markdown_artifact(
        key="retention",
        markdown="# Retention\n\n| store | removed |\n|---|---|\n"
        f"| raw events | {report.raw_events} |\n| decisions | {report.decisions} |\n"
        f"| quarantine files | {report.quarantine_files} |\n"
        f"| ingested inbox files | {report.inbox_files} |\n",
    )
    return report.as_dict()
