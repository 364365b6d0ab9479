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
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
import pyarrow as pa

from core.settings import Settings
from events.contract import (
    ARROW_SCHEMA,
    CONSENTLESS_FIELDS,
    FIELDS,
    RECORD_ONLY_TYPES,
    minimize_row,
)
from events.raw_store import RawEventStore
from events.validation import validate_rows
from feature_repo.features import SESSION_VIEW
from features.stream import fold_sessions
from serving.online import OnlineFeatures
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
#: Valid values for the required fields minimization removes (checks only, never stored).
_STAND_INS = {
    f.name: (f.choices[0] if f.choices else "minimized")
    for f in FIELDS
    if f.required and f.name not in CONSENTLESS_FIELDS
}
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
        self.raw = RawEventStore(settings.paths.raw_events)
        self.stats = WorkerStats()
        #: The partitions this worker holds the lease of.
        self.owned: set[int] = set()
        self._held: list[dict[str, Any]] = []
        self._held_ids: dict[int, list[bytes]] = defaultdict(list)
        self._held_since = 0.0
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
            except redis.RedisError as exc:  # Redis away: nothing is acknowledged; retry
                self._recover = True
                pause = min(max(2 * pause, 0.1), 5.0)
                log.warning("Redis: %s; retrying in %.1f s", type(exc).__name__, pause)
                stop.wait(pause)
            if report is not None and time.monotonic() - last >= 5.0:
                report(self.stats)
                last = time.monotonic()
        with contextlib.suppress(redis.RedisError):
            self.flush()
            self.leave()
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
        if self._held and (
            len(self._held) >= self.cfg.raw_flush_events
            or time.monotonic() - self._held_since >= self.cfg.raw_flush_s
        ):
            self.flush()
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
                self.keys.events(k), GROUP, self.name, min_idle_time=0, start_id=start,
                count=self.cfg.batch,
            )  # fmt: skip
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
        records: list[Any] = []
        ids: list[bytes] = []
        dead: list[tuple[bytes, bytes, str]] = []
        for entry_id, fields in entries:
            body = fields.get(b"e", b"")
            try:
                records.append(orjson.loads(body))
                ids.append(entry_id)
            except orjson.JSONDecodeError:
                dead.append((entry_id, body, "e: not JSON"))
        result = validate_rows(map(_checkable, records), now=datetime.now(UTC))
        for r in result.rejected:
            dead.append((ids[r.position], orjson.dumps(records[r.position]), r.reason))
        rows = [minimize_row(r) for r in result.to_rows()]
        by_session: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in rows:
            if row["event_type"] not in RECORD_ONLY_TYPES and row["consent"]:
                by_session[row["session_id"]].append({**row, "ts": row["ts"].timestamp()})
        if by_session:
            self._fold(by_session)
        if dead:
            self._bury(k, dead)
        if not self._held:
            self._held_since = time.monotonic()
        self._held += rows
        self._held_ids[k] += [ids[p] for p in result.positions]

    def _fold(self, by_session: dict[str, list[dict[str, Any]]]) -> None:
        """Fold the events into their sessions' state, exactly once per event id."""
        import redis

        sessions = list(by_session)
        state_keys = [self.online.redis_session_key(s) for s in sessions]
        seen_keys = [self.keys.seen(s) for s in sessions]
        for _ in range(MAX_TRIES):
            with self.client.pipeline(transaction=True) as tx:
                try:
                    tx.watch(*state_keys, *seen_keys)
                    fresh, duplicates = self._unseen(by_session, seen_keys)
                    stored = self.online.session_states(list(fresh), time.time())
                    new, late = fold_sessions(stored, fresh)
                    tx.multi()
                    ttl = self.online.key_ttl_s
                    for key, fields in self.online.redis_session_rows(new):
                        tx.hset(key, mapping=fields)
                        if ttl:
                            tx.expire(key, ttl)
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

    def _unseen(
        self, by_session: dict[str, list[dict[str, Any]]], seen_keys: list[str]
    ) -> tuple[dict[str, list[dict[str, Any]]], int]:
        """The events not yet folded into their sessions, and how many were."""
        with self.client.pipeline(transaction=False) as read:
            for key, evs in zip(seen_keys, by_session.values(), strict=True):
                read.hmget(key, [e["event_id"] for e in evs])
            marks = read.execute()
        fresh: dict[str, list[dict[str, Any]]] = {}
        duplicates = 0
        for (session, evs), got in zip(by_session.items(), marks, strict=True):
            ids: set[str] = set()
            keep = []
            for e, mark in zip(evs, got, strict=True):
                if mark is not None or e["event_id"] in ids:
                    duplicates += 1
                else:
                    ids.add(e["event_id"])
                    keep.append(e)
            if keep:
                fresh[session] = keep
        return fresh, duplicates

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
        """Append the held events to the raw store, then acknowledge their entries."""
        if not self._held:
            return
        table = pa.Table.from_pylist(self._held, schema=ARROW_SCHEMA)
        duplicates, _ = self.raw.append(_first_of_each(table))
        with self.client.pipeline(transaction=False) as pipe:
            for k, ids in self._held_ids.items():
                for lo in range(0, len(ids), 5_000):
                    pipe.xack(self.keys.events(k), GROUP, *ids[lo : lo + 5_000])
            pipe.execute()
        self.stats.stored += table.num_rows - duplicates
        self.stats.acked += sum(map(len, self._held_ids.values()))
        self._held, self._held_ids = [], defaultdict(list)

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


def _checkable(record: Any) -> Any:
    """The record as the contract checks it: a record without consent lost its required
    device and browser to minimization (a valid stand-in is checked in their place)."""
    if isinstance(record, dict) and record.get("consent") is False:
        return {**record, **{k: v for k, v in _STAND_INS.items() if record.get(k) is None}}
    return record


def _first_of_each(table: pa.Table) -> pa.Table:
    """The table with the first row of each event id (a batch may repeat one)."""
    ids = table.column("event_id").to_pylist()
    seen: set[str] = set()
    keep = [not (i in seen or seen.add(i)) for i in ids]  # type: ignore[func-returns-value]
    return table if all(keep) else table.filter(pa.array(keep))


def stats_line(stats: WorkerStats) -> str:
    """One line for the worker's progress output."""
    return ", ".join(f"{k} {v:,}" for k, v in asdict(stats).items())
