"""The FastAPI online scorer: thin routes around :class:`serving.scorer.Scorer`.

Start it with ``microtune serve`` (uvicorn; ``--workers`` for several
processes). Heavy objects, the feature store and the champions, are loaded in
``lifespan`` by :class:`serving.runtime.Runtime`, whose background tasks
flush the logs, pick up new promotions, run river's live learning in the one
process that holds the writer lock, and refresh the health gauges.

Routes are ``async`` and do their store I/O inline: an online read is a
fraction of a millisecond, less than a hop to a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from core.settings import Settings, get_settings
from serving import browser, errors, http, metrics
from serving.ratelimit import RateLimitMiddleware, RateLimits
from serving.routes import router
from serving.runtime import Runtime


def create_app(settings: Settings | None = None) -> FastAPI:
    """The scoring app on ``settings`` (default: the environment's settings)."""
    settings = settings or get_settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        await runtime.start()
        tasks = [
            asyncio.create_task(runtime.poll_models()),
            asyncio.create_task(runtime.learn_loop()),
            asyncio.create_task(runtime.flush_loop()),
        ]
        try:
            yield http.lifespan_state(settings.serve)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            runtime.close()

    app = FastAPI(
        title="microtune scorer",
        version="1.0",
        description="Abandonment risk and micro-adjustment decisions for live web sessions. "
        "See docs/api.md.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    # Outermost last: sizes and latency are measured around everything, the
    # rate limit answers before a request reaches a route.
    app.add_middleware(RateLimitMiddleware, limits=RateLimits(settings.serve))
    app.add_middleware(metrics.LatencyAndSizeLimit, max_body=settings.serve.max_body_bytes)
    app.add_middleware(browser.OriginGuard, allowed=settings.serve.cors_origins)
    if settings.serve.cors_origins:  # outermost: every answer, errors too, carries it
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.serve.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Content-Type", "X-Request-ID", "X-API-Key"],
            expose_headers=["X-Request-ID", "Retry-After"],
            max_age=600,
        )
    errors.install(app)
    app.include_router(router)
    app.include_router(browser.router(browser.Sdk.load()))
    if settings.serve.storefront:
        app.mount("/demo", browser.storefront(), name="storefront")
    return app


def factory() -> FastAPI:
    """uvicorn entry point (``--factory``): the app on the environment's settings."""
    return create_app()
