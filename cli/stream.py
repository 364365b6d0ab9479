"""``microtune stream-worker``: fold and store the live events of the Redis Stream."""

from __future__ import annotations

import logging.config
import os
import signal
import socket
import threading
from typing import Annotated

import typer

from cli.app import app, console, settings
from core.errors import InputError


@app.command("stream-worker")
def stream_worker(
    name: Annotated[
        str | None,
        typer.Option(help="Consumer name in the group (default: host and process id)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="Log level (JSON lines on stderr).")] = "info",
) -> None:
    """Process the event stream until stopped (SIGTERM or Ctrl-C finish the batch).

    Needs MICROTUNE_STREAM__ENABLED=true and the production profile's Redis
    (MICROTUNE_REDIS_URL). Run as many as the load needs: they share the
    stream's consumer group, and entries a stopped or killed worker leaves
    pending are taken over by the others after MICROTUNE_STREAM__CLAIM_IDLE_S.
    Every 5 s a line reports what this worker has done (docs/operations.md).
    """
    from core.logs import log_config
    from serving.stream_worker import StreamWorker, stats_line

    s = settings()
    if not s.stream.enabled:
        raise InputError(
            "the event stream is off: set MICROTUNE_STREAM__ENABLED=true (and "
            "MICROTUNE_PROFILE=production with MICROTUNE_REDIS_URL) on the scorers and workers"
        )
    if s.profile != "production":
        raise InputError(
            "the stream workers fold into the Redis online store: set MICROTUNE_PROFILE=production"
        )
    logging.config.dictConfig(log_config(log_level))
    consumer = name or f"{socket.gethostname()}-{os.getpid()}"
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    worker = StreamWorker(s, consumer)
    console.print(f"stream worker {consumer} on {worker.keys.events} (project {s.project})")
    stats = worker.run(stop, report=lambda st: console.print(stats_line(st)))
    console.print(f"stopped: {stats_line(stats)}")
