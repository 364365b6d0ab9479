"""What ``bench_serving`` needs before it measures: a trained home, live sessions, servers.

Every server is started pinned to core 0 (``taskset``) with its log under the
bench's work directory; :func:`wait_ready` polls its health route.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SESSIONS = 200
DEVICES = ("mobile", "desktop", "tablet")
PAGES = ("product", "cart", "category")
SERVER_CORE = 0


def start(cmd: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start ``cmd`` on the server core, its output to ``log``."""
    return subprocess.Popen(
        ["taskset", "-c", str(SERVER_CORE), *cmd],
        env=env,
        cwd=ROOT,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
    """Poll ``url`` until it answers 200; fail early if ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} not ready after {timeout} s")


def scorer_command(port: int) -> list[str]:
    return [str(BIN / "microtune"), "serve", "--port", str(port)]


def feast_serve_command(port: int, max_requests: int | None = None) -> list[str]:
    """``feast serve`` for the project's repo, one worker; its default recycles it every
    1,000 requests, ``max_requests=0`` turns that off."""
    cmd = [
        str(BIN / "feast"),
        "-c",
        str(ROOT / "feature_repo"),
        "-f",
        str(ROOT / "feature_repo" / "feature_store.yaml"),
        "serve",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
    ]
    return cmd if max_requests is None else [*cmd, "--max-requests", str(max_requests)]


def live_session(i: int, now: datetime) -> list[dict[str, Any]]:
    """Six events of bench session ``i``, the last a minute ago at most."""
    kinds = [
        ("page_view", {}),
        ("hover", {"element_id": "price", "duration_ms": 400 + 37 * i % 900}),
        ("scroll", {"scroll_depth": 0.3 + (i % 7) / 10, "scroll_velocity": 300.0 + 11 * i}),
        ("add_to_cart", {"cart_value": 20.0 + i % 80}),
        ("image_zoom", {}),
        ("page_view", {"page_type": "cart"}),
    ]
    return [
        {
            "event_id": f"bench-{i}-{k}",
            "session_id": f"bench-{i}",
            "user_id": f"bench-user-{i}",
            "ts": (now - timedelta(seconds=60 - 5 * k)).isoformat(),
            "event_type": kind,
            "page_type": extra.pop("page_type", "product"),
            "device": DEVICES[i % 3],
            "browser": "chrome",
            "consent": True,
            **extra,
        }
        for k, (kind, extra) in enumerate(kinds)
    ]


def post_live_sessions(url: str, now: datetime) -> None:
    """The bench's sessions, through the scorer's own ``POST /v1/events``."""
    with httpx.Client(base_url=url) as c:
        for i in range(SESSIONS):
            c.post("/v1/events", json={"events": live_session(i, now)}).raise_for_status()


def request_bodies(work: Path, now: datetime) -> tuple[Path, Path]:
    """One JSON body a line for each side: ``/v1/score`` and Feast's ``/get-online-features``."""
    ours_bodies, feast_bodies = work / "score.jsonl", work / "feast.jsonl"
    with open(ours_bodies, "w") as f, open(feast_bodies, "w") as g:
        for i in range(SESSIONS):
            ctx = {"device": DEVICES[i % 3], "page_type": PAGES[i % 3]}
            sid, uid = f"bench-{i}", f"bench-user-{i}"
            f.write(json.dumps({"session_id": sid, "user_id": uid, "context": ctx}) + "\n")
            entities = {
                "session_id": [sid],
                "user_id": [uid],
                "request_ts": [now.timestamp()],
                "device": [ctx["device"]],
                "page_type": [ctx["page_type"]],
            }
            g.write(json.dumps({"feature_service": "abandonment_v1", "entities": entities}) + "\n")
    return ours_bodies, feast_bodies


def probe(url: str, bodies: Path, degraded_ok: bool = True, segment: bool = False) -> None:
    """The first body answers 200 (and, for the scorer, not degraded; with ``segment``,
    with the session's segment)."""
    first = json.loads(bodies.read_text().split("\n")[0])
    r = httpx.post(url, json=first)
    assert r.status_code == 200, r.text
    assert degraded_ok or not r.json()["degraded"], r.text
    assert not segment or r.json()["segment"] is not None, r.text


def trained(home: Path | None, work: Path) -> Path:
    """``home`` when it exists, else a trained home built there (or under ``work``)."""
    if home is not None and home.exists():
        return home
    sys.path.insert(0, str(ROOT / "tests"))
    from serving_harness import trained_home

    from core.settings import Settings

    home = home or work / "home"
    from flows.segment_flow import segment_task

    print("building a trained home (4 days, 2,500 sessions) ...", flush=True)
    built = Settings(home=home, profile="embedded", project="microtune")
    trained_home(built.override(gate={"max_ece": 0.15}), work)
    segment_task.fn(built, None)  # a segmenter: every score assigns a segment
    print(f"home: {home} (reuse it with --home)", flush=True)
    return home


def floor(home: Path, n: int = 2000) -> dict[str, float]:
    """In-process: online read + context + LightGBM predict; and Feast's get_online_features."""
    import numpy as np

    from core.settings import Settings
    from serving.champions import load_champions
    from serving.online import OnlineFeatures
    from stores.feature_store import open_store

    s = Settings(home=home, profile="embedded", project="microtune")
    store = open_store(s)
    online = OnlineFeatures(store)
    lgbm = load_champions(s).lgbm
    cols = lgbm.card.columns

    def ours(i: int) -> None:
        f = online.read(f"bench-{i % SESSIONS}", f"bench-user-{i % SESSIONS}", {}, time.time())
        x = np.array([[np.nan if f.features[c] is None else f.features[c] for c in cols]])
        lgbm.predict(x)

    service = store.get_feature_service("abandonment_v1")

    def feast_inproc(i: int) -> None:
        row = {
            "session_id": f"bench-{i % SESSIONS}",
            "user_id": f"bench-user-{i % SESSIONS}",
            "request_ts": time.time(),
            "device": "mobile",
            "page_type": "cart",
        }
        store.get_online_features(features=service, entity_rows=[row]).to_dict()

    out = {}
    for name, fn, calls in (("floor", ours, n), ("feast_inprocess", feast_inproc, n // 10)):
        lat = []
        for i in range(calls):
            t0 = time.perf_counter()
            fn(i)
            lat.append(time.perf_counter() - t0)
        lat.sort()
        out[f"{name}_p50_ms"] = lat[len(lat) // 2] * 1000
        out[f"{name}_p99_ms"] = lat[int(len(lat) * 0.99)] * 1000
    return out
