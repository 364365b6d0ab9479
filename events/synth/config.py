"""What to generate (:class:`GeneratorConfig`), what was generated, and the oracle's schema."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Literal

import pyarrow as pa

from events.contract import ARROW_SCHEMA
from events.synth.world import CONCEPT_DRIFTED, DRIFTED, Regime

# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Parameters
    ----------
    sessions:
        Number of sessions (visits).
    days:
        Number of days the sessions are spread over.
    seed:
        Seed of every random draw; equal configurations give identical output.
    start:
        First day (UTC midnight).
    drift_day:
        0-based day index from which sessions follow :data:`DRIFTED` instead of
        :data:`BASELINE`; ``None`` for no drift.
    drift_kind:
        ``"full"`` (behaviour and link drift, :data:`DRIFTED`) or ``"concept"``
        (only the link drifts, :data:`CONCEPT_DRIFTED`).
    bad_rate:
        Invalid rows to mix into written files, as a fraction of the events; half as
        many exact duplicates of valid rows are added too. Ignored by
        :func:`generate_events`.
    fmt:
        File format written by :func:`write_event_log`.
    """

    sessions: int = 20_000
    days: int = 7
    seed: int = 0
    start: date = date(2026, 6, 1)
    drift_day: int | None = None
    drift_kind: Literal["full", "concept"] = "full"
    bad_rate: float = 0.0
    fmt: Literal["jsonl", "parquet"] = "jsonl"

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError("sessions must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.drift_day is not None and self.drift_day < 0:
            raise ValueError("drift_day must not be negative")
        if self.drift_kind not in ("full", "concept"):
            raise ValueError(f"unknown drift kind {self.drift_kind!r}")
        if not 0.0 <= self.bad_rate <= 1.0:
            raise ValueError("bad_rate must be in [0, 1]")
        if self.fmt not in ("jsonl", "parquet"):
            raise ValueError(f"unknown format {self.fmt!r}")

    @property
    def drifted_regime(self) -> Regime:
        """The regime sessions follow from ``drift_day`` on."""
        return CONCEPT_DRIFTED if self.drift_kind == "concept" else DRIFTED

    @property
    def start_ms(self) -> int:
        """Epoch milliseconds of the first day's UTC midnight."""
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return int(start.timestamp()) * 1000


@dataclass(frozen=True)
class GeneratedLog:
    """Summary of a written event log.

    Attributes
    ----------
    files:
        Event files written, in name order (day files and any ``.badtypes.jsonl`` sidecars).
    oracle_path:
        The per-session ground truth (Parquet, schema :data:`ORACLE_SCHEMA`).
    ideal_path:
        The ideal risk at every decision point (Parquet, schema
        :data:`events.synth.ideal.IDEAL_SCHEMA`), or None when not written.
    events:
        Valid, distinct events written.
    sessions, users:
        Sessions and distinct signed-in users.
    bad_rows:
        Invalid rows mixed in.
    duplicates:
        Exact copies of valid rows mixed in.
    """

    files: list[Path]
    oracle_path: Path
    ideal_path: Path | None
    events: int
    sessions: int
    users: int
    bad_rows: int
    duplicates: int


#: Schema of the oracle table: one row per session.
ORACLE_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), False),
        pa.field("user_id", pa.string()),
        pa.field("start_ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("end_ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("day", pa.int32(), False),
        pa.field("device", pa.string(), False),
        pa.field("consent", pa.bool_(), False),
        pa.field("intent", pa.float64(), False),
        pa.field("hesitation", pa.float64(), False),
        # How much of the hesitation is about size rather than price (events.synth.effects).
        pa.field("size_share", pa.float64(), False),
        pa.field("added_to_cart", pa.bool_(), False),
        pa.field("purchased", pa.bool_(), False),
        pa.field("abandoned", pa.bool_(), False),
        pa.field("p_abandon", pa.float64()),
        pa.field("drifted", pa.bool_(), False),
        pa.field("n_events", pa.int32(), False),
    ]
)
#: :data:`~events.contract.ARROW_SCHEMA` with every field nullable: Parquet files that
#: carry invalid rows (missing required fields) use it.
RELAXED_SCHEMA = pa.schema([f.with_nullable(True) for f in ARROW_SCHEMA])
