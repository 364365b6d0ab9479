"""Live events in a Redis Stream: where they wait between the API and the stream workers.

The production profile's path for ``POST /v1/events`` when
``MICROTUNE_STREAM__ENABLED=true`` (docs/operations.md, "Events through a
Redis Stream"). Everything lives on the Redis of ``redis_url``, under the
project's name, so that homes sharing a Redis do not meet:

* ``microtune:<project>:events:<k>``, the streams, ``k`` from 0 to
  ``partitions - 1``: one entry per accepted event, its field ``e`` the event
  as the API kept it (validated, minimized without consent, the user id
  pseudonymized), in JSON. A session's events all go to one partition
  (:func:`partition`), and one worker at a time holds a partition
  (``...:lease:<k>``), so a session's events are folded in the order they
  came. Each stream's consumer group ``fold`` tracks what the workers
  (:mod:`serving.stream_worker`) have taken and acknowledged.
* ``microtune:<project>:events:dead``, the dead letters: entries a worker
  could not process, with the reason.
* ``microtune:<project>:seen:<session>``, a hash of the event ids folded into
  the session's online state, written in the same transaction as the state:
  a redelivered or resent event is folded once.

:class:`EventStream` is the API's side: :meth:`~EventStream.append` answers
once Redis holds the events as the ``durability`` setting says, and
:meth:`~EventStream.admit` refuses work (:class:`StreamBusy`, a 503 with
``Retry-After``) while the backlog is over ``max_backlog``.

>>> keys = Keys("shop", 8)
>>> keys.events(partition("s-1", 8)), keys.dead, keys.seen("s-1")
('microtune:shop:events:6', 'microtune:shop:events:dead', 'microtune:shop:seen:s-1')
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from core.settings import Settings

#: The consumer group of the stream workers.
GROUP = "fold"
#: Seconds a measured backlog is trusted before it is measured again.
BACKLOG_EVERY_S = 0.2


class StreamUnavailable(Exception):
    """Redis cannot take events now: the API answers 503 and the client retries."""


class StreamBusy(StreamUnavailable):
    """The workers are behind by more than ``max_backlog`` entries."""


def partition(session_id: str, partitions: int) -> int:
    """The partition of a session's events: CRC-32 of its id, the same in every process."""
    return zlib.crc32(session_id.encode()) % partitions


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one project's event stream."""

    project: str
    partitions: int

    def events(self, k: int) -> str:
        return f"microtune:{self.project}:events:{k}"

    @property
    def all_events(self) -> list[str]:
        return [self.events(k) for k in range(self.partitions)]

    def lease(self, k: int) -> str:
        return f"microtune:{self.project}:lease:{k}"

    @property
    def workers(self) -> str:
        return f"microtune:{self.project}:workers"

    @property
    def dead(self) -> str:
        return f"microtune:{self.project}:events:dead"

    def seen(self, session_id: str) -> str:
        return f"microtune:{self.project}:seen:{session_id}"


@dataclass(frozen=True)
class Backlog:
    """How far the workers are behind."""

    lag: int  # entries not yet handed to a worker
    pending: int  # handed out, not yet acknowledged
    dead: int  # dead letters kept

    @property
    def total(self) -> int:
        return self.lag + self.pending


def redis_client(settings: Settings, timeout_s: float = 5.0) -> Any:
    """A client of the Redis at ``redis_url`` (Feast's connection-string format:
    ``host:port[,password=...,ssl=true]``) that fails at once, without retries: its
    callers answer 503, or retry in their own loop."""
    import redis
    from feast.infra.online_stores.redis import RedisOnlineStore
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    nodes, kwargs = RedisOnlineStore()._parse_connection_string(settings.redis_url)
    return redis.Redis(
        **nodes[0],
        **kwargs,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )


class EventStream:
    """One project's event stream on Redis: append, measure, erase."""

    def __init__(
        self, settings: Settings, client: Any | None = None, timeout_s: float = 5.0
    ) -> None:
        self.settings = settings
        self.cfg = settings.stream
        self.keys = Keys(settings.project, settings.stream.partitions)
        self.client = client if client is not None else redis_client(settings, timeout_s)
        self._backlog: Backlog | None = None
        self._measured = 0.0
        self._problem: str | None = None
        self._checked = False

    def ready(self) -> None:
        """On first contact: the group made and the durability checked. Raises
        :class:`StreamUnavailable` with what to do when Redis would lose events."""
        import redis

        if not self._checked:
            try:
                self.ensure_group()
                self._problem = self.durability_problem()
            except redis.RedisError as exc:
                raise StreamUnavailable(f"Redis: {type(exc).__name__}") from exc
            self._checked = True
        if self._problem is not None:
            raise StreamUnavailable(self._problem)

    def ensure_group(self) -> None:
        """Create the streams and their consumer groups if they are not there (from the start)."""
        import redis

        for key in self.keys.all_events:
            try:
                self.client.xgroup_create(key, GROUP, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def durability_problem(self) -> str | None:
        """Why an acknowledged event could be lost on this Redis, or None.

        With ``durability: aof`` Redis must write its append-only file. A Redis
        that forbids ``CONFIG`` (managed services) is trusted as configured.
        """
        import redis

        if self.cfg.durability != "aof":
            return None
        try:
            conf = self.client.config_get("appendonly")
        except redis.ResponseError:
            return None
        if conf.get("appendonly") != "yes":
            return (
                "Redis does not write an append-only file (appendonly no): accepted events "
                "would not survive a restart. Run it with --appendonly yes, or set "
                "MICROTUNE_STREAM__DURABILITY=replicas (or none, for tests)"
            )
        return None

    def append(self, records: Sequence[dict[str, Any]]) -> None:
        """Add the events, one entry each, and return once Redis holds them durably."""
        import redis

        if not records:
            return
        self.ready()
        try:
            n = self.keys.partitions
            with self.client.pipeline(transaction=False) as pipe:
                for r in records:
                    k = partition(r["session_id"], n)
                    pipe.xadd(self.keys.events(k), {"e": orjson.dumps(r)})
                pipe.execute()
            if self.cfg.durability == "replicas":
                held = self.client.wait(self.cfg.replicas, self.cfg.wait_ms)
                if held < self.cfg.replicas:
                    raise StreamUnavailable(
                        f"{held} of {self.cfg.replicas} replicas took the events in "
                        f"{self.cfg.wait_ms} ms; retry"
                    )
        except redis.RedisError as exc:
            raise StreamUnavailable(f"Redis: {type(exc).__name__}") from exc

    def backlog(self) -> Backlog:
        """The workers' lag and pending entries over the partitions, and the dead letters."""
        with self.client.pipeline(transaction=False) as pipe:
            for key in self.keys.all_events:
                pipe.xinfo_groups(key)
                pipe.xlen(key)
            pipe.xlen(self.keys.dead)
            *replies, dead = pipe.execute()
        lag = pending = 0
        for groups, length in zip(replies[::2], replies[1::2], strict=True):
            for g in groups:
                if _text(g["name"]) == GROUP:
                    pending += int(g["pending"])
                    # Redis's count goes wrong once entries were deleted (an erasure):
                    # what is not handed out yet is still in the stream, which the
                    # workers keep trimmed to what they are not done with.
                    counted = g.get("lag")
                    lag += min(int(counted), int(length)) if counted is not None else int(length)
        return Backlog(lag, pending, int(dead))

    def trim(self, k: int) -> int:
        """Drop partition ``k``'s entries that every worker is done with: handed out and
        acknowledged. Returns how many went."""
        key = self.keys.events(k)
        groups = [g for g in self.client.xinfo_groups(key) if _text(g["name"]) == GROUP]
        if not groups:
            return 0
        oldest = self.client.xpending(key, GROUP)["min"]
        if oldest is not None:
            keep_from = _text(oldest)
        else:
            ms, seq = _text(groups[0]["last-delivered-id"]).split("-")
            keep_from = f"{ms}-{int(seq) + 1}"
        return int(self.client.xtrim(key, minid=keep_from, approximate=False))

    def admit(self, now: float | None = None) -> None:
        """Raise :class:`StreamBusy` while the backlog is over ``max_backlog``."""
        import redis

        now = time.monotonic() if now is None else now
        self.ready()
        if self._backlog is None or now - self._measured > BACKLOG_EVERY_S:
            try:
                self._backlog, self._measured = self.backlog(), now
            except redis.RedisError as exc:
                raise StreamUnavailable(f"Redis: {type(exc).__name__}") from exc
        if self._backlog.total > self.cfg.max_backlog:
            raise StreamBusy(
                f"the stream workers are {self._backlog.total:,} events behind "
                f"(MICROTUNE_STREAM__MAX_BACKLOG={self.cfg.max_backlog:,}); retry shortly"
            )

    def sessions_of(self, users: Iterable[str]) -> set[str]:
        """The sessions of these user pseudonyms that the stream still holds events of."""
        users = set(users)
        return {
            e["session_id"]
            for key in (*self.keys.all_events, self.keys.dead)
            for _, e in _events_of(self.client, key)
            if _belongs(e, set(), users) and isinstance(e.get("session_id"), str)
        }

    def erase(self, sessions: Iterable[str], users: Iterable[str]) -> int:
        """Delete the entries (and dead letters) of these sessions or user pseudonyms, and
        the sessions' folded-id hashes. Returns the entries and keys removed."""
        sessions, users = set(sessions), set(users)
        removed = 0
        for key in (*self.keys.all_events, self.keys.dead):
            doomed = [i for i, e in _events_of(self.client, key) if _belongs(e, sessions, users)]
            for lo in range(0, len(doomed), 1_000):
                removed += int(self.client.xdel(key, *doomed[lo : lo + 1_000]))
        if sessions:
            removed += int(self.client.delete(*[self.keys.seen(s) for s in sessions]))
        return removed


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def _events_of(client: Any, key: str) -> Iterable[tuple[bytes, dict[str, Any]]]:
    """The entries of ``key`` with their event decoded (those that do not decode: skipped)."""
    for entry_id, fields in _entries(client, key):
        try:
            e = orjson.loads(fields.get(b"e", b"{}"))
        except orjson.JSONDecodeError:
            continue
        if isinstance(e, dict):
            yield entry_id, e


def _entries(client: Any, key: str, chunk: int = 5_000) -> Iterable[tuple[bytes, dict]]:
    """Every entry of the stream ``key``, oldest first, read in chunks."""
    start = "-"
    while got := client.xrange(key, min=start, count=chunk):
        yield from got
        if len(got) < chunk:
            return
        start = f"({_text(got[-1][0])}"  # after the last one read


def _belongs(e: dict[str, Any], sessions: set[str], users: set[str]) -> bool:
    session, user = e.get("session_id"), e.get("user_id")  # a dead letter may hold anything
    return (isinstance(session, str) and session in sessions) or (
        isinstance(user, str) and user in users
    )
