"""The settings of the micro-segments (``MICROTUNE_SEGMENTS__*``, models/segments.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class SegmentSettings(BaseModel):
    """How the segment flow clusters sessions, and when the drift check calls it moved."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    window_days: int = Field(
        default=7, ge=1, description="Days of ended sessions the segment flow clusters."
    )
    k_min: int = Field(
        default=4,
        ge=2,
        description="Fewest K-Means segments the silhouette chooses among: fewer are too "
        "coarse a context for decisions (docs/segments.md has the figures).",
    )
    k_max: int = Field(default=10, ge=2, description="Most K-Means segments.")
    seed: int = Field(default=0, description="Seed of the clustering and the resamples.")
    stability_rounds: int = Field(
        default=5, ge=1, description="Bootstrap refits the stability is measured on."
    )
    max_sessions: int = Field(
        default=50_000,
        ge=100,
        description="Most sessions clustered (a seeded sample of the window beyond it).",
    )
    centroid_shift_max: float = Field(
        default=0.5,
        gt=0,
        description="Largest distance, in the segmenter's whitened PCA units, between a "
        "batch centroid and its streaming counterpart before the drift check reports it.",
    )
    share_psi_max: float = Field(
        default=0.05,
        gt=0,
        description="Largest population stability index of the segment shares (current "
        "window against reference) before the drift check reports it. Measured on "
        "generated worlds of 3,500 current sessions: 0.001 to 0.0024 unchanged, 0.08 to "
        "0.11 after the world's drift (docs/segments.md).",
    )
    share_min_sessions: int = Field(
        default=500,
        ge=1,
        description="Ended sessions the shares check needs (below, the index's own noise, "
        "about (k - 1) / sessions, nears the limit).",
    )
    stream_min_sessions: int = Field(
        default=200,
        ge=1,
        description="Ended sessions the streaming clusterer must have learnt before its "
        "centroids are compared.",
    )

    @model_validator(mode="after")
    def _range(self) -> SegmentSettings:
        if self.k_max < self.k_min:
            raise ValueError("segments.k_max must be at least segments.k_min")
        return self

    @property
    def ks(self) -> tuple[int, ...]:
        return tuple(range(self.k_min, self.k_max + 1))
