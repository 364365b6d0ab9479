"""The stream worker: live events from the Redis Stream into the online and raw stores.

``microtune stream-worker`` runs one; several share the stream's partitions
(:mod:`stores.event_stream`). Every third of ``lease_s`` a worker renews its
leases and takes its share of the partitions: ``ceil(partitions / live
workers)``, releasing extras (after storing what it holds) when more workers
have come. A partition it takes from a worker that died comes with that
worker's pending entries, which it claims (``XAUTOCLAIM``) and handles
before any new one. Each step:

1. reads up to ``batch`` new entries of each partition it holds
   (``XREADGROUP``);
2. decodes each event and checks it against the contract again: one that
   fails (a producer other than the API, an older contract) goes to the dead
   letters with its reason, and is acknowledged;
3. folds the consented behaviour events into their sessions' online state,
   with the scorer's folds (:func:`features.stream.fold_sessions`), in one
   Redis transaction with the sessions' folded-id hashes. The transaction
   watches the sessions' keys: an event already in its session's hash is
   not folded again (a redelivery, a client's retry), and a session another
   worker changed meanwhile makes the transaction start again;
4. holds the events until ``raw_flush_s`` or ``raw_flush_events``, appends
   them to the raw store (one copy per event id, store-wide), and only then
   acknowledges their entries.

An entry is acknowledged only after both writes, so a worker killed at any
point loses nothing: a survivor claims its entries, and both stores take
each event once.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

import orjson
import pyarrow.json as pj

from core.settings import Settings
from events.contract import (
    RECORD_ONLY_TYPES,
)
from events.raw_store import RawEventStore
from feature_repo.features import SESSION_VIEW
from features.stream import Row, fold_sessions
from serving.online import OnlineFeatures
from serving.redis_rows import RedisSessionRows
from serving.stream_records import AS_STORED, check, decode, first_of_each
from stores.event_stream import GROUP, EventStream
from stores.online_state import record_write

log = logging.getLogger("microtune.stream")
#: Renew a lease only if this worker still holds it; hand one back the same way.
_RENEW = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then "
    "return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end"
)
_RELEASE = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
    "else return 0 end"
)
#: Transactions tried before a batch is left for later (other workers kept winning).
MAX_TRIES = 50


@dataclass
class WorkerStats:
    """What one worker has done since it started."""

    read: int = 0
    claimed: int = 0
    folded: int = 0
    duplicates: int = 0
    late: int = 0
    dead: int = 0
    stored: int = 0
    acked: int = 0
    conflicts: int = 0


class StreamWorker:
    """One consumer of the event stream (see the module's docstring)."""

    def __init__(
        self, settings: Settings, name: str, *, online: OnlineFeatures | None = None
    ) -> None:
        from stores.feature_store import open_store

        self.settings, self.name, self.cfg = settings, name, settings.stream
        self.stream = EventStream(settings)
        self.client, self.keys = self.stream.client, self.stream.keys
        self.online = online or OnlineFeatures(open_store(settings), timeout_s=5.0)
        self.rows = RedisSessionRows(self.online)
        self.raw = RawEventStore(settings.paths.raw_events)
        self.stats = WorkerStats()
        #: The partitions this worker holds the lease of.
        self.owned: set[int] = set()
        #: Bodies of the events folded, not yet stored, and their entries by partition.
        self._held: list[bytes] = []
        self._held_ids: dict[int, list[bytes]] = defaultdict(list)
        self._held_since = 0.0
        #: The raw-store writes run here, one at a time, beside the folding.
        self._storer = ThreadPoolExecutor(1, thread_name_prefix="store")
        self._storing: Future[None] | None = None
        self._balanced_at = -math.inf
        self._recorded_at = 0.0
        self._recover = False
        self._renew = self.client.register_script(_RENEW)
        self._release = self.client.register_script(_RELEASE)
        self.stream.ensure_group()
        # Counted among the live workers at once, so that workers started together share.
        self.client.zadd(self.keys.workers, {self.name: time.time()})

    # -- the loop -------------------------------------------------------------

    def run(
        self, stop: threading.Event, report: Callable[[WorkerStats], None] | None = None
    ) -> WorkerStats:
        """Work until ``stop`` is set, then store, acknowledge and hand back its partitions."""
        import redis

        last = time.monotonic()
        pause = 0.0
        while not stop.is_set():
            try:
                self.step()
                pause = 0.0
            except (redis.RedisError, OSError, sqlite3.Error) as exc:
                # Redis or the raw store away: nothing unstored is acknowledged; its entries
                # stay pending with this worker, read again once it recovers.
                self._recover = True
                pause = min(max(2 * pause, 0.1), 5.0)
                log.warning("%s; retrying in %.1f s", type(exc).__name__, pause)
                stop.wait(pause)
            if report is not None and time.monotonic() - last >= 5.0:
                report(self.stats)
                last = time.monotonic()
        with contextlib.suppress(redis.RedisError):
            self.flush()
            self.leave()
        self._storer.shutdown(wait=True)
        return self.stats

    def step(self) -> int:
        """One read (after a rebalance, when due), fold and, when due, store; returns the
        entries taken."""
        if time.monotonic() - self._balanced_at >= self.cfg.lease_s / 3:
            self.balance()
        if self._recover:  # a step failed half-way: its entries are pending with this worker
            self.flush()
            for k in sorted(self.owned):
                self._take_over(k)
            self._recover = False
        taken = 0
        if self.owned:
            got = self.client.xreadgroup(
                GROUP,
                self.name,
                {self.keys.events(k): ">" for k in sorted(self.owned)},
                count=self.cfg.batch,
                block=self.cfg.block_ms,
            )
            for key, items in got or []:
                self.handle(_partition_of(key), items)
                taken += len(items)
        else:
            time.sleep(self.cfg.block_ms / 1000)
        due = self._held and (
            len(self._held) >= self.cfg.raw_flush_events
            or time.monotonic() - self._held_since >= self.cfg.raw_flush_s
        )
        # Stored on the storer's thread while this one folds on, one store at a time:
        # while one runs, the events wait for the next.
        if due and (self._storing is None or self._storing.done()):
            self._collect()
            self._hand_off()
        return taken

    def balance(self) -> None:
        """Renew the leases, hand back extras, take free partitions up to the fair share."""
        now = time.time()
        ms = int(self.cfg.lease_s * 1000)
        self.client.zadd(self.keys.workers, {self.name: now})
        self.client.zremrangebyscore(self.keys.workers, 0, now - 10 * self.cfg.lease_s)
        live = int(self.client.zcount(self.keys.workers, now - self.cfg.lease_s, "+inf"))
        share = math.ceil(self.keys.partitions / max(live, 1))
        for k in sorted(self.owned):
            if not self._renew(keys=[self.keys.lease(k)], args=[self.name, ms]):
                log.warning("lost the lease of partition %d (stalled past lease_s)", k)
                self.owned.discard(k)
        if len(self.owned) > share:
            self.flush()  # nothing held of a partition handed over
            for k in sorted(self.owned)[share:]:
                self._release(keys=[self.keys.lease(k)], args=[self.name])
                self.owned.discard(k)
        for k in range(self.keys.partitions):
            if len(self.owned) >= share:
                break
            if k not in self.owned and self.client.set(
                self.keys.lease(k), self.name, nx=True, px=ms
            ):
                self.owned.add(k)
                self._take_over(k)
        self._balanced_at = time.monotonic()

    def leave(self) -> None:
        """Hand back every partition at once (a clean stop), for the others to take."""
        for k in sorted(self.owned):
            self._release(keys=[self.keys.lease(k)], args=[self.name])
        self.owned.clear()
        self.client.zrem(self.keys.workers, self.name)

    def _take_over(self, k: int) -> None:
        """Claim the entries earlier holders of partition ``k`` left pending, and handle
        them, in order, before any new one."""
        claimed: list[tuple[bytes, dict[bytes, bytes]]] = []
        start: Any = "0-0"
        while True:
            reply = self.client.xautoclaim(
                self.keys.events(k),
                GROUP,
                self.name,
                min_idle_time=0,
                start_id=start,
                count=self.cfg.batch,
            )
            start = reply[0]
            claimed += [(i, f) for i, f in reply[1] if f is not None]
            if start in (b"0-0", "0-0"):
                break
        if claimed:
            log.info("partition %d: claimed %d entries left pending", k, len(claimed))
            self.stats.claimed += len(claimed)
            self.handle(k, claimed)

    # -- one batch ------------------------------------------------------------

    def handle(self, k: int, entries: Sequence[tuple[bytes, dict[bytes, bytes]]]) -> None:
        """Check, fold and hold a batch of partition ``k``'s entries (the dead ones
        acknowledged at once)."""
        self.stats.read += len(entries)
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        held: list[bytes] = []
        held_ids: list[bytes] = []
        dead: list[tuple[bytes, bytes, str]] = []
        for entry_id, fields in entries:
            body = fields.get(b"e", b"")
            try:
                record = orjson.loads(body)
            except orjson.JSONDecodeError:
                dead.append((entry_id, body, "e: not JSON"))
                continue
            ts = decode(record)
            if ts is None:  # not as the API writes it: the contract says why, or takes it
                reason, body, record, ts = check(record)
                if reason is not None:
                    dead.append((entry_id, body, reason))
                    continue
            held.append(body)
            held_ids.append(entry_id)
            if record["consent"] and record["event_type"] not in RECORD_ONLY_TYPES:
                by_session[record["session_id"]].append({**record, "ts": ts})
        if by_session:
            self._fold(by_session)
        if dead:
            self._bury(k, dead)
        if not self._held:
            self._held_since = time.monotonic()
        self._held += held
        self._held_ids[k] += held_ids

    def _fold(self, by_session: dict[str, list[dict[str, Any]]]) -> None:
        """Fold the events into their sessions' state, exactly once per event id."""
        import redis

        sessions = list(by_session)
        state_keys = [self.rows.key(s) for s in sessions]
        seen_keys = [self.keys.seen(s) for s in sessions]
        for _ in range(MAX_TRIES):
            with self.client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(*state_keys, *seen_keys)
                    fresh, stored, duplicates = self._read(by_session, state_keys, seen_keys)
                    new, late = fold_sessions(stored, fresh)
                    tx.multi()
                    for key, fields in self.rows.rows(new):
                        tx.hset(key, mapping=fields)
                        if self.rows.ttl_s:
                            tx.expire(key, self.rows.ttl_s)
                    for session, evs in fresh.items():
                        tx.hset(self.keys.seen(session), mapping={e["event_id"]: 1 for e in evs})
                        tx.expire(self.keys.seen(session), self.cfg.seen_ttl_s)
                    tx.execute()
                except redis.WatchError:
                    self.stats.conflicts += 1
                    continue
            self.stats.folded += sum(map(len, fresh.values())) - late
            self.stats.duplicates += duplicates
            self.stats.late += late
            self._record_write()
            return
        raise RuntimeError(f"the fold lost {MAX_TRIES} races with other workers; retried later")

    def _read(
        self,
        by_session: dict[str, list[dict[str, Any]]],
        state_keys: list[bytes],
        seen_keys: list[str],
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, Row | None], int]:
        """In one round trip: the events not yet folded into their sessions, the
        sessions' stored rows, and how many events were folded before."""
        with self.client.pipeline(transaction=False) as read:
            for seen, evs in zip(seen_keys, by_session.values(), strict=True):
                read.hmget(seen, [e["event_id"] for e in evs])
            for state in state_keys:
                read.hmget(state, self.rows.fields)
            replies = read.execute()
        n = len(seen_keys)
        now = time.time()
        fresh: dict[str, list[dict[str, Any]]] = {}
        stored: dict[str, Row | None] = {}
        duplicates = 0
        for i, (session, evs) in enumerate(by_session.items()):
            ids: set[str] = set()
            keep = []
            for e, mark in zip(evs, replies[i], strict=True):
                if mark is not None or e["event_id"] in ids:
                    duplicates += 1
                else:
                    ids.add(e["event_id"])
                    keep.append(e)
            if keep:
                fresh[session] = keep
                stored[session] = self.rows.parse(replies[n + i], now)
        return fresh, stored, duplicates

    def _bury(self, k: int, dead: list[tuple[bytes, bytes, str]]) -> None:
        """Dead letters: the entry's body, its id and the reason; then acknowledged."""
        with self.client.pipeline(transaction=False) as pipe:
            for entry_id, body, reason in dead:
                pipe.xadd(self.keys.dead, {"e": body, "entry": entry_id, "reason": reason})
            pipe.xack(self.keys.events(k), GROUP, *[d[0] for d in dead])
            pipe.execute()
        self.stats.dead += len(dead)
        log.warning("%d events to the dead letters (%s)", len(dead), dead[0][2])

    def flush(self) -> None:
        """Store everything held and acknowledge it; returns when done."""
        self._collect()
        self._hand_off()
        self._collect()

    def _hand_off(self) -> None:
        """Give the held events to the storer's thread."""
        if self._held:
            held, ids = self._held, self._held_ids
            self._held, self._held_ids = [], defaultdict(list)
            self._storing = self._storer.submit(self._store, held, ids)

    def _collect(self) -> None:
        """Wait for the store under way; its failure is raised here (its entries stay
        pending, to be claimed again)."""
        storing, self._storing = self._storing, None
        if storing is not None:
            storing.result()

    def _store(self, held: list[bytes], held_ids: dict[int, list[bytes]]) -> None:
        """Append the events to the raw store, then acknowledge their entries."""
        table = pj.read_json(io.BytesIO(b"\n".join(held)), parse_options=AS_STORED)
        duplicates, _ = self.raw.append(first_of_each(table))
        with self.client.pipeline(transaction=False) as pipe:
            for k, ids in held_ids.items():
                for lo in range(0, len(ids), 5_000):
                    pipe.xack(self.keys.events(k), GROUP, *ids[lo : lo + 5_000])
            pipe.execute()
        self.stats.stored += table.num_rows - duplicates
        self.stats.acked += sum(map(len, held_ids.values()))
        for k in held_ids:  # what every worker is done with leaves Redis
            self.stream.trim(k)

    def _record_write(self) -> None:
        """The session view's last write, for the scorers' freshness gauge (once a second)."""
        now = time.time()
        if now - self._recorded_at >= 1.0:
            record_write(self.settings.paths.feast, SESSION_VIEW, now)
            self._recorded_at = now


def _partition_of(key: bytes | str) -> int:
    """The partition number of a stream key (``...:events:<k>``)."""
    text = key.decode() if isinstance(key, bytes) else key
    return int(text.rsplit(":", 1)[1])


def stats_line(stats: WorkerStats) -> str:
    """One line for the worker's progress output."""
    return ", ".join(f"{k} {v:,}" for k, v in asdict(stats).items())
