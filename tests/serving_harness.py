"""A trained home and a real uvicorn server on loopback, for the scorer's tests.

The home holds four days of generated events ending a day ago (so that
validation accepts them), built features, and LightGBM and river champions
trained and promoted through the real gate. The server is uvicorn in a
background thread of the test process: real HTTP on a free port.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx

from flows.settings import Settings, get_settings

ENV_KEYS = (
    "MICROTUNE_HOME",
    "MICROTUNE_PROFILE",
    "MICROTUNE_PROJECT",
    "MICROTUNE_GATE_MAX_ECE",
    "MICROTUNE_SERVE_ADMIN_TOKEN",
    "MICROTUNE_SERVE_MODEL_POLL_S",
    "MICROTUNE_SERVE_RIVER_ROLE",
    "MICROTUNE_SERVE_POLICY",
    "MICROTUNE_SESSION_GAP_MINUTES",
    "PREFECT_HOME",
)
TOKEN = "test-admin-token"


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set MICROTUNE_* variables for a block and restore them after."""
    saved = {k: os.environ.get(k) for k in ENV_KEYS}
    os.environ.update(values)
    get_settings.cache_clear()
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        get_settings.cache_clear()


def recent_start(days: int) -> date:
    """First day of a ``days``-day log whose sessions all ended by yesterday."""
    return (datetime.now(UTC) - timedelta(days=days + 1)).date()


def trained_home(root: Path, *, sessions: int = 2500, days: int = 4, seed: int = 21) -> Settings:
    """Generate, ingest, build, materialize, train and promote, in ``root``."""
    from flows.feaststore import open_store
    from flows.generate import GeneratorConfig, write_event_log
    from models.train import promote_models, train_models

    s = get_settings()
    s.export_env()
    s.paths.ensure()
    log = root / "log"
    cfg = GeneratorConfig(sessions=sessions, days=days, seed=seed, start=recent_start(days))
    write_event_log(cfg, log)
    build_events(s, [log / "events"])
    store = open_store(s)
    train_models(s, store, seed=0, oracle=log / "oracle.parquet")
    promote_models(s, store)
    return s


def build_events(s: Settings, inbox: list[Path]) -> dict[str, int]:
    """The build_features flow's steps without Prefect: ingest, build, apply, materialize."""
    from flows.feaststore import ensure_uci
    from flows.feature_flow import (
        apply_task,
        build_task,
        ingest_task,
        materialize_task,
        resolve_window,
    )

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

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings)
        config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="on"
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
