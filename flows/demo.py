"""``microtune demo``: the whole cycle end to end on the embedded profile.

1. Generate a realistic week of events ending yesterday: invalid rows,
   duplicates, and drift (behaviour and its link to abandonment) from the
   sixth day on.
2. The days before the drift arrive first: the ``build_features`` flow
   ingests, validates, builds and materializes them.
3. The ``train`` flow trains LightGBM and river and registers them in MLflow;
   the ``promote`` flow gates them and promotes the champions.
4. The drifted days arrive: ``build_features`` again.
5. The ``check_drift`` flow compares them with the champion's training window
   (Evidently HTML report, verdict). The demo does not retrain on a failing
   verdict; the scheduled deployment does (``docs/deployments.md``).
6. ``microtune serve`` starts in its own process. Sessions of the last day are
   replayed live, shifted to now, through real HTTP: their events go to
   ``POST /v1/events`` and a ``POST /v1/score`` follows each batch.
7. A summary is printed and the server is stopped.
"""

from __future__ import annotations

import itertools
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from flows.settings import Settings

STEPS = 7
LIVE_SESSIONS = 300


def _step(console: Console, n: int, title: str) -> None:
    console.rule(f"[bold]{n}/{STEPS} {title}")


def _progress(console: Console) -> Progress:
    from flows.cli import _progress as progress_bar

    return progress_bar(console)


def run_demo(
    settings: Settings,
    *,
    sessions: int,
    days: int,
    seed: int,
    bad_rate: float,
    console: Console,
    drift_day: int | None = None,
) -> dict[str, Any]:
    """Run the demo and print its summary; returns the figures for tests."""
    from flows.generate import GeneratorConfig, write_event_log

    t0 = time.perf_counter()
    if any(settings.paths.raw_events.glob("date=*")):
        console.print(
            f"[yellow]{settings.home} already holds events: rows seen before count as "
            "duplicates and the new models are gated against the current champions. "
            "`make clean` (or a new MICROTUNE_HOME) starts from scratch.[/yellow]"
        )
    drift_day = max(days - 2, 1) if drift_day is None else drift_day
    first_day = (datetime.now(UTC) - timedelta(days=days)).date()
    out = settings.home / "generated" / f"seed-{seed}-{first_day.isoformat()}"
    cfg = GeneratorConfig(
        sessions=sessions,
        days=days,
        seed=seed,
        start=first_day,
        bad_rate=bad_rate,
        drift_day=drift_day,
    )
    _step(console, 1, f"generate ({days} days, drift from day {drift_day + 1})")
    with _progress(console) as bar:
        task = bar.add_task("events", total=None)
        log = write_event_log(
            cfg, out, lambda done, total: bar.update(task, completed=done, total=total)
        )
    console.print(
        f"{log.events:,} events, {log.sessions:,} sessions, {log.bad_rows:,} invalid rows, "
        f"{log.duplicates:,} duplicates -> {out}"
    )
    drift_start = (first_day + timedelta(days=drift_day)).isoformat()
    early = [str(p) for p in log.files if p.name[:10] < drift_start]
    late = [str(p) for p in log.files if p.name[:10] >= drift_start]

    from flows.drift_flow import check_drift
    from flows.feature_flow import build_features
    from flows.model_flows import promote, train

    _step(console, 2, "build_features: the days before the drift")
    first = build_features(inbox=early)
    _step(console, 3, "train: LightGBM and river, tracked in MLflow")
    trained = train(seed=seed)
    _step(console, 4, "promote: the gate")
    promoted = promote()
    _step(console, 5, "build_features: the drifted days arrive")
    second = build_features(inbox=late)
    _step(console, 6, "check_drift: the new days against the champion's training window")
    drift = check_drift(window_hours=48.0, retrain_on_fail=False, seed=seed)
    _step(console, 7, "serve: live events and scores through HTTP")
    live = _live(settings, console)

    accepted = first.ingest["accepted"] + second.ingest["accepted"]
    rejected: Counter[str] = Counter(first.ingest["rejected"])
    rejected.update(second.ingest["rejected"])
    figures = {
        "events": log.events,
        "accepted": accepted,
        "duplicates": first.ingest["duplicates"] + second.ingest["duplicates"],
        "rejected": dict(rejected),
        "train": trained,
        "promote": promoted,
        "drift": drift,
        "live": live,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    _print_summary(settings, figures, console)
    return figures


# ---------------------------------------------------------------------------
# Live traffic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay_sessions(settings: Settings, now: datetime) -> list[list[dict[str, Any]]]:
    """Cart sessions of the last stored day, with new ids, shifted to end now."""
    from flows.ingest import RawEventStore

    raw = RawEventStore(settings.paths.raw_events)
    span = raw.time_range()
    assert span is not None
    rows = raw.read(span[1] - timedelta(hours=12), span[1] + timedelta(seconds=1)).to_pylist()
    by_session: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_session.setdefault(r["session_id"], []).append(r)
    chosen = [
        evs
        for evs in by_session.values()
        if any(e["event_type"] == "add_to_cart" for e in evs) and len(evs) >= 6
    ][:LIVE_SESSIONS]
    out = []
    for evs in chosen:
        evs.sort(key=lambda e: e["ts"])
        shift = now - evs[-1]["ts"]
        out.append(
            [
                {
                    **e,
                    "event_id": f"live-{e['event_id']}",
                    "session_id": f"live-{e['session_id']}",
                    "ts": (e["ts"] + shift).isoformat(),
                }
                for e in evs
            ]
        )
    return out


def _live(settings: Settings, console: Console) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = settings.paths.serving / "demo-serve.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    server = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "serve", "--port", str(port)],
        env={**os.environ, "MICROTUNE_HOME": str(settings.home)},
        stdout=open(logfile, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, server, logfile)
        console.print(f"scorer ready on {url} (log: {logfile})")
        return _traffic(settings, url, console)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def _wait_ready(url: str, server: subprocess.Popen[bytes], logfile: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the scorer exited ({server.returncode}); see {logfile}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the scorer was not ready after 180 s; see {logfile}")


def _traffic(settings: Settings, url: str, console: Console) -> dict[str, Any]:
    sessions = _replay_sessions(settings, datetime.now(UTC))
    latencies: list[float] = []
    actions: Counter[tuple[str, str]] = Counter()
    degraded = events_accepted = events_rejected = 0
    with httpx.Client(base_url=url, timeout=10) as client, _progress(console) as bar:
        before = client.get("/v1/models").json()["river_learner"]["learned"] or 0
        task = bar.add_task("live sessions", total=len(sessions))
        for evs in sessions:
            # Each session arrives in three batches, with a score after each.
            cut = [0, len(evs) // 3, 2 * len(evs) // 3, len(evs)]
            for lo, hi in itertools.pairwise(cut):
                if hi <= lo:
                    continue
                sent = client.post("/v1/events", json={"events": evs[lo:hi]}).json()
                events_accepted += sent["accepted"]
                events_rejected += len(sent["rejected"])
                body = {
                    "session_id": evs[0]["session_id"],
                    "user_id": evs[0]["user_id"],
                    "context": {
                        "device": evs[hi - 1]["device"],
                        "page_type": evs[hi - 1]["page_type"],
                    },
                }
                t = time.perf_counter()
                r = client.post("/v1/score", json=body)
                latencies.append(time.perf_counter() - t)
                out = r.json()
                degraded += bool(out["degraded"])
                for a in out["decision"]["actions"]:
                    actions[(a["action"], out["decision"]["variant"])] += 1
            bar.advance(task)
        time.sleep(2.5)  # one learner tick after the last purchase
        models = client.get("/v1/models").json()
    latencies.sort()
    n = len(latencies)
    return {
        "sessions": len(sessions),
        "scores": n,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "degraded": degraded,
        "events_accepted": events_accepted,
        "events_rejected": events_rejected,
        "actions": {f"{a} / {v}": c for (a, v), c in sorted(actions.items())},
        "champions": {k: v["version"] for k, v in models["models"].items()},
        "river_live_labels": (models["river_learner"]["learned"] or 0) - before,
        "decision_log": str(settings.paths.decisions),
    }


# ---------------------------------------------------------------------------
# Summary


def _print_summary(settings: Settings, f: dict[str, Any], console: Console) -> None:
    from flows.cli import ui_commands

    t = Table(title="microtune demo")
    t.add_column("figure")
    t.add_column("value", overflow="fold")
    t.add_row("events generated", f"{f['events']:,}")
    t.add_row("rows accepted", f"{f['accepted']:,}")
    t.add_row("duplicates dropped", f"{f['duplicates']:,}")
    t.add_row("rows rejected", f"{sum(f['rejected'].values()):,} ({len(f['rejected'])} reasons)")
    tr = f["train"]
    t.add_row("LightGBM hold-out ROC AUC", f"{tr['lgbm']['test_roc_auc']:.4f}")
    if tr.get("oracle_auc") is not None:
        t.add_row("oracle AUC, same rows", f"{tr['oracle_auc']:.4f}")
    t.add_row("LightGBM hold-out ECE", f"{tr['lgbm']['test_ece']:.4f}")
    t.add_row("river progressive AUC", f"{tr['river']['test_progressive_roc_auc']:.4f}")
    for name, d in f["promote"]["decisions"].items():
        failed = [c["name"] for c in d["checks"] if not c["passed"]]
        verdict = "promoted" if d["promote"] else f"refused ({', '.join(failed)})"
        t.add_row(f"gate: {name}", verdict)
    live = f["live"]
    for name, version in live["champions"].items():
        t.add_row(f"champion: {name}", f"v{version}" if version else "none")
    v = f["drift"]["verdict"]
    t.add_row("drift verdict", f"{v['status']}: {v.get('summary', '')}"[:120])
    t.add_row(
        "live traffic",
        f"{live['sessions']} sessions, {live['events_accepted']:,} events, "
        f"{live['scores']:,} scores",
    )
    if live["p50_ms"] is not None:
        t.add_row(
            "scoring latency (HTTP)", f"p50 {live['p50_ms']:.2f} ms, p99 {live['p99_ms']:.2f} ms"
        )
    t.add_row(
        "degraded answers (no stored features: sessions without consent)", f"{live['degraded']:,}"
    )
    for key, n in live["actions"].items():
        t.add_row(f"decisions: {key}", f"{n:,}")
    t.add_row("river live labels learnt", f"{live['river_live_labels']:,}")
    t.add_row("took", f"{f['seconds']} s")
    t.add_row("drift report", f["drift"]["report"])
    t.add_row("decision log", live["decision_log"])
    t.add_row("training plots", str(Path(tr["plots"][0]).parent) if tr.get("plots") else "-")
    t.add_row("MLflow", settings.tracking_uri)
    t.add_row("quarantine", str(settings.paths.quarantine))
    console.print(t)
    console.print("Look around: `microtune serve`, and the UIs on this home:")
    for line in ui_commands(settings):
        console.print(f"  {line}")
