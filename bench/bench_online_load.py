"""Online-store load rate into SQLite: microtune's batched writer against `feast materialize`.

    python bench/bench_online_load.py [--entities 50000] [--repeat 3]

All paths load the same offline rows (the latest row of each session of the
session_behaviour view: every stored fold column):

* ours: stores.online_load.write_online into microtune's packed SQLite store
  (one row per entity), numpy columns packed without protobuf objects;
* feast materialize into the packed store: Feast's path (Parquet through
  Arrow and pandas to protobuf) ending in the packed store's online_write_batch;
* the baseline: feast materialize into Feast's own SQLite online store (one
  row per feature per entity), on the same registry.

Figures are medians of --repeat runs, in entity rows per second.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from core.settings import Settings
    from events.ingest import RawEventStore
    from events.synth import GeneratorConfig, generate_events
    from features import build_window, ceil_day, floor_day
    from stores.feature_store import apply_definitions, ensure_uci, open_store
    from stores.online_load import latest_per_entity, write_online

    s = Settings(home=Path(tempfile.mkdtemp(prefix="mt-bench-online-")))
    s.paths.ensure()
    events, _ = generate_events(GeneratorConfig(sessions=int(args.entities / 0.9), days=3, seed=2))
    raw = RawEventStore(s.paths.raw_events)
    raw.append(events)
    start = floor_day(events.column("ts")[0].as_py())
    end = ceil_day(events.column("ts")[-1].as_py() + timedelta(seconds=1))
    build_window(raw, s.paths.offline, start, end)
    ensure_uci(s)
    store = open_store(s)
    apply_definitions(s, store)
    stock = _stock_store(s)
    apply_definitions(s, stock, force=True)
    table = pq.read_table(s.paths.session_features)
    n = latest_per_entity(table, "session_id").num_rows
    times: dict[str, list[float]] = {"ours": [], "materialize": [], "stock": []}
    for _ in range(args.repeat):
        t = time.perf_counter()
        write_online(store, "session_behaviour", table, "session_id")
        times["ours"].append(time.perf_counter() - t)
        t = time.perf_counter()
        store.materialize(start, end, feature_views=["session_behaviour"])
        times["materialize"].append(time.perf_counter() - t)
        t = time.perf_counter()
        stock.materialize(start, end, feature_views=["session_behaviour"])
        times["stock"].append(time.perf_counter() - t)
    o, m, f = (statistics.median(times[k]) for k in ("ours", "materialize", "stock"))
    print(f"entities: {n:,}  columns: {len(store.get_feature_view('session_behaviour').features)}")
    print(f"{'path':<52}{'median s':>10}{'rows/s':>12}")
    print(f"{'microtune write_online into the packed store':<52}{o:>10.2f}{n / o:>12,.0f}")
    print(f"{'feast materialize into the packed store':<52}{m:>10.2f}{n / m:>12,.0f}")
    print(f"{'feast materialize into Feast SQLite (baseline)':<52}{f:>10.2f}{n / f:>12,.0f}")
    print(f"speed-up over the baseline: {f / o:.1f}x   target: >= 30,000 rows/s")


def _stock_store(s: Any) -> Any:
    """A FeatureStore on the same registry with Feast's own SQLite online store."""
    from feast import FeatureStore

    from core.settings import FEATURE_REPO
    from stores.feature_store import repo_config

    stock = {"type": "sqlite", "path": str(s.paths.feast / "online_stock.db")}
    return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(s, online_store=stock))


if __name__ == "__main__":
    main()
