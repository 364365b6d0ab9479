"""The settings of the work beyond one process: the event stream and the Dask cluster.

Sections of :class:`core.settings.Settings` (``MICROTUNE_STREAM__*``,
``MICROTUNE_DASK__*``).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StreamSettings(_Section):
    """Live events through a Redis Stream (``MICROTUNE_STREAM__*``, serving/stream.py).

    Off: ``POST /v1/events`` folds events in the scorer's process (the embedded
    default). On: the API appends them to a Redis Stream on ``redis_url`` and
    ``microtune stream-worker`` processes fold them and store them.
    """

    enabled: bool = Field(default=False, description="Events go through the Redis Stream.")
    durability: Literal["aof", "replicas", "none"] = Field(
        default="aof",
        description="When an accepted event counts as held: `aof`, Redis writes its "
        "append-only file (checked at start; appendfsync always for no loss at all); "
        "`replicas`, WAIT for `replicas` replicas; `none`, in Redis's memory (tests).",
    )
    replicas: int = Field(default=1, ge=1, description="Replicas WAITed for (`replicas`).")
    wait_ms: int = Field(default=500, ge=1, description="Longest WAIT for the replicas.")
    max_backlog: int = Field(
        default=200_000,
        gt=0,
        description="Entries not yet processed (lag plus pending) beyond which the API "
        "answers 503 with Retry-After instead of taking more.",
    )
    batch: int = Field(default=1_000, gt=0, description="Entries a worker reads at once.")
    block_ms: int = Field(default=50, ge=1, description="A worker's wait for new entries.")
    raw_flush_s: float = Field(
        default=2.0, gt=0, description="Longest time a worker holds events before the raw store."
    )
    raw_flush_events: int = Field(
        default=20_000, gt=0, description="Events that make a worker write the raw store."
    )
    partitions: int = Field(
        default=8,
        ge=1,
        le=1024,
        description="Streams the events are split into by session; one worker at a time "
        "holds each, so a session's events are folded in order. Changing it needs the "
        "streams drained first.",
    )
    lease_s: float = Field(
        default=10.0,
        gt=0,
        description="A worker's hold on its partitions, renewed as it works; a worker "
        "silent this long (dead) loses them, and the others claim its pending entries.",
    )
    seen_ttl_s: int = Field(
        default=86_400,
        gt=0,
        description="How long a session's folded event ids are kept (a redelivered or "
        "resent event is folded once within this).",
    )

    @model_validator(mode="after")
    def _lease_over_flush(self) -> StreamSettings:
        if self.lease_s <= 2 * self.raw_flush_s:
            raise ValueError(
                "lease_s must exceed twice raw_flush_s: a worker renews its lease between "
                "raw-store writes"
            )
        return self


class DaskSettings(_Section):
    """The batch work on a Dask cluster (``MICROTUNE_DASK__*``, core/cluster.py)."""

    address: str | None = Field(
        default=None,
        description="None: one process (threads). `local`: a LocalCluster started for the "
        "run. `tcp://host:8786`: an existing cluster's scheduler.",
    )
    partitions: int = Field(
        default=16, ge=1, description="Session partitions of a feature build on Dask."
    )
    local_workers: int = Field(default=2, ge=1, description="Workers of a `local` cluster.")
    threads_per_worker: int = Field(default=1, ge=1)
    memory_limit: str = Field(default="4GB", description="Memory limit of a `local` worker.")
    train_min_rows: int = Field(
        default=2_000_000,
        ge=1,
        description="Training sets of at least this many rows train with lightgbm.dask.",
    )
