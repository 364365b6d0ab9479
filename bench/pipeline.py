"""The set-up the model and drift benchmarks share: a generated log, built and applied.

Each benchmark runs in a fresh temporary home, so that runs never see each
other's state.
"""

from __future__ import annotations

import os
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flows.generate import GeneratorConfig
    from flows.settings import Settings


def fresh_home(prefix: str) -> Path:
    """A new temporary MICROTUNE_HOME, exported for everything started afterwards."""
    home = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ["MICROTUNE_HOME"] = str(home)
    return home


def built_store(cfg: GeneratorConfig) -> tuple[Settings, Any]:
    """Generate ``cfg`` into the home, ingest it, build every day and register Feast.

    Returns the settings and the FeatureStore, ready for ``training_frame``.
    """
    from flows.build import build_window, ceil_day, floor_day
    from flows.feaststore import apply_definitions, ensure_uci, open_store
    from flows.generate import write_event_log
    from flows.ingest import RawEventStore, ingest_files
    from flows.settings import get_settings

    get_settings.cache_clear()
    s = get_settings()
    s.export_env()
    s.paths.ensure()
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
