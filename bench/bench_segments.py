"""What the segment assignment adds to a decision, and what the segment flow's fit costs.

Prints, from one run:

* the live assignment of one session as the scorer does it (the behaviour vector
  from the stored row, the whitened projection, the nearest centroid), median
  over 20,000 calls, beside the issue's budget of 0.05 ms per ``/v1/score``;
* the same for the batch assignment, per row, over the window's sessions;
* the fit of both methods with the bootstrap on the window (6,000 generated
  sessions over 3 days), median of 3.

Run: ``python bench/bench_segments.py``.
"""

from __future__ import annotations

import statistics
import time

from events.synth import GeneratorConfig
from events.synth.generate import generate_events
from feature_repo.features import SEGMENT_INPUTS
from feature_repo.segment_vector import segment_vector, segment_vectors
from features.sessions import session_features
from models.segment_quality import bootstrap_stability, fit_both
from models.segment_run import TERMS
from stores.online_load import latest_per_entity

BUDGET_MS = 0.05


def main() -> None:
    events, _ = generate_events(GeneratorConfig(sessions=6000, days=3, seed=1))
    last = latest_per_entity(session_features(events), "session_id")
    columns = {c: last.column(c).to_numpy(zero_copy_only=False) for c in SEGMENT_INPUTS}
    x = segment_vectors(columns)
    fits = []
    for _ in range(3):
        t = time.perf_counter()
        both = fit_both(x, TERMS, seed=0, ks=tuple(range(4, 11)))
        bootstrap_stability(x, both.kept, rounds=5, seed=0)
        fits.append(time.perf_counter() - t)
    seg = both.kept
    rows = [{c: float(columns[c][i]) for c in SEGMENT_INPUTS} for i in range(len(x))]
    times = []
    for i in range(20_000):
        row = rows[i % len(rows)]
        t = time.perf_counter_ns()
        seg.assign_row(segment_vector(row))
        times.append(time.perf_counter_ns() - t)
    live_ms = statistics.median(times) / 1e6
    t = time.perf_counter()
    seg.assign(x)
    batch_us = (time.perf_counter() - t) / len(x) * 1e6
    print(f"sessions clustered: {len(x):,}; kept {seg.method}, k = {seg.k}")
    print(
        f"live assignment of one session: median {live_ms:.4f} ms "
        f"(budget {BUDGET_MS} ms per /v1/score: {live_ms / BUDGET_MS:.2f} of it)"
    )
    print(f"batch assignment: {batch_us:.3f} us per session")
    print(f"fit, both methods and 5 bootstrap refits: median {statistics.median(fits):.2f} s")


if __name__ == "__main__":
    main()
