"""A trained home and a real uvicorn server on loopback, for the scorer's tests.

The home holds four days of generated events ending a day ago (so that
validation accepts them), built features, and LightGBM and river champions
trained and promoted through the real gate. The server is uvicorn in a
background thread of the test process: real HTTP on a free port.
"""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd

from core.settings import Settings

TOKEN = "test-admin-token"


def recent_start(days: int) -> date:
    """First day of a ``days``-day log whose sessions all ended by yesterday."""
    return (datetime.now(UTC) - timedelta(days=days + 1)).date()


def trained_home(
    s: Settings, root: Path, *, sessions: int = 2500, days: int = 4, seed: int = 21
) -> Settings:
    """Generate into ``root``, then ingest, build, materialize, train and promote on ``s``."""
    from events.synth import GeneratorConfig, write_event_log
    from flows.model_flows import gate_task, train_task

    s.paths.ensure()
    log = root / "log"
    cfg = GeneratorConfig(sessions=sessions, days=days, seed=seed, start=recent_start(days))
    write_event_log(cfg, log)
    build_events(s, [log / "events"])
    train_task.fn(s, seed=0, every_n=10, oracle=str(log / "oracle.parquet"))
    gate_task.fn(s)
    return s


def build_events(s: Settings, inbox: list[Path]) -> dict[str, int]:
    """The build_features flow's steps without Prefect: ingest, build, apply, materialize."""
    from flows.feature_flow import (
        apply_task,
        build_task,
        ingest_task,
        materialize_task,
        resolve_window,
    )
    from stores.feature_store import ensure_uci

    ingest_task.fn(s, [str(p) for p in inbox])
    lo, hi = resolve_window(s, None, None, None)
    build_task.fn(s, lo, hi)
    ensure_uci(s)
    apply_task.fn(s)
    return materialize_task.fn(s, lo)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """uvicorn serving ``create_app()`` in a thread; ``url`` is its base address."""

    def __init__(self, settings: Settings) -> None:
        import uvicorn

        from serving.app import create_app
        from serving.http import uvicorn_options

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options(settings.serve),
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                ok = httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200
                if ok and self.app.state.runtime.scorer is not None:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError("scorer did not start within 120 s")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def live_events(session: str, start: datetime, kinds: list[tuple[str, dict[str, Any]]]) -> list:
    return [
        {
            "event_id": f"{session}-{i}",
            "session_id": session,
            "user_id": f"user-{session}",
            "ts": (start + timedelta(seconds=7 * i)).isoformat().replace("+00:00", "Z"),
            "event_type": kind,
            "page_type": extra.pop("page_type", "product"),
            "device": "mobile",
            "browser": "safari",
            "consent": extra.pop("consent", True),
            **extra,
        }
        for i, (kind, extra) in enumerate(kinds)
    ]


BROWSE = [
    ("page_view", {}),
    ("hover", {"element_id": "price", "duration_ms": 1200}),
    ("scroll", {"scroll_depth": 0.4, "scroll_velocity": 650.0}),
    ("image_zoom", {}),
    ("hover", {"element_id": "image", "duration_ms": 300}),
    ("add_to_cart", {"cart_value": 59.9}),
    ("size_guide_open", {}),
    ("scroll", {"scroll_depth": 0.9, "scroll_velocity": 1400.0}),
    ("page_view", {"page_type": "cart"}),
    ("remove_from_cart", {"cart_value": 19.95, "page_type": "cart"}),
    ("click", {"element_id": "checkout", "page_type": "cart"}),
]


def score(client: httpx.Client, session: str, **ctx: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/score",
        json={"session_id": session, "user_id": f"user-{session}", "context": ctx},
    )
    assert r.status_code == 200, r.text
    return r.json()


def decision_log(settings: Settings, session: str) -> list[dict[str, Any]]:
    time.sleep(1.5)  # the server flushes its log every second
    out = []
    for f in sorted(settings.paths.decisions.rglob("*.jsonl")):
        out += [r for line in f.read_bytes().splitlines() if (r := orjson.loads(line))]
    return [r for r in out if r["session_id"] == session]


def historical(settings: Settings, session: str, at: float, ctx: dict[str, Any]) -> dict:
    """The feature service's values for ``session`` at time ``at``, as training reads them.

    The session's user is new (no history rows), so the user part is left out:
    its features are missing online and offline alike.
    """
    from models.dataset import historical_features
    from stores.feature_store import open_store

    points = pd.DataFrame(
        {
            "session_id": [session],
            "user_id": [None],
            "event_timestamp": [pd.Timestamp(at, unit="s", tz="UTC")],
            "request_ts": [at],
            "device": [ctx.get("device")],
            "page_type": [ctx.get("page_type")],
        }
    )
    frame, _ = historical_features(open_store(settings), points, "abandonment_v1")
    row = frame.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


def simulate_in_process(s: Settings, trained: Settings, out: Path, n: int, seed: int = 71) -> Path:
    """``n`` world visitors through the scoring core serving ``s``'s policy (the
    registry's, or the file), logging to home ``s``; the trained home lends its
    online store and champions. Returns the truth file."""
    from events.synth import GeneratorConfig
    from serving.champions import load_champions, served_policy
    from serving.runtime import _open_online
    from serving.scorer import Scorer
    from simulation.run import InProcessChannel, simulate

    online, error = _open_online(trained)
    assert error is None
    policy, _ = served_policy(s)
    scorer = Scorer(s, online, load_champions(trained), policy)
    cfg = GeneratorConfig(sessions=4 * n, days=1, seed=seed)
    result = simulate(InProcessChannel(scorer), cfg, out, limit=n, run=out.name)
    scorer.log.flush()
    scorer.inbox.flush()
    return result.truth_path


@contextlib.contextmanager
def policy_in_force(settings: Settings, url: str, text: str) -> Iterator[None]:
    """The served scorer decides by the policy ``text``, reloaded; the shipped one after."""
    assert settings.serve.policy is not None
    auth = {"Authorization": f"Bearer {TOKEN}"}
    shipped = settings.serve.policy.read_text()
    settings.serve.policy.write_text(text)
    try:
        reloaded = httpx.post(f"{url}/v1/admin/reload-policy", headers=auth)
        assert reloaded.status_code == 200, reloaded.text
        yield
    finally:
        settings.serve.policy.write_text(shipped)
        assert httpx.post(f"{url}/v1/admin/reload-policy", headers=auth).status_code == 200
