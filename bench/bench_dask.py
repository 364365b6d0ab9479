"""The feature build on Dask against the local build, on one generated raw store.

    python bench/bench_dask.py [--events 20000000] [--partitions 16] [--limit 4GB]

Generates ``--events`` events (a week) into a raw store of its own, then
times the build of the whole window three ways, each in a fresh process so
that its peak memory is its own:

* the local engine (``build_window``: one process, threads);
* Dask with 1 worker of one thread (a ``LocalCluster``, ``--limit`` memory);
* Dask with 2 workers of one thread each.

Printed: seconds, events/s, and the peak resident memory of the process
(local) or of each worker (Dask), with the speed-up of 2 workers over 1
(goal >= 1.5) and the Dask builds' rows beside the local build's.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(mode: str, raw_dir: Path, out: Path, partitions: int, limit: str) -> dict[str, Any]:
    """One build, in this process; its figures."""
    from core.settings import Settings
    from events.raw_store import RawEventStore
    from features import build_window, ceil_day, floor_day
    from features.distributed import build_window_dask

    raw = RawEventStore(raw_dir)
    lo, hi = raw.time_range()  # type: ignore[misc]
    start, end = floor_day(lo), ceil_day(hi + timedelta(seconds=1))
    if mode == "local":
        t = time.perf_counter()
        result = build_window(raw, out, start, end)
        return {"s": time.perf_counter() - t, "rows": result.session_rows, "peak_mb": [_peak_mb()]}
    from core.cluster import dask_client

    workers = int(mode[-1])
    settings = Settings(
        home=out.parent / f"home-{mode}",
        dask={"address": "local", "local_workers": workers, "memory_limit": limit},
    )
    with dask_client(settings) as client:
        t = time.perf_counter()
        result = build_window_dask(
            client, raw, out, settings.paths.scratch, start, end, partitions=partitions
        )
        took = time.perf_counter() - t
        peaks = sorted(client.run(_peak_mb).values())
    return {"s": took, "rows": result.session_rows, "peak_mb": peaks}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--events", type=int, default=20_000_000)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--limit", default="4GB", help="Memory limit of each Dask worker.")
    ap.add_argument(
        "--engines",
        default="local,dask1,dask2",
        help="Which builds to run (a 50M-event window does not fit one process: dask2).",
    )
    ap.add_argument("--run", help=argparse.SUPPRESS)
    ap.add_argument("--raw", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.run:  # a child: one build, its figures as one JSON line
        print(json.dumps(run(a.run, a.raw, a.out, a.partitions, a.limit)))
        return
    from events.ingest import RawEventStore
    from events.synth import GeneratorConfig, generate_events

    work = Path(tempfile.mkdtemp(prefix="mt-bench-dask-"))
    raw = RawEventStore(work / "raw")
    t = time.perf_counter()
    left, seed = a.events, 0
    while left > 0:  # in slices of about 2M events, so generation stays small in memory
        chunk = min(left, 2_000_000)
        events, _ = generate_events(
            GeneratorConfig(sessions=max(1, chunk // 34), days=7, seed=seed)
        )
        raw.append(events)
        left -= events.num_rows
        seed += 1
    size = sum(f.stat().st_size for f in raw.part_files()) / 1e6
    n = a.events - left
    print(
        f"{n:,} events generated and stored in {time.perf_counter() - t:.0f} s "
        f"(raw store {size:,.0f} MB); partitions {a.partitions}, worker limit {a.limit}"
    )
    figures = {}
    for mode in a.engines.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--run",
            mode,
            "--raw",
            str(raw.root),
            "--out",
            str(work / f"out-{mode}"),
            "--partitions",
            str(a.partitions),
            "--limit",
            a.limit,
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        figures[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        f = figures[mode]
        peaks = ", ".join(f"{p:,.0f}" for p in f["peak_mb"])
        print(
            f"{mode:<6} {f['s']:8.1f} s  {n / f['s']:>12,.0f} events/s  rows {f['rows']:,}  "
            f"peak MB per process: {peaks}",
            flush=True,
        )
    if {"dask1", "dask2"} <= set(figures):
        speedup = figures["dask1"]["s"] / figures["dask2"]["s"]
        print(f"2 workers over 1: x{speedup:.2f} (goal >= 1.5)")
    if {"local", "dask2"} <= set(figures):
        ratio = figures["local"]["s"] / figures["dask2"]["s"]
        print(f"Dask 2 workers against the local engine: x{ratio:.2f}")


if __name__ == "__main__":
    main()
