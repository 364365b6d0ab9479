"""Scoring latency and throughput over real HTTP, measured by wrk: ours, feast serve, the floor.

    python bench/bench_serving.py [--home DIR] [--duration 12] [--repeat 2]

Needs ``wrk`` (apt-get install wrk). Set-up: a home with trained and promoted
champions (built here from four days of generated events unless --home names
one), then 200 live sessions posted through ``POST /v1/events`` so that every
scored session has fresh features.

Measured side by side in one run, rounds alternating between servers. Each
server runs alone, pinned to core 0, while it is measured (an idle server's
timers would otherwise share its core), and ``wrk`` (one thread, closed loop)
runs on core 1. Each server gets 3 s of load before it is measured:

* ``ours``: ``microtune serve`` (one uvicorn worker), ``POST /v1/score``:
  features, LightGBM + SHAP contributions, river, the shipped policy (its
  learning arm takes 30% of the sessions), decision log, with the default
  durability (``log_fsync=interval``: written to the OS before the answer,
  fsynced every second);
* ``ours_noseg``: ``ours`` without the segment assignment
  (``MICROTUNE_SERVE__SEGMENTS=false``; the home has a registered segmenter):
  the baseline of what assigning a segment adds;
* ``ours_rules``: ``ours`` with the rules only (:data:`RULES_POLICY`: the
  shipped policy without its learning arm): the baseline of the learning
  arm's cost;
* ``ours_fsync``: the same with ``log_fsync=always`` (fsynced before the
  answer): the cost of disk-durable decisions;
* ``ours_bandit``: ``ours`` with a larger learning arm: the shipped rules,
  plus a ``policy: bandit`` variant taking 60% of the sessions (Vowpal Wabbit, five
  actions, :data:`BANDIT_POLICY`); every decision also asks the bandit for
  its distribution, for the decision log;
* ``ours_batches``: ``ours`` at c=1 while a 1,000-event ``POST /v1/events``
  arrives every 2.7 s; its p99 is set beside the idle p99 of the same round;
* ``feast``: ``feast serve`` (one worker, its defaults, which recycle the worker
  every 1,000 requests), ``POST /get-online-features`` for the same feature
  service (abandonment_v1), features only; ``feast_mr0`` the same with
  ``--max-requests 0``;
* floor: in the bench process, an online-store read plus a LightGBM predict
  (no HTTP, no decision), and Feast's in-process ``get_online_features``.

Also the freshness of live events: the time from sending ``POST /v1/events``
until the next ``POST /v1/score`` returns with the new event counted.

The per-client rate limits are turned off (one load generator plays every
visitor) and the run prints so. Figures are medians over --repeat rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from serving_load import LOAD_CORE, Batches, freshness, need_wrk, wrk
from serving_setup import (
    feast_serve_command,
    floor,
    post_live_sessions,
    probe,
    request_bodies,
    scorer_command,
    start,
    trained,
    wait_ready,
)

PORTS = {
    "ours": 18731,
    "feast": 18732,
    "ours_fsync": 18733,
    "feast_mr0": 18734,
    "ours_bandit": 18735,
    "ours_rules": 18736,
    "ours_noseg": 18737,
}
#: The shipped policy without its learning arm: the rule policy.
RULES_POLICY: dict[str, Any] = {
    "experiment": {
        "name": "bench-rules",
        "variants": {
            "control": {"weight": 0.1},
            "discount_10": {"weight": 0.45, "params": {"show_discount_popup": {"percent": 10}}},
            "discount_15": {"weight": 0.45, "params": {"show_discount_popup": {"percent": 15}}},
        },
    },
    "bandit": None,
}
#: The shipped policy's experiment, with a learning arm.
BANDIT_POLICY = {
    "experiment": {
        "name": "bench-learning",
        "variants": {
            "control": {"weight": 0.1},
            "discount_10": {"weight": 0.3},
            "learner": {"weight": 0.6, "policy": "bandit"},
        },
    },
    "bandit": {
        "actions": [
            {"action": "none"},
            {"action": "show_discount_popup", "params": {"percent": 10}},
            {"action": "highlight_size_guide"},
            {"action": "emphasize_cta"},
            {"action": "show_social_proof"},
        ],
        "numeric": ["risk", "cart_value", "price_hover_count", "image_zooms"],
        "categorical": ["device", "page_type"],
    },
}
#: Seconds of load, not recorded, after a server starts and before it is measured.
WARM_UP_S = 3.0
ROUTES = {"ours": "/v1/score", "feast": "/get-online-features"}
Results = dict[str, list[dict[str, Any]]]


def url(name: str) -> str:
    return f"http://127.0.0.1:{PORTS[name]}"


class Servers:
    """Starts one server at a time, so that none shares core 0 with the one measured."""

    def __init__(self, home: Path, work: Path) -> None:
        self.work = work
        self.env = {
            **os.environ,
            "MICROTUNE_HOME": str(home),
            "MICROTUNE_PROFILE": "embedded",
            "MICROTUNE_PROJECT": "microtune",
            # One load generator plays every visitor: the per-client rate limits are off.
            "MICROTUNE_SERVE__RATE_LIMIT_SCORE_PER_MIN": "0",
            "MICROTUNE_SERVE__RATE_LIMIT_EVENTS_PER_MIN": "0",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        }
        print("rate limits: off (MICROTUNE_SERVE__RATE_LIMIT_*_PER_MIN=0)", flush=True)
        self.proc: subprocess.Popen | None = None

    @contextmanager
    def running(self, name: str) -> Iterator[str]:
        """Server ``name`` on core 0 while in the block; its base URL."""
        port = PORTS[name]
        if name.startswith("feast"):
            cmd = feast_serve_command(port, max_requests=0 if name == "feast_mr0" else None)
            health = "/health"
        else:
            cmd, health = scorer_command(port), "/readyz"
        env = dict(self.env)
        if name == "ours_fsync":
            env["MICROTUNE_SERVE__LOG_FSYNC"] = "always"
        if name == "ours_bandit":
            env["MICROTUNE_SERVE__POLICY"] = str(self.policy_file(BANDIT_POLICY, "bandit"))
        if name == "ours_rules":
            env["MICROTUNE_SERVE__POLICY"] = str(self.policy_file(RULES_POLICY, "rules"))
        if name == "ours_noseg":
            env["MICROTUNE_SERVE__SEGMENTS"] = "false"
        self.proc = start(cmd, env, self.work / f"{name}.log")
        try:
            wait_ready(url(name) + health, self.proc)
            yield url(name)
        finally:
            self.stop()

    def policy_file(self, changes: dict[str, Any], name: str) -> Path:
        """The shipped policy with ``changes`` to its top-level sections."""
        import yaml

        from serving.policy_doc import DEFAULT_POLICY

        doc = {**yaml.safe_load(DEFAULT_POLICY.read_text()), **changes}
        doc = {k: v for k, v in doc.items() if v is not None}
        path = self.work / f"{name}-policy.yaml"
        path.write_text(yaml.safe_dump(doc))
        return path

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=60)
            self.proc = None


#: The servers of a round, in order; ``ours_noseg`` right after ``ours``.
SERVERS = ("ours", "ours_noseg", "feast", "ours_fsync", "feast_mr0", "ours_bandit", "ours_rules")


def measure(servers: Servers, bodies: tuple[Path, Path], repeat: int, duration: float) -> Results:
    """Rounds: each server alone, ``wrk`` at c=1 and c=16; ours also under event batches."""
    results: Results = {}

    def record(key: str, out: dict[str, Any], r: int) -> None:
        results.setdefault(key, []).append(out)
        print(
            f"round {r + 1} {key:17s} p50 {out['p50_ms']:6.2f}  p90 {out['p90_ms']:6.2f}  "
            f"p99 {out['p99_ms']:6.2f}  max {out['max_ms']:7.2f} ms  {out['rps']:6.0f} req/s  "
            f"non-2xx {out['non2xx']}",
            flush=True,
        )

    for r in range(repeat):
        for name in SERVERS:
            side = "feast" if name.startswith("feast") else "ours"
            body = bodies[0] if side == "ours" else bodies[1]
            with servers.running(name) as base:
                wrk(base + ROUTES[side], body, 1, WARM_UP_S)  # caches, first-call paths: not timed
                for conc in (1, 16):
                    record(f"{name}_c{conc}", wrk(base + ROUTES[side], body, conc, duration), r)
                if name == "ours":
                    with Batches(base) as batches:
                        out = wrk(base + ROUTES["ours"], bodies[0], 1, duration)
                    record("ours_batches_c1", {**out, **batches.summary()}, r)
    return results


def report(results: Results, fl: dict[str, float], fresh: dict[str, float], args: Any) -> None:
    def med(key: str, field: str) -> float:
        return statistics.median(o[field] for o in results[key])

    print(f"\nscoring over HTTP (wrk), medians of {args.repeat} rounds of {args.duration:g} s")
    print(f"{'':18s}{'p50 ms':>9s}{'p90 ms':>9s}{'p99 ms':>9s}{'req/s':>9s}{'non-2xx':>9s}")
    for key in results:
        print(
            f"{key:18s}{med(key, 'p50_ms'):9.2f}{med(key, 'p90_ms'):9.2f}"
            f"{med(key, 'p99_ms'):9.2f}{med(key, 'rps'):9.0f}"
            f"{sum(o['non2xx'] + o['socket_errors'] for o in results[key]):9d}"
        )
    print(f"{'floor (in-proc)':18s}{fl['floor_p50_ms']:9.2f}{'':9s}{fl['floor_p99_ms']:9.2f}")
    print(
        f"{'feast in-proc':18s}{fl['feast_inprocess_p50_ms']:9.2f}{'':9s}"
        f"{fl['feast_inprocess_p99_ms']:9.2f}\n"
    )
    idle, loaded = med("ours_c1", "p99_ms"), med("ours_batches_c1", "p99_ms")
    always = med("ours_fsync_c16", "rps") / med("ours_c16", "rps")
    lines = [
        f"goal p99 <= 1.5 ms at c=1 (wrk):          {idle:.2f} ms",
        f"goal p99 under 1,000-event batches <= 2x: {loaded:.2f} ms = {loaded / idle:.2f}x idle "
        f"(batch acknowledged in {med('ours_batches_c1', 'batch_p50_ms'):.0f} ms, median)",
        f"log_fsync=always vs interval:             p99 c=1 {med('ours_fsync_c1', 'p99_ms'):.2f}"
        f" vs {idle:.2f} ms, req/s c=16 x{always:.2f}",
    ]
    rules_p99, rules_rps = med("ours_rules_c1", "p99_ms"), med("ours_rules_c16", "rps")
    for key, share in (("ours", "30%"), ("ours_bandit", "60%")):
        lines.append(
            f"learning arm on {share} ({key}): p99 c=1 {med(f'{key}_c1', 'p99_ms'):.2f} ms "
            f"(goal <= 1.5; rules only {rules_p99:.2f}), req/s c=16 "
            f"x{med(f'{key}_c16', 'rps') / rules_rps:.2f} the rules' (goal >= 0.90)"
        )
    for c in (1, 16):
        ours = med(f"ours_c{c}", "p99_ms")
        for feast in ("feast", "feast_mr0"):
            theirs = med(f"{feast}_c{c}", "p99_ms")
            lines.append(
                f"p99 ours / {feast:9s} at c={c:<2d}:          {ours / theirs:.2f}x "
                f"({ours:.2f} vs {theirs:.2f} ms)"
            )
    seg, noseg = med("ours_c1", "p50_ms"), med("ours_noseg_c1", "p50_ms")
    lines.append(
        f"segment assignment, p50 c=1:              {seg - noseg:+.3f} ms ({seg:.3f} with, "
        f"{noseg:.3f} without; goal <= 0.05 ms)"
    )
    lines.append(
        f"p50 ours / in-process floor, c=1:         "
        f"{med('ours_c1', 'p50_ms') / fl['floor_p50_ms']:.1f}x"
    )
    lines.append(
        f"freshness events -> next score:           p50 {fresh['p50_ms']:.2f} ms, "
        f"p99 {fresh['p99_ms']:.2f} ms (goal p99 <= 20 ms)"
    )
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--home", type=Path, help="A home with promoted champions; built there if missing."
    )
    ap.add_argument("--duration", type=float, default=12.0, help="Seconds per wrk run.")
    ap.add_argument("--repeat", type=int, default=2, help="Rounds; figures are medians.")
    args = ap.parse_args()
    need_wrk()
    # This process (the batch sender, the in-process floor) stays off the servers' core.
    os.sched_setaffinity(0, {LOAD_CORE})
    work = Path(tempfile.mkdtemp(prefix="mt-bench-serve-"))
    home = trained(args.home, work)
    servers = Servers(home, work)
    try:
        with servers.running("ours") as base:
            post_live_sessions(base, datetime.now(UTC))
            bodies = request_bodies(work, datetime.now(UTC))
            probe(base + ROUTES["ours"], bodies[0], degraded_ok=False, segment=True)
        with servers.running("feast") as base:
            probe(base + ROUTES["feast"], bodies[1])
        results = measure(servers, bodies, args.repeat, args.duration)
        with servers.running("ours") as base:
            fresh = freshness(base)
    finally:
        servers.stop()
    report(results, floor(home), fresh, args)


if __name__ == "__main__":
    main()
