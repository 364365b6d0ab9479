"""Every location under the home directory, in one place.

>>> p = Paths(Path("/tmp/mt-doc"))
>>> str(p.raw_events), str(p.session_features)
('/tmp/mt-doc/raw/events', '/tmp/mt-doc/offline/session_features')
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Paths:
    """Every location under the home directory."""

    home: Path

    @property
    def raw_events(self) -> Path:
        return self.home / "raw" / "events"

    @property
    def quarantine(self) -> Path:
        return self.home / "quarantine"

    @property
    def offline(self) -> Path:
        return self.home / "offline"

    @property
    def session_features(self) -> Path:
        return self.offline / "session_features"

    @property
    def session_outcomes(self) -> Path:
        return self.offline / "session_outcomes"

    @property
    def session_segments(self) -> Path:
        """Each session's segment after each of its events (the segment flow)."""
        return self.offline / "session_segments"

    @property
    def user_features(self) -> Path:
        return self.offline / "user_features"

    @property
    def feast(self) -> Path:
        return self.home / "feast"

    @property
    def reports(self) -> Path:
        return self.home / "reports"

    @property
    def drift_reports(self) -> Path:
        return self.reports / "drift"

    @property
    def mlflow(self) -> Path:
        return self.home / "mlflow"

    @property
    def prefect(self) -> Path:
        return self.home / "prefect"

    @property
    def decisions(self) -> Path:
        return self.home / "decisions"

    @property
    def serving(self) -> Path:
        return self.home / "serving"

    @property
    def live_inbox(self) -> Path:
        """Events taken by ``POST /v1/events``, for the next ``build_features`` run."""
        return self.home / "inbox" / "live"

    @property
    def ingested_inbox(self) -> Path:
        """Live-event files already ingested, kept for audit."""
        return self.home / "inbox" / "ingested"

    @property
    def segment_stream(self) -> Path:
        """The streaming centroids the scorer's learner keeps (models/segment_stream.py)."""
        return self.serving / "segments" / "stream.json"

    @property
    def river_checkpoint(self) -> Path:
        """The river model the ``train`` flow last fitted."""
        return self.home / "models" / "river" / "checkpoint.pkl"

    @property
    def scratch(self) -> Path:
        """Temporary work of a run (a Dask build's partitions, its workers' spill),
        removed when the run ends."""
        return self.home / "scratch"

    @property
    def examples(self) -> Path:
        return self.home / "examples"

    def ensure(self) -> Paths:
        for p in (
            self.raw_events,
            self.quarantine,
            self.offline,
            self.feast,
            self.reports,
            self.mlflow,
            self.prefect,
        ):
            p.mkdir(parents=True, exist_ok=True)
        return self
