"""Per-process state behind the routes: the scorer, and the background work of one worker.

:class:`Runtime` is built in the app's ``lifespan``. Its loops flush the logs,
pick up new promotions, run river's live learning in the one process that
holds the writer lock, and refresh the health gauges (drift verdict, feature
freshness) that the alert rules read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import InputError
from core.settings import Settings
from feature_repo.features import SESSION_VIEW, USER_VIEW
from models import registry
from models.bandit import ContextualBandit
from models.online import RiverRiskModel
from models.segment_registry import SEGMENTER
from models.segment_stream import StreamingCentroids
from monitoring.verdict import latest_status
from serving import metrics
from serving.champions import (
    ModelSet,
    PolicyVersions,
    champion_versions,
    load_champions,
    policy_path,
    policy_versions,
    served_policy,
)
from serving.learner import WriterLock, by_session, learn
from serving.policy import Policy
from serving.scorer import Scorer
from stores.event_stream import EventStream
from stores.online_state import last_writes

log = logging.getLogger("microtune.serving")
LEARN_EVERY_S = 1.0
FLUSH_EVERY_S = 1.0
#: river learns this many examples, then lets requests in (about 1 ms of work).
LEARN_CHUNK = 8
SWITCH_INTERVAL_S = 0.0005
#: The nice value of the threads that take event batches and background work.
BACKGROUND_NICE = 10


def lower_priority() -> None:
    """Run the calling thread at a lower CPU priority than the event loop's.

    On Linux the nice value is per thread: when a request arrives, the event
    loop's thread preempts a batch or a flush at once, instead of waiting out
    its share of a time slice (bench/bench_serving.py, ``ours_batches``).
    Elsewhere, or where it is not allowed, the thread keeps its priority.
    """
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICE)


def low_priority_pool(name: str) -> ThreadPoolExecutor:
    """One worker thread at :data:`BACKGROUND_NICE`, so its jobs run one at a time."""
    return ThreadPoolExecutor(1, thread_name_prefix=name, initializer=lower_priority)


def _open_online(settings: Settings) -> tuple[Any, str | None]:
    from serving.online import OnlineFeatures
    from stores.feature_store import open_store

    try:
        return OnlineFeatures(open_store(settings)), None
    except Exception as exc:
        log.exception("online store failed to open")
        return None, f"{type(exc).__name__}: {exc}"


def _river_checkpoint(settings: Settings, version: str | None) -> Path:
    return settings.paths.serving / "river" / f"v{version}.pkl"


def bandit_folder(settings: Settings) -> Path:
    """Where the learner checkpoints the bandit (``bandit.json`` and ``weights.vw``)."""
    return settings.paths.serving / "bandit"


class Runtime:
    """Per-process state behind the routes, built in ``lifespan``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.lock = WriterLock(settings.paths.serving / "river.lock")
        self.started = time.time()
        self.scorer: Scorer | None = None
        #: Live-event batches, one at a time, and the loops' I/O, each on a thread of
        #: its own below the event loop's priority.
        self.events_pool = low_priority_pool("events")
        self.background = low_priority_pool("background")
        self._river_mtime = 0.0
        self._bandit_mtime = 0.0
        self.policy_versions: PolicyVersions = (None, None, 0.0)
        self._segment_stream: StreamingCentroids | None = None

    async def start(self) -> None:
        s = self.settings
        # A worker thread (a live-event batch, the registry poll, the log sync) gives
        # the GIL back to the event loop after 0.5 ms instead of Python's 5 ms, so it
        # cannot hold a score back longer than that (bench/bench_serving.py).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        s.paths.ensure()
        online, error = await asyncio.to_thread(_open_online, s)
        writer = (await asyncio.to_thread(_open_online, s))[0] if online else None
        models = await asyncio.to_thread(load_champions, s)
        policy = await asyncio.to_thread(self._served_policy)
        # A Redis that does not answer within a second gets the client a 503, not a wait.
        stream = EventStream(s, timeout_s=1.0) if s.stream.enabled else None
        self.scorer = Scorer(
            s, online, models, policy, online_error=error, writer=writer, stream=stream
        )
        self._adopt_river_checkpoint()
        self.adopt_bandit(force=True)
        metrics.model_versions(models.versions)
        self.refresh_health()

    # -- background work ------------------------------------------------------

    async def in_background(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` on the low-priority background thread."""
        return await asyncio.get_running_loop().run_in_executor(self.background, fn, *args)

    def close(self) -> None:
        """Flush the logs, release the learner's lock and stop the worker threads."""
        self.flush()
        self.lock.release()
        self.events_pool.shutdown(wait=True)
        self.background.shutdown(wait=True)

    async def reload_models(self) -> dict[str, str | None]:
        assert self.scorer is not None
        new = await self.in_background(load_champions, self.settings, self.scorer.models)
        if new.versions != self.scorer.models.versions or new.errors != self.scorer.models.errors:
            self.scorer.models = new  # one reference swap: atomic for readers
            self._river_mtime = 0.0
            self._adopt_river_checkpoint()
            metrics.model_versions(new.versions)
            log.info("champions now %s", new.versions)
        return dict(new.versions)

    def _served_policy(self) -> Policy:
        """The registry's champion policy (and canary), or the policy file.

        At start, a registry that cannot be read leaves the policy file serving
        (logged); later reloads raise and keep the current policy.
        """
        try:
            policy, self.policy_versions = served_policy(self.settings)
        except InputError:
            raise
        except Exception:
            if self.scorer is not None:
                raise
            log.exception("policy registry unreadable; serving the policy file")
            policy = Policy.load(policy_path(self.settings))
        return policy

    async def reload_policy(self) -> Policy:
        """Serve the registry's current policy (or the re-read file); an invalid one
        raises and the current policy stays."""
        assert self.scorer is not None
        policy = await self.in_background(self._served_policy)
        self.scorer.policy = policy  # one reference swap
        self.adopt_bandit(force=True)
        log.info("policy now %s (versions %s)", policy.source, self.policy_versions)
        return policy

    def refresh_health(self, now: float | None = None) -> None:
        """Set the drift-verdict and feature-freshness gauges from the home's records."""
        now = time.time() if now is None else now
        latest = latest_status(self.settings.paths.drift_reports)
        metrics.set_drift_verdict(*(latest[0], now - latest[1]) if latest else (None, None))
        writes = last_writes(self.settings.paths.feast)
        online = self.scorer.writer if self.scorer is not None else None
        if online is not None and online.last_session_write:
            writes[SESSION_VIEW] = max(writes.get(SESSION_VIEW, 0.0), online.last_session_write)
        for view in (SESSION_VIEW, USER_VIEW):
            metrics.set_feature_age(view, now - writes[view] if view in writes else None)
        stream = self.scorer.stream if self.scorer is not None else None
        if stream is not None:
            try:
                stream.ready()
                b = stream.backlog()
                metrics.set_stream(b.lag, b.pending, b.dead)
            except Exception as exc:  # Redis away: the events route says so
                log.warning("event stream unreadable: %s", exc)

    async def poll_models(self) -> None:
        while True:
            await asyncio.sleep(self.settings.serve.model_poll_s)
            try:
                await self.in_background(self.refresh_health)
            except Exception:
                log.exception("refreshing the health gauges failed")
            try:
                assert self.scorer is not None
                current = await self.in_background(champion_versions, self.settings)
                if current != self.scorer.models.versions:
                    await self.reload_models()
                served = await self.in_background(policy_versions, self.settings)
                if served != self.policy_versions:
                    await self.reload_policy()
            except Exception:
                log.exception("champion poll failed; keeping the current models and policy")

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
            self.scorer.models = ModelSet(
                models.lgbm, river, models.versions, models.errors, models.segmenter
            )

    def adopt_bandit(self, *, force: bool = False) -> None:
        """Decide with the learner's newest bandit checkpoint, if the policy has a bandit.

        The process that learns keeps its own bandit (unless ``force``: at start
        and after a policy reload); the others follow the checkpoint. A
        checkpoint for other actions or context is not adopted: the policy's
        fresh bandit decides, and the reason is logged.
        """
        assert self.scorer is not None
        policies = [p for p in self.scorer.policy.members() if p.doc.bandit is not None]
        card = bandit_folder(self.settings) / "bandit.json"
        if not policies or not card.exists() or (self.lock.held and not force):
            return
        mtime = card.stat().st_mtime
        if mtime == self._bandit_mtime and not force:
            return
        try:
            bandit = ContextualBandit.load(card.parent)
        except Exception:
            log.exception("bandit checkpoint %s unreadable; the policy's own bandit decides", card)
            return
        for policy in policies:  # champion and canary share one learnt bandit
            try:
                policy.attach_bandit(bandit)
            except Exception:
                log.exception("bandit checkpoint %s not adopted by %s", card, policy.source)
        self._bandit_mtime = mtime

    async def learn_bandit(self) -> int:
        """Learn the ended sessions' rewards and checkpoint the bandit (the lock holder)."""
        assert self.scorer is not None
        bandit = next((p.bandit for p in self.scorer.policy.members() if p.bandit), None)
        if bandit is None:
            return 0
        gap_s = self.settings.features.session_gap_minutes * 60.0
        rewards = await self.in_background(self.scorer.labels.take_rewards, time.time(), gap_s)
        known, learnt = set(bandit.spec.actions), 0
        for i, (_, _, ctx, treatment, propensity, reward) in enumerate(rewards):
            if treatment in known:  # another arm's treatment the bandit cannot choose
                bandit.learn(ctx, treatment, reward, propensity)
                learnt += 1
            if i % 200 == 199:
                await asyncio.sleep(0)  # let requests in
        if learnt:
            metrics.BANDIT_LEARNED.inc(learnt)
            folder = bandit.save(bandit_folder(self.settings))  # a few ms: on this thread
            self._bandit_mtime = (folder / "bandit.json").stat().st_mtime
        return learnt

    async def learn_segments(self) -> int:
        """Move the streaming centroids with the ended sessions' vectors (the lock holder)."""
        assert self.scorer is not None
        models = self.scorer.models
        version = models.versions.get(SEGMENTER)
        gap_s = self.settings.features.session_gap_minutes * 60.0
        points = await self.in_background(
            self.scorer.labels.take_segment_points, time.time(), gap_s
        )
        if models.segmenter is None or version is None or not points:
            return 0
        path = self.settings.paths.segment_stream
        stream = self._segment_stream
        if stream is None and path.exists():
            try:
                stream = StreamingCentroids.load(path)
            except Exception:
                log.exception("streaming centroids %s unreadable; starting again", path)
        if stream is None or stream.version != version:
            seed = self.settings.segments.seed
            stream = StreamingCentroids.start(version, models.segmenter.centroids, seed=seed)
        dims = stream.centers().shape[1]
        for _, point in points:
            if len(point) == dims:  # a point of another segmenter's space is dropped
                stream.learn(point)
        self._segment_stream = stream
        await self.in_background(stream.save, path)
        return len(points)

    async def learn_loop(self) -> None:
        """The single writer: the process holding the lock learns river and the bandit;
        the others follow their checkpoints."""
        s = self.settings
        while True:
            await asyncio.sleep(LEARN_EVERY_S)
            try:
                assert self.scorer is not None
                if not self.lock.try_acquire():
                    self._adopt_river_checkpoint()
                    self.adopt_bandit()
                    continue
                try:
                    await self.learn_bandit()
                except Exception:
                    log.exception("bandit learning failed; will retry")
                try:
                    await self.learn_segments()
                except Exception:
                    log.exception("streaming centroids failed; will retry")
                models = self.scorer.models
                if models.river is None:
                    continue
                examples = await self.in_background(
                    self.scorer.labels.take_labelled,
                    time.time(),
                    s.features.session_gap_minutes * 60.0,
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
                await self.in_background(
                    models.river.checkpoint,
                    _river_checkpoint(s, models.versions.get(registry.RIVER)),
                )
            except Exception:
                log.exception("river learning failed; will retry")

    async def flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY_S)
            try:
                await self.in_background(self.flush)
            except Exception:  # kept in memory; the next tick retries
                log.exception("flushing the decision log or label queue failed")

    def flush(self) -> None:
        if self.scorer is not None:
            self.scorer.log.flush()
            self.scorer.inbox.flush()
            self.scorer.quarantine.flush()
            self.scorer.labels.flush()
