"""The demo's last step: live traffic through a real scorer, and the summary.

The scorer runs in its own process (``microtune serve``). Sessions of the
last generated day are replayed, shifted to now, over real HTTP: their events
go to ``POST /v1/events`` and a ``POST /v1/score`` follows each batch.
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
from rich.table import Table

from cli.app import progress
from core.settings import Settings

LIVE_SESSIONS = 300

# ---------------------------------------------------------------------------
# Live traffic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _replay_sessions(settings: Settings, now: datetime) -> list[list[dict[str, Any]]]:
    """Cart sessions of the last stored day, with new ids, shifted to end now."""
    from events.ingest import RawEventStore

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


def live_traffic(settings: Settings, console: Console) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = settings.paths.serving / "demo-serve.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    # The replay is one client sending every visitor's traffic: no per-client limit.
    unlimited = settings.override(
        serve={"rate_limit_score_per_min": 0, "rate_limit_events_per_min": 0}
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env={**os.environ, **unlimited.environment()},
        stdout=open(logfile, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_ready(url, server, logfile)
        console.print(
            f"scorer ready on {url} (log: {logfile}); rate limits off for the replay, "
            "which sends every visitor from one client"
        )
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
    with httpx.Client(base_url=url, timeout=10) as client, progress(console) as bar:
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


def print_summary(settings: Settings, f: dict[str, Any], console: Console) -> None:
    from cli.ops import ui_commands

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
