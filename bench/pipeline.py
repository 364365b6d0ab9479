"""The set-up the model and drift benchmarks share: a generated log, built and applied.

Each benchmark runs in a fresh temporary home, so that runs never see each
other's state.
"""

from __future__ import annotations

import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from core.settings import Settings
    from events.synth import GeneratorConfig


def fresh_home(prefix: str) -> Settings:
    """Settings on a new temporary home (the environment's other settings kept)."""
    from core.settings import Settings

    s = Settings(home=Path(tempfile.mkdtemp(prefix=prefix)))
    s.paths.ensure()
    return s


def built_store(s: Settings, cfg: GeneratorConfig) -> tuple[Settings, Any]:
    """Generate ``cfg`` into the home of ``s``, ingest it, build every day and register Feast.

    Returns the settings and the FeatureStore, ready for ``training_frame``.
    """
    from events.ingest import ingest_files
    from events.raw_store import RawEventStore
    from events.synth import write_event_log
    from features import build_window, ceil_day, floor_day
    from stores.feature_store import apply_definitions, ensure_uci, open_store

    out = s.home / "generated" / "bench"
    write_event_log(cfg, out)
    raw = RawEventStore(s.paths.raw_events)
    ingest_files([out / "events"], raw, s.paths.quarantine)
    lo, hi = raw.time_range()  # type: ignore[misc]
    build_window(raw, s.paths.offline, floor_day(lo), ceil_day(hi + timedelta(seconds=1)))
    ensure_uci(s)
    store = open_store(s)
    apply_definitions(s, store)
    return s, store
