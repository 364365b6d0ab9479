"""A Prefect server for one home, and Prefect pointed at it.

Each flow run needs a Prefect API. Without one, Prefect starts a temporary
server in every process (seconds of fixed cost per command, and the UI shows
nothing afterwards). ``microtune server`` runs Prefect's server for a home and
records where it listens in ``<home>/prefect/server.json``; every command on
that home then uses it. The order of precedence:

1. ``MICROTUNE_PREFECT_API_URL`` (a shared server, as in production);
2. the server ``microtune server`` runs for this home, if it answers;
3. a temporary local server, started by Prefect for the one command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from core.errors import StoreError
from core.settings import Settings

#: What Prefect reads from the environment for every process of this home.
_QUIET = {
    # A loaded laptop can take longer than Prefect's default 20 s to start its
    # temporary local server; telemetry off keeps the run local.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "120",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
}


#: Prefect's own JSON formatter for its console handler: a worker started with it (and
#: the flow runs it starts, which inherit its environment) logs one JSON object a line.
JSON_LOGS = {"PREFECT_LOGGING_HANDLERS_CONSOLE_FORMATTER": "json"}


def server_file(settings: Settings) -> Path:
    return settings.paths.prefect / "server.json"


def _answers(url: str, timeout: float = 1.0) -> bool:
    import httpx

    try:
        return httpx.get(f"{url}/health", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(settings: Settings) -> str | None:
    """The API URL of the server ``microtune server`` runs for this home, if it answers."""
    path = server_file(settings)
    try:
        url = str(json.loads(path.read_text())["url"])
    except (OSError, ValueError, KeyError):
        return None
    return url if _answers(url) else None


def api_url(settings: Settings) -> str | None:
    """The Prefect API this home's commands use (None: a temporary local server)."""
    return settings.prefect_api_url or running_server(settings)


def prefect_environment(settings: Settings) -> dict[str, str]:
    """Environment variables that point Prefect at this home's server and state."""
    env = dict(_QUIET)
    url = api_url(settings)
    if url:
        env["PREFECT_API_URL"] = url
    else:  # the temporary server keeps its database under the home
        env["PREFECT_HOME"] = str(settings.paths.prefect)
    return env


def configure_prefect(settings: Settings) -> str | None:
    """Point this process's Prefect at the home's server; returns the API URL used.

    Prefect reads its settings from the environment when it is imported;
    they are refreshed here too, so it does not matter whether Prefect was
    imported before.
    """
    env = prefect_environment(settings)
    for key, value in env.items():
        if key in _QUIET:
            os.environ.setdefault(key, value)
        else:
            os.environ[key] = value
    if "PREFECT_API_URL" not in env:
        os.environ.pop("PREFECT_API_URL", None)
    if "prefect.context" in sys.modules:
        from prefect.context import refresh_global_settings_context

        refresh_global_settings_context()
    return env.get("PREFECT_API_URL")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(
    settings: Settings,
    host: str = "127.0.0.1",
    port: int = 4200,
    ready: Callable[[str], None] | None = None,
    timeout_s: float = 120.0,
) -> int:
    """Run Prefect's server for this home until it stops (Ctrl-C); returns its exit code.

    Its database lives under ``<home>/prefect`` (embedded), or in PostgreSQL
    (:attr:`Settings.prefect_database`: production). While it runs,
    ``<home>/prefect/server.json`` tells the home's commands where it is.
    """
    settings.paths.prefect.mkdir(parents=True, exist_ok=True)
    if running_server(settings):
        raise StoreError(
            f"a Prefect server already runs for this home ({running_server(settings)}); "
            "use it, or stop it first"
        )
    url = f"http://{host}:{port}/api"
    env = os.environ | dict(_QUIET) | {"PREFECT_HOME": str(settings.paths.prefect)}
    env.pop("PREFECT_API_URL", None)
    database = settings.prefect_database
    if database:  # production: the flow runs, schedules and limits live in PostgreSQL
        ensure_database(database, admin="postgresql://" + settings.postgres_url.split("://")[1])
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database
    cmd = [sys.executable, "-m", "prefect", "server", "start", "--host", host, "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env)
    path = server_file(settings)
    # A service manager stops with SIGTERM: stop the server and forget its address
    # as Ctrl-C does, rather than leave a stray server and a stale server.json.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        deadline = time.monotonic() + timeout_s
        while not _answers(url):
            if proc.poll() is not None:
                raise StoreError(f"`prefect server start` exited with {proc.returncode}")
            if time.monotonic() > deadline:
                raise StoreError(f"the Prefect server did not answer at {url} in {timeout_s:.0f} s")
            time.sleep(0.3)
        path.write_text(json.dumps({"url": url, "pid": proc.pid}))
        if ready:
            ready(url)
        return proc.wait()
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout=30)
    finally:
        signal.signal(signal.SIGTERM, previous)
        path.unlink(missing_ok=True)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=30)


def ensure_database(url: str, admin: str) -> None:
    """Create the PostgreSQL database of ``url`` unless it exists, connected to the database
    ``admin`` names (Prefect makes its tables, not its database)."""
    import psycopg

    server, _, name = url.split("://", 1)[1].partition("?")[0].rpartition("/")
    try:
        with psycopg.connect(admin, autocommit=True) as conn:
            found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if found.fetchone() is None:
                conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.Error as exc:
        raise StoreError(
            f"cannot create Prefect's database {name!r} on {server}: {exc}. Create it, "
            "or set MICROTUNE_PREFECT_DATABASE_URL to one that exists."
        ) from exc


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
