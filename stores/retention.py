"""Retention: personal data older than its configured age is deleted.

What is kept, and for how long (``MICROTUNE_RETENTION__*``,
:class:`core.settings.RetentionSettings`):

* raw events (by event time) and the scorer's ingested inbox files (by when
  they were last written): ``raw_events_days``;
* the decision log (by decision time): ``decisions_days``;
* quarantined rows (by when they were quarantined): ``quarantine_days``.

Exactly what is older goes: the boundary day of the raw store and the
boundary hour of the decision log are rewritten without the older rows. The
offline features, models and reports are derived data and are not touched
here. Running it again removes nothing more.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from pathlib import Path

from core.settings import Settings
from events.raw_store import RawEventStore
from stores.decision_log import drop_decisions_before


@dataclass(frozen=True)
class RetentionReport:
    """What one run removed: rows of events and decisions, files of the others."""

    raw_events: int
    decisions: int
    quarantine_files: int
    inbox_files: int
    cutoffs: dict[str, str]

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def _old_files(root: Path, cutoff: datetime) -> int:
    """Delete the files under ``root`` last written before ``cutoff``; how many."""
    if not root.exists():
        return 0
    gone = 0
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        if path.stat().st_mtime < cutoff.timestamp():
            path.unlink()
            gone += 1
    return gone


def apply_retention(settings: Settings, now: datetime) -> RetentionReport:
    """Delete what is older than each store's retention, as of ``now``."""
    r, paths = settings.retention, settings.paths
    raw_cut = now - timedelta(days=r.raw_events_days)
    decisions_cut = now - timedelta(days=r.decisions_days)
    quarantine_cut = now - timedelta(days=r.quarantine_days)
    return RetentionReport(
        raw_events=RawEventStore(paths.raw_events).drop_before(raw_cut),
        decisions=drop_decisions_before(paths.decisions, decisions_cut),
        quarantine_files=_old_files(paths.quarantine, quarantine_cut),
        inbox_files=_old_files(paths.ingested_inbox, raw_cut),
        cutoffs={
            "raw_events": raw_cut.isoformat(),
            "decisions": decisions_cut.isoformat(),
            "quarantine": quarantine_cut.isoformat(),
        },
    )
