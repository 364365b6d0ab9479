"""Operations: ``info``, ``serve``, ``server``, ``deploy`` and ``worker``."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from cli.app import app, console, settings
from core.settings import Settings


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Server processes.")] = 1,
    log_level: Annotated[
        str,
        typer.Option(help="Log level; `info` adds one line per request (JSON lines on stderr)."),
    ] = "warning",
) -> None:
    """Start the online scorer (POST /v1/score, /v1/events; docs at /docs)."""
    import shutil

    import uvicorn

    from core.logs import log_config
    from serving.http import uvicorn_options

    s = settings()
    if workers > 1:  # Prometheus samples of every worker, aggregated by /metrics
        prom = s.paths.serving / "prometheus"
        shutil.rmtree(prom, ignore_errors=True)
        prom.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(prom)
    console.print(f"microtune scorer on http://{host}:{port} (home {s.home}, profile {s.profile})")
    console.print(f"  API docs:   http://{host}:{port}/docs")
    if s.serve.storefront:
        console.print(f"  demo shop:  http://{host}:{port}/demo/ (the browser SDK, docs/sdk.md)")
    for line in ui_commands(s):
        console.print(f"  {line}")
    uvicorn.run(
        "serving.app:factory",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        # JSON lines on stderr, with request ids and no personal ids (core/logs.py);
        # uvicorn's own access log would write the client's address.
        log_config=log_config(log_level),
        access_log=False,
        **uvicorn_options(s.serve),
    )


def serve_command(s: Settings) -> str:
    """The command that starts the scorer on this home, with this environment's ``microtune``."""
    exe = Path(sys.executable).with_name("microtune")
    return f"MICROTUNE_HOME={s.home} {exe if exe.exists() else 'microtune'} serve"


def ui_commands(s: Settings) -> list[str]:
    """Commands that open Prefect's, MLflow's and Feast's UIs on this home."""
    env = f"MICROTUNE_HOME={s.home}"
    return [
        f"Prefect UI: {env} PREFECT_HOME={s.paths.prefect} prefect server start",
        f"MLflow UI:  mlflow ui --backend-store-uri {s.tracking_uri} --port 5000",
        f"Feast UI:   {env} feast -c {s.feature_repo} -f {s.feature_store_yaml} ui --port 8888",
    ]


@app.command()
def deploy(
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Register only this flow/deployment (repeatable)."),
    ] = None,
) -> None:
    """Register the deployments of prefect.yaml (schedules, parameters, limits) on the server."""
    from flows.deploy import load_config, pool_name, register, worker_command
    from flows.server import configure_prefect

    s = settings()
    configure_prefect(s)
    names = register(s, only)
    for name in names:
        console.print(f"deployed {name}")
    console.print(f"work pool: {pool_name(load_config())}; run them with `microtune worker`")
    console.print(" ".join(worker_command(s)), soft_wrap=True)


@app.command()
def worker(
    name: Annotated[str | None, typer.Option(help="Worker name shown in the UI.")] = None,
    json_logs: Annotated[
        bool,
        typer.Option(
            "--json-logs",
            help="Log one JSON object a line (the worker and its flow runs), for a log "
            "shipper; the flows' messages carry counts and paths, never a visitor's id.",
        ),
    ] = False,
) -> None:
    """Start a process worker on the deployments' work pool (runs until stopped)."""
    from flows.deploy import worker_command
    from flows.server import JSON_LOGS, configure_prefect

    s = settings()
    cmd = worker_command(s, name)
    configure_prefect(s)
    if json_logs:
        os.environ.update(JSON_LOGS)
    console.print(" ".join(cmd), soft_wrap=True)
    sys.stdout.flush()
    os.execv(cmd[0], cmd)


@app.command()
def server(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 4200,
) -> None:
    """Run Prefect's server for this home until stopped (Ctrl-C).

    While it runs, every microtune command on this home runs its flows on it
    (no temporary server per command, and the runs stay in its UI).
    """
    from flows.server import serve

    s = settings()

    def ready(url: str) -> None:
        console.print(f"Prefect server for {s.home} on {url.removesuffix('/api')}")
        console.print("microtune commands on this home now use it; stop it with Ctrl-C.")

    raise typer.Exit(serve(s, host=host, port=port, ready=ready))
