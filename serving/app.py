"""The FastAPI online scorer: thin routes around :class:`serving.scorer.Scorer`.

Start it with ``microtune serve`` (uvicorn; ``--workers`` for several
processes). Heavy objects, the feature store and the champions, are loaded in
``lifespan``; background tasks flush the logs, pick up new promotions, and
run river's live learning in the one process that holds the writer lock.

Routes are ``async`` and do their store I/O inline: an online read is a
fraction of a millisecond, less than a hop to a thread pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from flows.errors import MicrotuneError
from flows.settings import Settings, get_settings
from models import registry
from models.online import RiverRiskModel
from serving import metrics
from serving.champions import ModelSet, champion_versions, load_champions
from serving.learner import WriterLock, by_session, learn
from serving.policy import DEFAULT_POLICY, Policy
from serving.routes import router
from serving.scorer import Scorer

log = logging.getLogger("microtune.serving")
LEARN_EVERY_S = 1.0
FLUSH_EVERY_S = 1.0
LEARN_CHUNK = 64


def _open_online(settings: Settings) -> tuple[Any, str | None]:
    from flows.feaststore import open_store
    from serving.online import OnlineFeatures

    try:
        return OnlineFeatures(open_store(settings)), None
    except Exception as exc:
        log.exception("online store failed to open")
        return None, f"{type(exc).__name__}: {exc}"


def policy_path(settings: Settings) -> Path:
    return settings.serve_policy or DEFAULT_POLICY


def _river_checkpoint(settings: Settings, version: str | None) -> Path:
    return settings.paths.serving / "river" / f"v{version}.pkl"


class Runtime:
    """Per-process state behind the routes, built in ``lifespan``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = WriterLock(settings.paths.serving / "river.lock")
        self.started = time.time()
        self.scorer: Scorer | None = None
        self._river_mtime = 0.0

    async def start(self) -> None:
        s = self.settings
        s.export_env()
        s.paths.ensure()
        online, error = await asyncio.to_thread(_open_online, s)
        models = await asyncio.to_thread(load_champions, s)
        policy = Policy.load(policy_path(s))
        self.scorer = Scorer(s, online, models, policy, online_error=error)
        self._adopt_river_checkpoint()
        metrics.model_versions(models.versions)

    # -- background work ------------------------------------------------------

    async def reload_models(self) -> dict[str, str | None]:
        assert self.scorer is not None
        new = await asyncio.to_thread(load_champions, self.settings, self.scorer.models)
        if new.versions != self.scorer.models.versions or new.errors != self.scorer.models.errors:
            self.scorer.models = new  # one reference swap: atomic for readers
            self._river_mtime = 0.0
            self._adopt_river_checkpoint()
            metrics.model_versions(new.versions)
            log.info("champions now %s", new.versions)
        return dict(new.versions)

    async def poll_models(self) -> None:
        while True:
            await asyncio.sleep(self.settings.serve_model_poll_s)
            try:
                assert self.scorer is not None
                current = await asyncio.to_thread(champion_versions, self.settings)
                if current != self.scorer.models.versions:
                    await self.reload_models()
            except Exception:
                log.exception("champion poll failed; keeping the current models")

    def _adopt_river_checkpoint(self) -> None:
        """Score with the learner's newest checkpoint of the current river champion."""
        assert self.scorer is not None
        models = self.scorer.models
        path = _river_checkpoint(self.settings, models.versions.get(registry.RIVER))
        if models.river is None or self.lock.held or not path.exists():
            return
        mtime = path.stat().st_mtime
        if mtime != self._river_mtime:
            try:
                river = RiverRiskModel.restore(path)
            except Exception:
                log.exception("river checkpoint %s unreadable", path)
                return
            self._river_mtime = mtime
            self.scorer.models = ModelSet(models.lgbm, river, models.versions, models.errors)

    async def learn_loop(self) -> None:
        """river's single writer: the process holding the lock learns; others follow."""
        s = self.settings
        while True:
            await asyncio.sleep(LEARN_EVERY_S)
            try:
                assert self.scorer is not None
                if not self.lock.try_acquire():
                    self._adopt_river_checkpoint()
                    continue
                models = self.scorer.models
                if models.river is None:
                    continue
                examples = await asyncio.to_thread(
                    self.scorer.labels.take_labelled, time.time(), s.session_gap_minutes * 60.0
                )
                if not examples:
                    continue
                fired = []
                for part in by_session(examples, LEARN_CHUNK):
                    fired += learn(models.river, part)
                    await asyncio.sleep(0)  # let requests in between chunks
                metrics.LEARNED.inc(len(examples))
                if fired:
                    self.scorer.drift_pending = True
                    metrics.DRIFT.inc(len(fired))
                    log.warning("ADWIN: river error drift after %d live labels", len(examples))
                # Pickled in a thread: only this coroutine changes the model, and it waits.
                await asyncio.to_thread(
                    models.river.checkpoint,
                    _river_checkpoint(s, models.versions.get(registry.RIVER)),
                )
            except Exception:
                log.exception("river learning failed; will retry")

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await asyncio.to_thread(self.flush)
            except Exception:  # kept in memory; the next tick retries
                log.exception("flushing the decision log or label queue failed")

    def flush(self) -> None:
        if self.scorer is not None:
            self.scorer.log.flush()
            self.scorer.inbox.flush()
            self.scorer.labels.flush()


def create_app(settings: Settings | None = None) -> FastAPI:
    """The scoring app on ``settings`` (default: the environment's settings)."""
    settings = settings or get_settings()
    runtime = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        tasks = [
            asyncio.create_task(runtime.poll_models()),
            asyncio.create_task(runtime.learn_loop()),
            asyncio.create_task(runtime.flush_loop()),
        ]
        try:
            yield
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            runtime.flush()
            runtime.lock.release()

    app = FastAPI(
        title="microtune scorer",
        version="1.0",
        description="Abandonment risk and micro-adjustment decisions for live web sessions. "
        "See docs/api.md.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_middleware(metrics.LatencyAndSizeLimit, max_body=settings.serve_max_body_bytes)

    @app.exception_handler(MicrotuneError)
    async def _microtune_error(_: Request, exc: MicrotuneError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status_code)

    app.include_router(router)
    return app


def factory() -> FastAPI:
    """uvicorn entry point (``--factory``): the app on the environment's settings."""
    return create_app()
