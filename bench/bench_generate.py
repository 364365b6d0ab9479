"""Benchmark of the event-log generator.

Times, for about ``--events`` events (one million by default), the median of
``--repeats`` runs of:

* generating the events and the oracle as Arrow tables (:func:`generate_events`),
* generating and writing a JSONL log (:func:`write_event_log`, ``fmt="jsonl"``),
* generating and writing a Parquet log (``fmt="parquet"``),
* generating and writing a JSONL log with ``ideal.parquet`` beside it (the ideal
  risk at every decision point, :mod:`events.synth.ideal`; not part of the target),

each run into a fresh temporary folder, and prints seconds and events per second
next to the target: a million events generated and written as JSONL in 30 s.

Usage::

    python bench/bench_generate.py [--events 1000000] [--repeats 3] [--seed 0]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from events.synth import GeneratorConfig, generate_events, write_event_log

TARGET_EVENTS = 1_000_000
TARGET_SECONDS = 30.0


def sessions_for(events: int, seed: int) -> int:
    """Session count that yields about ``events`` events, from a small sample."""
    sample = GeneratorConfig(sessions=5_000, seed=seed)
    table, _ = generate_events(sample)
    per_session = table.num_rows / sample.sessions
    return max(1, round(events / per_session))


def median_seconds(run: Callable[[Path], int], repeats: int) -> tuple[float, int]:
    """Median wall time of ``repeats`` runs, each given a fresh folder; and the events made."""
    times: list[float] = []
    made = 0
    for _ in range(repeats):
        with tempfile.TemporaryDirectory(prefix="bench-generate-") as folder:
            start = time.perf_counter()
            made = run(Path(folder))
            times.append(time.perf_counter() - start)
    return statistics.median(times), made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=TARGET_EVENTS, help="events to generate")
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement")
    parser.add_argument("--seed", type=int, default=0, help="generator seed")
    args = parser.parse_args()

    cfg = GeneratorConfig(sessions=sessions_for(args.events, args.seed), seed=args.seed)
    as_parquet = replace(cfg, fmt="parquet")
    cases: list[tuple[str, Callable[[Path], int]]] = [
        ("generate to Arrow", lambda _: generate_events(cfg)[0].num_rows),
        ("generate + write JSONL", lambda out: write_event_log(cfg, out, ideal=False).events),
        (
            "generate + write Parquet",
            lambda out: write_event_log(as_parquet, out, ideal=False).events,
        ),
        ("... and ideal.parquet", lambda out: write_event_log(cfg, out).events),
    ]
    print(f"sessions={cfg.sessions:,} days={cfg.days} seed={cfg.seed} repeats={args.repeats}")
    header = f"{'case':<26} {'events':>11} {'seconds':>9} {'events/s':>12}"
    print(header)
    print("-" * len(header))
    target_rate = TARGET_EVENTS / TARGET_SECONDS
    print(
        f"{'target (JSONL, baseline)':<26} {TARGET_EVENTS:>11,} {TARGET_SECONDS:>9.2f}"
        f" {target_rate:>12,.0f}"
    )
    for name, run in cases:
        seconds, made = median_seconds(run, args.repeats)
        print(f"{name:<26} {made:>11,} {seconds:>9.2f} {made / seconds:>12,.0f}")


if __name__ == "__main__":
    main()
