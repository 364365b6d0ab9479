"""Feature build throughput: raw Parquet to offline feature rows, against a DuckDB floor.

    python bench/bench_features.py [--events 1000000] [--repeat 3]

Both sides read the same raw event partitions. microtune's builder computes
every session feature as it stood after every event (one row per event, the
point-in-time table Feast joins against) and writes the day files. The floor
is a bare DuckDB GROUP BY that computes comparable per-session aggregates, one
row per session, i.e. strictly less work. Figures are medians of --repeat runs,
the two sides alternating, so that both see the same load on a shared machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import duckdb

from events.ingest import RawEventStore
from events.synth import GeneratorConfig, generate_events
from features import build_window, ceil_day, floor_day

FLOOR_SQL = """
SELECT session_id, count(*) AS event_count,
       sum(CASE WHEN event_type = 'hover' THEN 1 ELSE 0 END) AS hover_count,
       avg(CASE WHEN event_type = 'hover' THEN duration_ms END) AS hover_ms,
       avg(CASE WHEN event_type = 'scroll' THEN scroll_velocity END) AS scroll_velocity,
       max(scroll_depth) AS max_scroll_depth,
       sum(CASE WHEN event_type = 'click' THEN 1 ELSE 0 END) AS clicks,
       sum(CASE WHEN event_type = 'add_to_cart' THEN cart_value
                WHEN event_type = 'remove_from_cart' THEN -cart_value ELSE 0 END) AS cart_value,
       min(ts) AS first_ts, max(ts) AS last_ts
FROM read_parquet('{glob}', hive_partitioning = false)
WHERE consent
GROUP BY session_id
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    sessions = max(1, args.events // 34)
    events, _ = generate_events(GeneratorConfig(sessions=sessions, days=7, seed=11))
    with tempfile.TemporaryDirectory() as tmp:
        raw = RawEventStore(Path(tmp) / "raw")
        raw.append(events)
        start = floor_day(events.column("ts")[0].as_py())
        end = ceil_day(events.column("ts")[-1].as_py() + timedelta(seconds=1))
        n = events.num_rows
        ours, floor, cpu = [], [], []
        for i in range(args.repeat):
            t, c = time.perf_counter(), time.process_time()
            result = build_window(raw, Path(tmp) / f"off{i}", start, end)
            ours.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
            t = time.perf_counter()
            con = duckdb.connect()
            rows = con.sql(FLOOR_SQL.format(glob=f"{raw.root}/*/*.parquet")).to_arrow_table()
            floor.append(time.perf_counter() - t)
            con.close()
        ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    print(
        f"events: {n:,}  sessions: {sessions:,}  rows written: {result.session_rows:,} "
        f"(floor rows: {rows.num_rows:,})"
    )
    print(f"{'path':<44}{'median s':>10}{'events/s':>14}")
    print(f"{'microtune build_window (rows per event)':<44}{ours_s:>10.2f}{n / ours_s:>14,.0f}")
    print(f"{'floor: DuckDB GROUP BY (rows per session)':<44}{floor_s:>10.2f}{n / floor_s:>14,.0f}")
    print(
        f"ratio ours/floor: {ours_s / floor_s:.1f}x   target: >= 1,000,000 events/s   "
        f"(ours: median CPU {statistics.median(cpu):.2f} s over all threads; "
        f"runs {', '.join(f'{x:.2f}' for x in ours)} s)"
    )


if __name__ == "__main__":
    main()
