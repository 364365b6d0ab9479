"""One segmentation of a window: its vectors, both methods, validation, the card, the
rows of the ``segment`` feature, and the report (the ``segment`` flow's core).

The vectors are the ended sessions' last session-feature rows (each session as
it stood when it ended), through :func:`feature_repo.segment_vector.segment_vectors`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from core.errors import NotReadyError
from core.settings import Settings
from feature_repo.features import SEGMENT_INPUTS, SEGMENT_TERMS, SESSION_KEY
from feature_repo.segment_vector import segment_vector, segment_vectors
from features.offline import epoch_seconds, read_offline, to_ts
from models.segment_quality import Fits, bootstrap_stability, fit_both, profiles
from models.segments import Segmenter, stable_ids
from stores.online_load import latest_per_entity

#: The coordinates of the behaviour vector, in order (the segmenter's features).
TERMS: list[str] = [t.name for t in SEGMENT_TERMS]
#: A session's feature rows begin at most this long before it ended.
_LONGEST_SESSION = timedelta(hours=4)


@dataclass
class Vectors:
    """The window's ended sessions: ids, behaviour vectors, and whether they purchased."""

    sessions: list[str]
    x: np.ndarray
    purchased: np.ndarray
    start: datetime
    end: datetime


@dataclass
class Segmentation:
    """What one run of the segment flow found."""

    segmenter: Segmenter
    fits: Fits
    stability: float
    profiles: list[dict[str, Any]]
    window: dict[str, str]
    sessions: int

    @property
    def names(self) -> dict[int, str]:
        return {p["segment"]: p["name"] for p in self.profiles}

    def metrics(self) -> dict[str, float]:
        k, h = self.fits.kmeans, self.fits.hdbscan
        return {
            "sessions": float(self.sessions),
            "k": float(self.segmenter.k),
            "silhouette": self.segmenter.silhouette,
            "bootstrap_ari": self.stability,
            "kmeans_k": float(k.k),
            "kmeans_silhouette": k.silhouette,
            "hdbscan_k": float(h.k),
            "hdbscan_silhouette": h.silhouette,
        }

    def card(self) -> dict[str, Any]:
        """The model card: the arrays of the assignment, and what the segments are."""
        return {
            **self.segmenter.to_card(),
            "inputs": list(SEGMENT_INPUTS),
            "terms": [
                {"name": t.name, "description": t.description, "high": t.high, "low": t.low}
                for t in SEGMENT_TERMS
            ],
            "names": {str(k): v for k, v in self.names.items()},
            "profiles": self.profiles,
            "window": self.window,
            "metrics": self.metrics(),
            "methods": {
                "kept": self.segmenter.method,
                "kmeans": {"k": self.fits.kmeans.k, "silhouette": self.fits.kmeans.silhouette},
                "hdbscan": {"k": self.fits.hdbscan.k, "silhouette": self.fits.hdbscan.silhouette},
            },
        }


def window_of(settings: Settings, end: datetime | None = None) -> tuple[datetime, datetime]:
    """The reference window: ``window_days`` up to ``end`` (default: the newest outcome)."""
    if end is None:
        outcomes = read_offline(settings.paths.session_outcomes)
        if outcomes is None or outcomes.num_rows == 0:
            end = datetime.now(UTC)
        else:
            newest = float(epoch_seconds(outcomes.column("event_timestamp")).max())
            end = datetime.fromtimestamp(newest, UTC) + timedelta(seconds=1)
    return end - timedelta(days=settings.segments.window_days), end


def ended_sessions(settings: Settings, start: datetime, end: datetime) -> Vectors:
    """The vectors of the sessions that ended in ``[start, end)`` (a seeded sample of
    ``segments.max_sessions`` when there are more)."""
    outcomes = read_offline(settings.paths.session_outcomes, end, start=start)
    rows = read_offline(settings.paths.session_features, end, start=start - _LONGEST_SESSION)
    if outcomes is None or rows is None:
        return Vectors([], np.zeros((0, len(TERMS))), np.zeros(0), start, end)
    last = latest_per_entity(
        rows.select([SESSION_KEY, "event_timestamp", *SEGMENT_INPUTS]), SESSION_KEY
    )
    ended = outcomes.select([SESSION_KEY, "purchased"])
    joined = last.join(ended, SESSION_KEY, join_type="inner").sort_by(SESSION_KEY)
    cap = settings.segments.max_sessions
    if joined.num_rows > cap:
        rng = np.random.default_rng(settings.segments.seed)
        joined = joined.take(pa.array(np.sort(rng.choice(joined.num_rows, cap, replace=False))))
    columns = {c: joined.column(c).to_numpy(zero_copy_only=False) for c in SEGMENT_INPUTS}
    return Vectors(
        joined.column(SESSION_KEY).to_pylist(),
        segment_vectors(columns),
        joined.column("purchased").to_numpy(zero_copy_only=False).astype(np.float64),
        start,
        end,
    )


def segment(settings: Settings, vectors: Vectors, previous: Segmenter | None) -> Segmentation:
    """Fit both methods, keep the better (silhouette), keep the previous champion's ids,
    and validate: bootstrap stability, profiles and names."""
    s = settings.segments
    if len(vectors.x) < max(100, 10 * s.k_max):
        raise NotReadyError(
            f"{len(vectors.x)} ended sessions between {vectors.start:%Y-%m-%d %H:%M} and "
            f"{vectors.end:%Y-%m-%d %H:%M} UTC: too few to segment (at least "
            f"{max(100, 10 * s.k_max)}); build features for more days (`microtune features "
            "build`) or widen --window-days"
        )
    fits = fit_both(vectors.x, TERMS, seed=s.seed, ks=s.ks)
    kept = fits.kept
    if previous is not None and previous.features == kept.features:
        kept = stable_ids(previous, kept)
    stability = bootstrap_stability(vectors.x, kept, rounds=s.stability_rounds, seed=s.seed)
    found = profiles(kept, vectors.x, vectors.purchased)
    kept.names = {p["segment"]: p["name"] for p in found}
    return Segmentation(
        segmenter=kept,
        fits=fits,
        stability=stability,
        profiles=found,
        window={"start": vectors.start.isoformat(), "end": vectors.end.isoformat()},
        sessions=len(vectors.x),
    )


def segment_of(seg: Segmenter, features: Mapping[str, float | None]) -> int:
    """One live session's segment, from its session features, as the scorer assigns it."""
    return seg.assign_row(segment_vector(features))[0]


def segment_rows(seg: Segmenter, table: pa.Table) -> pa.Table:
    """The ``segment`` feature of every session-feature row of ``table`` (point in time:
    each row's segment from the features as they stood then)."""
    columns = {c: table.column(c).to_numpy(zero_copy_only=False) for c in SEGMENT_INPUTS}
    ids = seg.assign(segment_vectors(columns)) if table.num_rows else np.zeros(0)
    return pa.table(
        {
            SESSION_KEY: table.column(SESSION_KEY),
            "event_timestamp": to_ts(epoch_seconds(table.column("event_timestamp"))),
            "segment": pa.array(ids.astype(np.float64)),
        }
    )


def purchase_rates(profiles_: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The summary's rows: segment, name, sessions, share and purchase rate."""
    return [
        {
            "segment": p["segment"],
            "name": p["name"],
            "sessions": p["sessions"],
            "share": round(p["share"], 3),
            "purchase_rate": None if p["purchase_rate"] is None else round(p["purchase_rate"], 3),
        }
        for p in profiles_
    ]


def write_report(folder: Path, result: Segmentation, vectors: Vectors) -> list[Path]:
    """``report.json``, the PCA scatter and the profile heat map under ``folder``."""
    from models.plots import plot_segment_profiles, plot_segment_scatter

    folder.mkdir(parents=True, exist_ok=True)
    seg = result.segmenter
    plots = [
        plot_segment_scatter(seg, vectors.x, result.names, folder / "segments_pca.png"),
        plot_segment_profiles(result.profiles, TERMS, folder / "segment_profiles.png"),
    ]
    summary = {"metrics": result.metrics(), "segments": purchase_rates(result.profiles)}
    report = folder / "report.json"
    report.write_text(json.dumps({**summary, "card": result.card()}, indent=2, default=str))
    return [report, *plots]
