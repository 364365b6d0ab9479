"""Online-store load rate into SQLite: microtune's batched writer against `feast materialize`.

    python bench/bench_online_load.py [--entities 50000] [--repeat 3]

Both paths load the same offline rows (the latest row of each session of the
session_behaviour view: every stored fold column) into the same SQLite online store:

* ours: flows.feaststore.write_online, numpy columns straight to protobuf
  values, handed to the online store's online_write_batch in batches;
* feast: FeatureStore.materialize over the same window (Feast's own path:
  reads the Parquet source, converts through Arrow and pandas to protobuf).

Figures are medians of --repeat runs, in entity rows per second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--entities", type=int, default=50_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp(prefix="mt-bench-online-"))
    os.environ["MICROTUNE_HOME"] = str(home)
    from flows.build import build_window, ceil_day, floor_day
    from flows.feaststore import (
        apply_definitions,
        ensure_uci,
        latest_per_entity,
        open_store,
        write_online,
    )
    from flows.generate import GeneratorConfig, generate_events
    from flows.ingest import RawEventStore
    from flows.settings import get_settings

    s = get_settings()
    s.export_env()
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
    table = pq.read_table(s.paths.session_features)
    n = latest_per_entity(table, "session_id").num_rows
    ours, feast = [], []
    for _ in range(args.repeat):
        t = time.perf_counter()
        write_online(store, "session_behaviour", table, "session_id")
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        store.materialize(start, end, feature_views=["session_behaviour"])
        feast.append(time.perf_counter() - t)
    o, f = statistics.median(ours), statistics.median(feast)
    print(f"entities: {n:,}  columns: {len(store.get_feature_view('session_behaviour').features)}")
    print(f"{'path':<40}{'median s':>10}{'rows/s':>12}")
    print(f"{'microtune write_online (batched)':<40}{o:>10.2f}{n / o:>12,.0f}")
    print(f"{'feast materialize (baseline)':<40}{f:>10.2f}{n / f:>12,.0f}")
    print(f"speed-up: {f / o:.1f}x   target: >= 30,000 rows/s")


if __name__ == "__main__":
    main()
