"""The demo's last steps: simulated visitors through a real scorer, and the summary.

The scorer runs in its own process (``microtune serve``). Simulated visitors
(:mod:`simulation`) send their events over real HTTP, are scored, and answer
the decision as the world's true effects say; their truth is kept beside.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from cli.app import progress
from core.settings import Settings

#: Visitors simulated live over HTTP: enough for an experiment's intervals to mean
#: something. They are the cart sessions of a generated day of LIVE_SESSIONS.
LIVE_VISITORS = 5_000
LIVE_SESSIONS = 18_000
LIVE_SEED = 1_007

# ---------------------------------------------------------------------------
# Live traffic


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def live_traffic(
    settings: Settings, console: Console, visitors: int = LIVE_VISITORS
) -> dict[str, Any]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    logfile = settings.paths.serving / "demo-serve.log"
    logfile.parent.mkdir(parents=True, exist_ok=True)
    # The replay is one client sending every visitor's traffic: no per-client limit.
    # The demo reads the learner's state from the admin route, with a token of its
    # own unless the home has one.
    token = settings.serve.admin_token or secrets.token_urlsafe(24)
    unlimited = settings.override(
        serve={
            "rate_limit_score_per_min": 0,
            "rate_limit_events_per_min": 0,
            "admin_token": token,
        }
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "serve", "--port", str(port)],
        env={**os.environ, **unlimited.environment()},
        stdout=open(logfile, "wb"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
    )
    try:
        wait_ready(url, server, logfile)
        console.print(
            f"scorer ready on {url} (log: {logfile}); rate limits off for the replay, "
            "which sends every visitor from one client"
        )
        return _traffic(settings, url, console, token, visitors)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()


def wait_ready(
    url: str, server: subprocess.Popen[Any], logfile: Path | None = None, timeout_s: float = 180
) -> None:
    """Until the scorer ``server`` started answers 200 on ``url``'s ``/readyz``; an error
    as soon as it exits (its log is ``logfile``)."""
    see = f"; see {logfile}" if logfile is not None else ""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the scorer exited ({server.returncode}){see}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the scorer was not ready after {timeout_s:.0f} s{see}")


def _traffic(
    settings: Settings, url: str, console: Console, token: str, visitors: int
) -> dict[str, Any]:
    from events.synth import GeneratorConfig
    from simulation.run import HttpChannel, simulate

    world = GeneratorConfig(sessions=LIVE_SESSIONS, days=1, seed=LIVE_SEED)
    channel = HttpChannel(url)
    admin = {"Authorization": f"Bearer {token}"}
    try:
        models = channel.client.get("/v1/admin/models", headers=admin).json()
        before = models["river_learner"]["learned"] or 0
        with progress(console) as bar:
            task = bar.add_task("simulated visitors", total=visitors)
            sim = simulate(
                channel,
                world,
                settings.paths.home / "simulation",
                limit=visitors,
                on_visitor=lambda: bar.advance(task),
            )
        time.sleep(2.5)  # one learner tick after the last purchase
        models = channel.client.get("/v1/admin/models", headers=admin).json()
    finally:
        channel.close()
    truth = pq.read_table(sim.truth_path, columns=["variant", "action"]).to_pylist()
    actions = Counter((r["action"], r["variant"]) for r in truth)
    latencies = sorted(channel.latencies)
    n = len(latencies)
    return {
        "sessions": sim.visitors,
        "scores": n,
        "p50_ms": latencies[n // 2] * 1000 if n else None,
        "p99_ms": latencies[min(n - 1, int(n * 0.99))] * 1000 if n else None,
        "degraded": sim.degraded,
        "events_accepted": channel.accepted,
        "events_rejected": channel.rejected,
        "purchases": sim.purchases,
        "exposed": sim.exposed,
        "seconds": sim.seconds,
        "truth": str(sim.truth_path),
        "actions": {f"{a} / {v}": c for (a, v), c in sorted(actions.items())},
        "champions": {k: v["version"] for k, v in models["models"].items()},
        "river_live_labels": (models["river_learner"]["learned"] or 0) - before,
        "decision_log": str(settings.paths.decisions),
    }


# ---------------------------------------------------------------------------
# Summary


#: How the summary names the segmenter's method.
METHOD_NAMES = {"kmeans": "K-Means", "hdbscan": "HDBSCAN"}


def _segment_rows(t: Table, seg: dict[str, Any] | None) -> None:
    """The segmenter's figures, and each segment with its purchase rate."""
    if not seg:
        return
    m = seg["metrics"]
    t.add_row(
        f"segmenter v{seg['version']}",
        f"{int(m['k'])} segments ({METHOD_NAMES[seg['method']]}), "
        f"silhouette {m['silhouette']:.3f}, bootstrap ARI {m['bootstrap_ari']:.3f}",
    )
    for row in seg["segments"]:
        rate = "" if row["purchase_rate"] is None else f", {row['purchase_rate']:.1%} purchase"
        t.add_row(
            f"segment {row['segment']}: {row['name']}", f"{row['share']:.1%} of sessions{rate}"
        )


def print_summary(settings: Settings, f: dict[str, Any], console: Console) -> None:
    from cli.ops import serve_command, ui_commands

    t = Table(title="microtune demo")
    t.add_column("figure")
    t.add_column("value", overflow="fold")
    t.add_row("events generated", f"{f['events']:,}")
    t.add_row("rows accepted", f"{f['accepted']:,}")
    t.add_row("duplicates dropped", f"{f['duplicates']:,}")
    t.add_row("rows rejected", f"{sum(f['rejected'].values()):,} ({len(f['rejected'])} reasons)")
    tr = f["train"]
    t.add_row("LightGBM hold-out ROC AUC", f"{tr['lgbm']['test_roc_auc']:.4f}")
    if tr.get("ideal_auc") is not None:
        t.add_row("ideal AUC (best the events allow), same rows", f"{tr['ideal_auc']:.4f}")
    if tr.get("oracle_auc") is not None:
        t.add_row("oracle AUC (knows the latents), same rows", f"{tr['oracle_auc']:.4f}")
    t.add_row("LightGBM hold-out ECE", f"{tr['lgbm']['test_ece']:.4f}")
    t.add_row("river progressive AUC", f"{tr['river']['test_progressive_roc_auc']:.4f}")
    for name, d in f["promote"]["decisions"].items():
        failed = [c["name"] for c in d["checks"] if not c["passed"]]
        verdict = "promoted" if d["promote"] else f"refused ({', '.join(failed)})"
        t.add_row(f"gate: {name}", verdict)
    _segment_rows(t, f.get("segments"))
    live = f["live"]
    for name, version in live["champions"].items():
        t.add_row(f"champion: {name}", f"v{version}" if version else "none")
    v = f["drift"]["verdict"]
    t.add_row("drift verdict", f"{v['status']}: {v.get('summary', '')}"[:120])
    t.add_row(
        "simulated visitors (HTTP)",
        f"{live['sessions']:,} visitors, {live['events_accepted']:,} events, "
        f"{live['scores']:,} scores, {live['purchases']:,} purchases in {live['seconds']} s",
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
    ex = f["experiment"]
    t.add_row(f"experiment {ex['experiment']}", f"{ex['verdict']}: {ex['reason']}"[:120])
    for a in ex["arms"]:
        if a["lift"] is not None:
            true = "" if a["true_lift"] is None else f", true {a['true_lift']:+.4f}"
            t.add_row(
                f"lift: {a['name']}",
                f"{a['lift']:+.4f} [{a['ci_low']:+.4f}, {a['ci_high']:+.4f}]{true}",
            )
    for p in f["policies"]["policies"]:
        true = "" if p["true_value"] is None else f", true {p['true_value']:.2f}"
        t.add_row(
            f"policy value (DR): {p['name']}",
            f"{p['value_estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]{true}",
        )
    _uplift_rows(t, f.get("uplift"))
    t.add_row("experiment report", ex["report"])
    t.add_row("took", f"{f['seconds']} s")
    t.add_row("drift report", f["drift"]["report"])
    t.add_row("decision log", live["decision_log"])
    t.add_row("simulation truth", live["truth"])
    t.add_row("training plots", str(Path(tr["plots"][0]).parent) if tr.get("plots") else "-")
    t.add_row("MLflow", settings.tracking_uri)
    t.add_row("quarantine", str(settings.paths.quarantine))
    console.print(t)
    console.print("Look around. The scorer, with its demo shop, on this home:")
    console.print(f"  {serve_command(settings)}", soft_wrap=True)  # whole, to copy
    console.print("  then open http://127.0.0.1:8000/demo/ in a browser (docs/sdk.md)")
    console.print("The UIs on this home:")
    for line in ui_commands(settings):
        console.print(f"  {line}", soft_wrap=True)


def _uplift_rows(t: Table, up: dict[str, Any] | None) -> None:
    """The uplift policy's value and the Qini plot (nothing when the step was skipped)."""
    if not up:
        return
    for p in up["policies"]:
        if p["name"] == "uplift":
            true = "" if p["true_value"] is None else f", true {p['true_value']:.2f}"
            t.add_row(
                f"policy value (DR): uplift model v{up['version']}",
                f"{p['value_estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}]{true}",
            )
    t.add_row("uplift Qini curves", up["plot"])
