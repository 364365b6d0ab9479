"""A command's fixed cost: imports and the Prefect server, beside the work it wraps.

    python bench/bench_cli.py [--sessions 44000] [--repeat 3]

One home holds a generated log (about 25 events a session: 44,000 sessions
are about 1.1M events), ingested and built once before timing. Then, in one
run, each a median of --repeat:

* ``microtune --help``: the command line's own imports;
* ``microtune features build`` with no server: Prefect starts a temporary
  local server inside the command (the baseline);
* the same with ``microtune server`` running for the home: the command uses it;
* the work the command wraps, in this process: the window build and the
  online load (``build_window`` and ``write_online``), which the flow runs.

A command's fixed cost is its wall time minus that work. Goal: at most 5 s
when a server runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

BIN = Path(sys.executable).parent


def timed(cmd: list[str], env: dict[str, str]) -> float:
    t = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - t
    if done.returncode != 0:
        raise RuntimeError(f"{cmd} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    return elapsed


def the_work(settings: object) -> float:
    """The build and the online load of every stored day, in this process (seconds)."""
    from core.settings import Settings
    from events.raw_store import RawEventStore
    from feature_repo.features import SESSION_KEY, SESSION_VIEW, USER_KEY, USER_VIEW
    from features import build_window, ceil_day, floor_day, read_offline
    from stores.feature_store import open_store
    from stores.online_load import write_online

    assert isinstance(settings, Settings)
    store = open_store(settings)
    raw = RawEventStore(settings.paths.raw_events)
    span = raw.time_range()
    assert span is not None
    lo, hi = floor_day(span[0]), ceil_day(span[1] + timedelta(seconds=1))
    t = time.perf_counter()
    build_window(raw, settings.paths.offline, lo, hi)
    for view, key, folder in (
        (SESSION_VIEW, SESSION_KEY, settings.paths.session_features),
        (USER_VIEW, USER_KEY, settings.paths.user_features),
    ):
        table = read_offline(folder, start=lo)
        if table is not None:
            write_online(store, view, table, key)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", type=int, default=44_000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    from core.settings import Settings
    from events.ingest import ingest_files
    from events.raw_store import RawEventStore
    from events.synth import GeneratorConfig, write_event_log
    from flows.server import free_port, running_server

    home = Path(tempfile.mkdtemp(prefix="mt-bench-cli-"))
    settings = Settings(home=home)
    settings.paths.ensure()
    log = write_event_log(GeneratorConfig(sessions=args.sessions, days=7, seed=0), home / "log")
    ingest_files([home / "log" / "events"], RawEventStore(settings.paths.raw_events), home / "q")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MICROTUNE_", "PREFECT_"))},
        **settings.environment(),
    }
    cli = [str(BIN / "microtune")]
    build = [*cli, "features", "build"]
    print(f"{log.events:,} events of {log.sessions:,} sessions in {home}", flush=True)
    timed(build, env)  # registers the feature repo once; the timed runs find it unchanged

    runs: dict[str, list[float]] = {"help": [], "temporary": [], "running": [], "work": []}
    port = free_port()
    server = subprocess.Popen(
        [*cli, "server", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while running_server(settings) is None:
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("`microtune server` did not come up")
            time.sleep(0.5)
        for _ in range(args.repeat):
            runs["help"].append(timed([*cli, "--help"], env))
            runs["running"].append(timed(build, env))
            runs["work"].append(the_work(settings))
    finally:
        server.terminate()
        server.wait(timeout=60)
    for _ in range(args.repeat):
        runs["temporary"].append(timed(build, env))

    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\nmedians of {args.repeat} runs, seconds")
    print(f"{'microtune --help (imports of the command line)':<58}{med['help']:>8.2f}")
    print(f"{'the work: build_window + write_online, in process':<58}{med['work']:>8.2f}")
    for key, label in (
        ("temporary", "features build, temporary Prefect server (baseline)"),
        ("running", "features build, `microtune server` running"),
    ):
        print(f"{label:<58}{med[key]:>8.2f}   fixed cost {med[key] - med['work']:>6.2f}")
    fixed = med["running"] - med["work"]
    print(
        f"\nfixed cost with a server running: {fixed:.2f} s (goal <= 5 s); "
        f"without: {med['temporary'] - med['work']:.2f} s"
    )


if __name__ == "__main__":
    main()
