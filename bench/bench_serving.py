"""Scoring latency and throughput over real HTTP: our scorer, `feast serve`, and the floor.

    python bench/bench_serving.py [--home DIR] [--duration 8] [--repeat 3]

Set-up: a home with trained and promoted champions (built here, from four days
of generated events, unless --home names one), then 200 live sessions posted
through ``POST /v1/events`` so that every scored session has fresh features.

Measured side by side in one run, server pinned to core 0 and the load
generator (bench/loadgen.py, its own process) to core 1:

* ours: ``microtune serve`` (one uvicorn worker), ``POST /v1/score``: features,
  LightGBM + SHAP contributions, river, policy, decision log;
* feast: ``feast serve`` (one worker), ``POST /get-online-features`` for the
  same feature service (abandonment_v1), features only;
* floor: in the bench process, an online-store read of both views plus the
  on-demand context and a LightGBM predict (no HTTP, no decision); and
  Feast's in-process ``get_online_features`` for the same service.

Also the freshness of live events: the time from sending ``POST /v1/events``
until the next ``POST /v1/score`` returns with the new event counted.

Figures are medians over --repeat rounds (the machine is shared and noisy).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SESSIONS = 200
DEVICES = ("mobile", "desktop", "tablet")
PAGES = ("product", "cart", "category")


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 180) -> None:
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


def start(cmd: list[str], core: int, env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        ["taskset", "-c", str(core), *cmd],
        env=env,
        cwd=ROOT,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def live_session(i: int, now: datetime) -> list[dict[str, Any]]:
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


def loadgen(url: str, bodies: Path, concurrency: int, duration: float) -> dict[str, Any]:
    out = subprocess.run(
        [
            "taskset",
            "-c",
            "1",
            sys.executable,
            str(ROOT / "bench" / "loadgen.py"),
            "--url",
            url,
            "--body-file",
            str(bodies),
            "--concurrency",
            str(concurrency),
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def floor(home_env: dict[str, str], n: int = 2000) -> dict[str, float]:
    """In-process: online read + context + LightGBM predict; and Feast's get_online_features."""
    from core.settings import Settings
    from serving.champions import load_champions
    from serving.online import OnlineFeatures
    from stores.feature_store import open_store

    s = Settings(home=Path(home_env["MICROTUNE_HOME"]))
    store = open_store(s)
    online = OnlineFeatures(store)
    lgbm = load_champions(s).lgbm
    cols = lgbm.card.columns
    import numpy as np

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


def freshness(url: str, rounds: int = 300) -> dict[str, float]:
    """POST one event, then score: how long until the score counts it (p50, p99 in ms)."""
    lat = []
    now = datetime.now(UTC)
    session = f"fresh-{now:%H%M%S%f}"
    with httpx.Client(base_url=url) as c:
        for k in range(rounds):
            ev = {
                "event_id": f"{session}-{k}",
                "session_id": session,
                "ts": (now + timedelta(milliseconds=k)).isoformat(),
                "event_type": "hover",
                "page_type": "product",
                "duration_ms": 100 + k,
                "device": "desktop",
                "browser": "firefox",
                "consent": True,
            }
            t0 = time.perf_counter()
            sent = c.post("/v1/events", json={"events": [ev]}).json()
            if sent["accepted"] != 1:
                raise AssertionError(f"event rejected: {sent}")
            got = c.post("/v1/score", json={"session_id": session}).json()
            t1 = time.perf_counter()
            if got["features"]["event_count"] != k + 1:
                raise AssertionError(f"score did not see event {k}: {got['features']}")
            lat.append(t1 - t0)
    lat.sort()
    return {"p50_ms": lat[len(lat) // 2] * 1000, "p99_ms": lat[int(len(lat) * 0.99)] * 1000}


def trained(home: Path | None, work: Path) -> Path:
    """``home`` when given, else a trained home built under ``work``."""
    if home is not None:
        return home
    sys.path.insert(0, str(ROOT / "tests"))
    from serving_harness import trained_home

    from core.settings import Settings

    home = work / "home"
    print("building a trained home (4 days, 2,500 sessions) ...", flush=True)
    built = Settings(home=home, profile="embedded", project="microtune")
    trained_home(built.override(gate={"max_ece": 0.15}), work)
    print(f"home: {home} (reuse it with --home)", flush=True)
    return home


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


def feast_serve_command() -> list[str]:
    return [
        str(BIN / "feast"),
        "-c",
        str(ROOT / "feature_repo"),
        "-f",
        str(ROOT / "feature_repo" / "feature_store.yaml"),
        "serve",
        "--port",
        "18732",
        "--workers",
        "1",
        "--no-access-log",
    ]


def probe(url: str, bodies: Path, degraded_ok: bool = True) -> None:
    """The first body answers 200 (and, for the scorer, not degraded)."""
    first = json.loads(bodies.read_text().split("\n")[0])
    r = httpx.post(url, json=first)
    assert r.status_code == 200, r.text
    assert degraded_ok or not r.json()["degraded"], r.text


def measure(
    ours_url: str, feast_url: str, bodies: tuple[Path, Path], repeat: int, duration: float
) -> dict[str, list[dict[str, Any]]]:
    """Rounds of the load generator, c=1 and c=16, alternating between the two servers."""
    results: dict[str, list[dict[str, Any]]] = {}
    for r in range(repeat):
        for conc in (1, 16):
            for name, url, body in (
                ("ours", f"{ours_url}/v1/score", bodies[0]),
                ("feast", f"{feast_url}/get-online-features", bodies[1]),
            ):
                out = loadgen(url, body, conc, duration)
                results.setdefault(f"{name}_c{conc}", []).append(out)
                print(f"round {r + 1} {name:5s} c={conc:2d}: {json.dumps(out)}", flush=True)
    return results


def report(
    results: dict[str, list[dict[str, Any]]],
    fl: dict[str, float],
    fresh: dict[str, float],
    repeat: int,
    duration: float,
) -> None:
    def med(key: str, field: str) -> float:
        return statistics.median(o[field] for o in results[key])

    print()
    print(f"scoring over HTTP, medians of {repeat} rounds of {duration:.0f} s")
    print(f"{'':18s}{'p50 ms':>9s}{'p99 ms':>9s}{'req/s':>9s}{'5xx':>6s}")
    for key in ("ours_c1", "feast_c1", "ours_c16", "feast_c16"):
        print(
            f"{key:18s}{med(key, 'p50_ms'):9.2f}{med(key, 'p99_ms'):9.2f}"
            f"{med(key, 'rps'):9.0f}{sum(o['errors'] for o in results[key]):6d}"
        )
    print(
        f"{'floor (in-proc)':18s}{fl['floor_p50_ms']:9.2f}{fl['floor_p99_ms']:9.2f}"
        f"\n{'feast in-proc':18s}{fl['feast_inprocess_p50_ms']:9.2f}"
        f"{fl['feast_inprocess_p99_ms']:9.2f}"
    )
    p99_1 = med("ours_c1", "p99_ms")
    rps = max(med(k, "rps") for k in results if k.startswith("ours"))
    lines = [
        f"target p99 <= 5 ms at c=1:          {p99_1:.2f} ms",
        f"target >= 1500 req/s on one worker: {rps:.0f}",
    ]
    for c in (1, 16):
        ours, feast = med(f"ours_c{c}", "p99_ms"), med(f"feast_c{c}", "p99_ms")
        lines.append(
            f"p99 ours / feast serve at c={c:<2d}:    {ours / feast:.2f}x "
            f"({ours:.2f} vs {feast:.2f} ms)"
        )
    ratio = med("ours_c1", "p50_ms") / fl["floor_p50_ms"]
    lines.append(f"p50 ours / in-process floor, c=1:   {ratio:.1f}x")
    lines.append(
        f"freshness events -> next score:     p50 {fresh['p50_ms']:.2f} ms, "
        f"p99 {fresh['p99_ms']:.2f} ms (target p99 <= 20 ms)"
    )
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="A home with promoted champions (else built).")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mt-bench-serve-"))
    home = trained(args.home, work)
    home_env = {
        "MICROTUNE_HOME": str(home),
        "MICROTUNE_PROFILE": "embedded",
        "MICROTUNE_PROJECT": "microtune",
    }
    env = {**os.environ, **home_env, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    ours_url, feast_url = "http://127.0.0.1:18731", "http://127.0.0.1:18732"
    procs = [
        start([str(BIN / "microtune"), "serve", "--port", "18731"], 0, env, work / "serve.log"),
    ]
    try:
        wait_ready(f"{ours_url}/readyz", procs[0])
        now = datetime.now(UTC)
        with httpx.Client(base_url=ours_url) as c:
            for i in range(SESSIONS):
                c.post("/v1/events", json={"events": live_session(i, now)}).raise_for_status()
        procs.append(start(feast_serve_command(), 0, env, work / "feast.log"))
        wait_ready(f"{feast_url}/health", procs[1])
        bodies = request_bodies(work, now)
        probe(f"{ours_url}/v1/score", bodies[0], degraded_ok=False)
        probe(f"{feast_url}/get-online-features", bodies[1])
        results = measure(ours_url, feast_url, bodies, args.repeat, args.duration)
        fresh = freshness(ours_url)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=30)
    report(results, floor(home_env), fresh, args.repeat, args.duration)


if __name__ == "__main__":
    main()
