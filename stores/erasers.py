"""``forget``, and the stores that hold session or user data (:mod:`stores.erasure`).

A store added later gets its eraser here, beside the others: the coverage
test (``tests/test_erasure.py``) fails while any file under a served home
holds a session id outside every registered store's roots.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from core.errors import InputError
from core.files import atomic_write_parquet
from core.privacy import audit_hash, is_pseudonym, pseudonymizer
from core.settings import Settings
from events.raw_store import RawEventStore
from feature_repo.features import SESSION_KEY, USER_KEY
from stores.decision_log import rewrite_log_lines
from stores.erasure import (
    STORES,
    ErasureReport,
    Subject,
    audit_log,
    store,
)
from stores.event_stream import EventStream, redis_client

# -- helpers ------------------------------------------------------------------


def _files(roots: Iterable[Path], pattern: str) -> list[Path]:
    return sorted(p for root in roots if root.exists() for p in root.rglob(pattern) if p.is_file())


def _parquet_sessions(files: Iterable[Path], users: frozenset[str]) -> set[str]:
    found: set[str] = set()
    wanted = pa.array(sorted(users), pa.string())
    for f in files:
        names = set(pq.read_schema(f).names)
        if not {SESSION_KEY, USER_KEY} <= names:
            continue
        t = pq.read_table(f, columns=[SESSION_KEY, USER_KEY])
        hit = pc.fill_null(pc.is_in(t.column(USER_KEY), value_set=wanted), False)
        found |= set(t.filter(hit).column(SESSION_KEY).to_pylist())
    return found


def _json_sessions(
    files: Iterable[Path], users: frozenset[str], row: Callable[[dict[str, Any]], Any]
) -> set[str]:
    found: set[str] = set()
    for f in files:
        for line in f.read_bytes().splitlines():
            try:
                r = row(orjson.loads(line))
            except (orjson.JSONDecodeError, TypeError, KeyError, AttributeError):
                continue
            user, session = r.get(USER_KEY), r.get(SESSION_KEY)
            if isinstance(user, str) and user in users and isinstance(session, str):
                found.add(session)
    return found


def _rewrite_parquet(path: Path, subject: Subject) -> int:
    """Rewrite a Parquet file without the subject's rows (atomically); how many went."""
    t = pq.read_table(path)
    hit = pa.array([False] * t.num_rows)
    for key, ids in ((SESSION_KEY, subject.sessions), (USER_KEY, subject.users)):
        if key in t.column_names and ids:
            wanted = pa.array(sorted(ids), pa.string())
            hit = pc.or_(hit, pc.fill_null(pc.is_in(t.column(key), value_set=wanted), False))
    n = pc.sum(hit).as_py() or 0
    if n:
        atomic_write_parquet(path, t.filter(pc.invert(hit)))
    return n


def scrub_sqlite(path: Path, deletes: list[tuple[str, list[Any]]]) -> int:
    """Run ``DELETE`` statements with ``secure_delete`` on, then checkpoint and truncate the
    write-ahead log, so no page that held the rows keeps their bytes; rows deleted."""
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30.0, isolation_level=None)
    try:
        conn.execute("PRAGMA secure_delete=ON")
        conn.execute("BEGIN IMMEDIATE")
        removed = 0
        try:
            for sql, params in deletes:
                removed += conn.execute(sql, params).rowcount
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if removed:
            # A reader that holds an old snapshot keeps the log from being truncated: retry.
            for _ in range(50):
                busy, _, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    break
                time.sleep(0.1)
        return removed
    finally:
        conn.close()


def _tables_with(conn: sqlite3.Connection, column: str) -> list[str]:
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return [
        t for t in tables if column in {r[1] for r in conn.execute(f'PRAGMA table_info("{t}")')}
    ]


def _id_deletes(path: Path, subject: Subject) -> list[tuple[str, list[Any]]]:
    """DELETE statements for every table of ``path`` with a session or user id column."""
    if not path.exists():
        return []
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        out: list[tuple[str, list[Any]]] = []
        for key, ids in ((SESSION_KEY, subject.sessions), (USER_KEY, subject.users)):
            if not ids:
                continue
            marks = ",".join("?" * len(ids))
            for t in _tables_with(conn, key):
                out.append((f'DELETE FROM "{t}" WHERE {key} IN ({marks})', sorted(ids)))
        return out
    finally:
        conn.close()


# -- the stores ---------------------------------------------------------------


def _raw_roots(s: Settings) -> list[Path]:
    return [s.paths.raw_events]


def _raw_sessions(s: Settings, users: frozenset[str]) -> set[str]:
    return _parquet_sessions(RawEventStore(s.paths.raw_events).part_files(), users)


@store("raw events", _raw_roots, _raw_sessions)
def _raw(s: Settings, subject: Subject) -> int:
    return RawEventStore(s.paths.raw_events).drop_matching(subject.sessions, subject.users)


def _quarantine_roots(s: Settings) -> list[Path]:
    return [s.paths.quarantine]


def _quarantined(record: dict[str, Any]) -> dict[str, Any]:
    row = record.get("row")
    return row if isinstance(row, dict) else {}


@store(
    "quarantine",
    _quarantine_roots,
    lambda s, users: _json_sessions(_files([s.paths.quarantine], "*.jsonl"), users, _quarantined),
)
def _quarantine(s: Settings, subject: Subject) -> int:
    # The scorer appends what POST /v1/events rejects (quarantine/api/): in place, locked.
    ids = subject.sessions | subject.users
    return sum(
        rewrite_log_lines(f, subject.matches, _quarantined, ids)
        for f in _files([s.paths.quarantine], "*.jsonl")
    )


def _same(record: dict[str, Any]) -> dict[str, Any]:
    return record


def _append_logs(name: str, roots: Callable[[Settings], list[Path]]) -> None:
    """Register folders of :class:`stores.decision_log.AppendLog` files: running scorers
    append to them, so they are rewritten in place, under the lock the writers share."""

    def sessions(s: Settings, users: frozenset[str]) -> set[str]:
        return _json_sessions(_files(roots(s), "*.jsonl"), users, _same)

    def erase(s: Settings, subject: Subject) -> int:
        ids = subject.sessions | subject.users
        return sum(
            rewrite_log_lines(f, subject.matches, _same, ids) for f in _files(roots(s), "*.jsonl")
        )

    store(name, roots, sessions)(erase)


_append_logs("event inbox", lambda s: [s.paths.live_inbox, s.paths.ingested_inbox])


def _offline_roots(s: Settings) -> list[Path]:
    p = s.paths
    return [p.session_features, p.session_outcomes, p.user_features, p.session_segments]


@store(
    "offline tables",
    _offline_roots,
    lambda s, users: _parquet_sessions(_files(_offline_roots(s), "*.parquet"), users),
)
def _offline(s: Settings, subject: Subject) -> int:
    return sum(_rewrite_parquet(f, subject) for f in _files(_offline_roots(s), "*.parquet"))


_append_logs("decision log", lambda s: [s.paths.decisions])


def label_queue(s: Settings) -> Path:
    """The scorer's label queue (``serving/learner.py``)."""
    return s.paths.serving / "labels.db"


def _sqlite_roots(path: Path) -> list[Path]:
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


@store("label queue", lambda s: _sqlite_roots(label_queue(s)))
def _labels(s: Settings, subject: Subject) -> int:
    return scrub_sqlite(label_queue(s), _id_deletes(label_queue(s), subject))


def _entity_keys(subject: Subject) -> list[Any]:
    """Feast's entity keys of the subject's sessions and user."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    return [
        EntityKey(join_keys=[join_key], entity_values=[Value(string_val=i)])
        for join_key, ids in ((SESSION_KEY, subject.sessions), (USER_KEY, subject.users))
        for i in sorted(ids)
    ]


def _online_roots(s: Settings) -> list[Path]:
    return _sqlite_roots(s.paths.feast / "online.db")


@store("online store", _online_roots)
def _online(s: Settings, subject: Subject) -> int:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.infra.online_stores.helpers import _redis_key

    keys = _entity_keys(subject)
    if not keys:
        return 0
    if s.profile == "production":  # Feast's Redis store: one hash per entity and project
        client = redis_client(s)
        removed: Any = client.delete(*[_redis_key(s.project, k, 3) for k in keys])
        return int(removed)
    path = s.paths.feast / "online.db"
    if not path.exists():
        return 0
    conn = sqlite3.connect(path, timeout=30.0)
    try:
        tables = _tables_with(conn, "entity_key")
    finally:
        conn.close()
    raw = [serialize_entity_key(k, entity_key_serialization_version=3) for k in keys]
    marks = ",".join("?" * len(raw))
    deletes: list[tuple[str, list[Any]]] = [
        (f'DELETE FROM "{t}" WHERE entity_key IN ({marks})', list(raw)) for t in tables
    ]
    return scrub_sqlite(path, deletes)


def _stream_sessions(s: Settings, users: frozenset[str]) -> set[str]:
    return EventStream(s).sessions_of(users) if s.stream.enabled else set()


@store("event stream", lambda s: [], _stream_sessions)
def _event_stream(s: Settings, subject: Subject) -> int:
    """The Redis Stream's entries and dead letters, and the sessions' folded-id hashes."""
    if not s.stream.enabled:
        return 0
    return EventStream(s).erase(subject.sessions, subject.users)


# -- forget -------------------------------------------------------------------


def subject_for(settings: Settings, *, user: str | None, session: str | None) -> Subject:
    """The subject of a request: the user's pseudonym and all its sessions, or one session."""
    if (user is None) == (session is None):
        raise InputError("name exactly one of --user or --session")
    if session is not None:
        if not session.strip():
            raise InputError("--session is empty: give the session id to erase")
        return Subject.of(sessions=[session])
    assert user is not None
    if not user.strip():
        raise InputError("--user is empty: give the user id the shop knows, or its pseudonym")
    users = frozenset({user if is_pseudonym(user) else str(pseudonymizer(settings)(user))})
    sessions: set[str] = set()
    for s in STORES.values():
        if s.sessions_of is not None:
            sessions |= s.sessions_of(settings, users)
    return Subject(frozenset(sessions), users)


def forget(
    settings: Settings,
    *,
    user: str | None = None,
    session: str | None = None,
    progress: Callable[[str, int], None] | None = None,
) -> ErasureReport:
    """Erase a user (all their sessions) or one session from every store; audit it.

    Idempotent: a second run finds nothing and removes nothing (and is audited too).
    """
    started = time.perf_counter()
    subject = subject_for(settings, user=user, session=session)
    kind, given = ("user", user) if user is not None else ("session", session)
    assert given is not None
    report = ErasureReport(kind, audit_hash(settings, given), len(subject.sessions))
    for s in STORES.values():
        report.removed[s.name] = s.erase(settings, subject) if subject else 0
        if progress is not None:
            progress(s.name, report.removed[s.name])
    report.seconds = time.perf_counter() - started
    record = {"at": datetime.now(UTC).isoformat(), **report.as_dict()}
    path = audit_log(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(record) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)
    return report
