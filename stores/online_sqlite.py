"""A packed SQLite online store for Feast: one row per entity.

Feast's ``SqliteOnlineStore`` keeps one row per feature per entity and upserts
them one ``execute`` at a time; loading a day of sessions that way runs at a
few thousand entities per second, and a read parses a row per feature. This
store implements the same online-store API (``update``, ``online_write_batch``,
``online_read``, ``teardown``), so ``feast materialize``, ``get_online_features``
and ``feast serve`` use it unchanged, with another table layout:

* one row per entity: ``entity_key`` (primary key), ``payload``,
  ``event_ts`` and ``created_ts`` (epoch seconds, UTC);
* ``payload`` packs the entity's features as ``name`` / serialized Feast
  ``Value`` pairs, each with a little-endian length prefix (see :func:`pack`);
* writes are one ``executemany`` per batch in one transaction, and the
  database runs in WAL mode, so readers keep reading while a load runs.

A row is written whole: an entity's features are always stored together with
one timestamp, as Feast's materialization and push write them.

It is selected in ``feature_store.yaml``::

    online_store:
      type: stores.online_sqlite.BatchedSqliteOnlineStore
      path: ${MICROTUNE_HOME}/feast/online.db

Examples
--------
>>> v = ValueProto(double_val=1.5)
>>> unpack(pack({"a": v}))["a"].double_val
1.5
"""

from __future__ import annotations

import os
import sqlite3
import struct
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
from feast import Entity, FeatureView
from feast.infra.key_encoding_utils import serialize_entity_key
from feast.infra.online_stores.sqlite import (
    SqliteOnlineStore,
    SqliteOnlineStoreConfig,
    _quote_id,
    _table_id,
)
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.repo_config import RepoConfig

STORE_TYPE = "stores.online_sqlite.BatchedSqliteOnlineStore"
_LEN = struct.Struct("<H")
#: SQLite page size of a new store: a row is stored in its page up to about a
#: quarter page (4 KB for 16 KB pages); longer rows overflow into more pages.
PAGE_SIZE = 16_384
#: A serialized double Value: the tag byte 0x29 (field 5, 64-bit), then 8 bytes.
_DOUBLE_SIZE = 9


class BatchedSqliteOnlineStoreConfig(SqliteOnlineStoreConfig):
    """Same options as Feast's SQLite store."""

    type: Literal["stores.online_sqlite.BatchedSqliteOnlineStore"] = STORE_TYPE  # type: ignore[assignment]


def pack(values: Mapping[str, ValueProto]) -> bytes:
    """An entity's features as one payload: (len, name, len, Value bytes) per feature."""
    parts = []
    for name, val in values.items():
        n, v = name.encode(), val.SerializeToString()
        parts += [_LEN.pack(len(n)), n, _LEN.pack(len(v)), v]
    return b"".join(parts)


def unpack(payload: bytes, wanted: set[str] | None = None) -> dict[str, ValueProto]:
    """The features of a payload (only ``wanted`` ones when given)."""
    out: dict[str, ValueProto] = {}
    off, end = 0, len(payload)
    while off < end:
        (n,) = _LEN.unpack_from(payload, off)
        name = payload[off + 2 : off + 2 + n].decode()
        off += 2 + n
        (m,) = _LEN.unpack_from(payload, off)
        if wanted is None or name in wanted:
            out[name] = ValueProto.FromString(payload[off + 2 : off + 2 + m])
        off += 2 + m
    return out


def double_values(column: np.ndarray) -> list[bytes]:
    """Serialized ``Value(double_val=x)`` for each x, built without protobuf objects.

    >>> double_values(np.array([1.5])) == [ValueProto(double_val=1.5).SerializeToString()]
    True
    """
    rec = np.empty(len(column), dtype=[("tag", "u1"), ("value", "<f8")])
    rec["tag"] = 0x29
    rec["value"] = column
    return rec.view("V9").tolist()


def pack_doubles(columns: Mapping[str, np.ndarray]) -> list[bytes]:
    """:func:`pack` of float64 columns for every row at once, with numpy.

    >>> rows = pack_doubles({"a": np.array([1.0, 2.0]), "b": np.array([3.0, np.nan])})
    >>> rows[0] == pack({"a": ValueProto(double_val=1.0), "b": ValueProto(double_val=3.0)})
    True
    """
    names = list(columns)
    n_rows = len(columns[names[0]]) if names else 0
    fields: list[tuple[str, str]] = []
    for i, name in enumerate(names):
        fields += [(f"h{i}", f"V{2 + len(name.encode()) + 2}"), (f"t{i}", "u1"), (f"v{i}", "<f8")]
    rec = np.empty(n_rows, dtype=np.dtype(fields))
    for i, name in enumerate(names):
        n = name.encode()
        header = _LEN.pack(len(n)) + n + _LEN.pack(_DOUBLE_SIZE)
        rec[f"h{i}"] = np.frombuffer(header, dtype=f"V{len(header)}")[0]
        rec[f"t{i}"] = 0x29
        rec[f"v{i}"] = columns[name]
    return rec.view(f"V{rec.dtype.itemsize}").tolist()


def _epoch(t: datetime) -> int:
    return int((t if t.tzinfo else t.replace(tzinfo=UTC)).timestamp())


class BatchedSqliteOnlineStore(SqliteOnlineStore):
    """Feast's SQLite online store with one packed row per entity and batched writes."""

    _identity: tuple[int, int] | None = None

    # -- connection -------------------------------------------------------------

    def _get_conn(self, config: RepoConfig) -> sqlite3.Connection:
        # An open connection keeps reading a database file that was moved or
        # deleted. Check that the path still names the same file, so that a
        # replaced file is picked up and a missing one is reported, not hidden
        # (and not silently re-created empty).
        path = self.__dict__.get("_path") or self.__dict__.setdefault(
            "_path", self._get_db_path(config)
        )
        try:
            st = os.stat(path)
            now = (st.st_dev, st.st_ino)
        except FileNotFoundError:
            now = None
        if self._identity is not None and now != self._identity:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if now is None:
                raise sqlite3.OperationalError(
                    f"online store file {path} is missing (moved or deleted): restore it, "
                    "or rebuild it with `microtune features build`"
                )
        fresh = not self._conn
        conn: sqlite3.Connection = super()._get_conn(config)
        if fresh:
            # A WITHOUT ROWID row longer than about a quarter page spills into
            # overflow pages; a packed session row is over 1 KB, so 4 KB pages
            # made loads 2-3x slower. Takes effect when the file is created.
            conn.execute(f"PRAGMA page_size={PAGE_SIZE}")
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            st = os.stat(path)
            self._identity = (st.st_dev, st.st_ino)
        return conn

    @staticmethod
    def _name(config: RepoConfig, table: FeatureView) -> str:
        versioning = config.registry.enable_online_feature_view_versioning
        return _quote_id(_table_id(config.project, table, versioning) + "_packed")

    # -- tables -----------------------------------------------------------------

    def _create(self, conn: sqlite3.Connection, config: RepoConfig, table: FeatureView) -> None:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {self._name(config, table)} ("
            "entity_key BLOB PRIMARY KEY, payload BLOB NOT NULL, "
            "event_ts INTEGER NOT NULL, created_ts INTEGER) WITHOUT ROWID"
        )
        self.__dict__.setdefault("_created", set()).add(self._name(config, table))

    def update(
        self,
        config: RepoConfig,
        tables_to_delete: Sequence[FeatureView],
        tables_to_keep: Sequence[FeatureView],
        entities_to_delete: Sequence[Entity],
        entities_to_keep: Sequence[Entity],
        partial: bool,
    ) -> None:
        conn = self._get_conn(config)
        with conn:
            for table in tables_to_keep:
                self._create(conn, config, table)
            for table in tables_to_delete:
                conn.execute(f"DROP TABLE IF EXISTS {self._name(config, table)}")

    # -- writes -----------------------------------------------------------------

    def _upsert(
        self, config: RepoConfig, table: FeatureView, rows: list[tuple[bytes, bytes, int, Any]]
    ) -> None:
        # Rows in key order: SQLite appends to its B-tree instead of splitting pages.
        rows.sort(key=lambda r: r[0])
        conn = self._get_conn(config)
        if self._name(config, table) not in self.__dict__.get("_created", ()):
            # A home registered before this layout existed has no table yet.
            self._create(conn, config, table)
        with conn:
            conn.executemany(
                f"INSERT INTO {self._name(config, table)} "
                "(entity_key, payload, event_ts, created_ts) VALUES (?, ?, ?, ?) "
                "ON CONFLICT(entity_key) DO UPDATE SET payload = excluded.payload, "
                "event_ts = excluded.event_ts, created_ts = excluded.created_ts",
                rows,
            )

    def write_double_columns(
        self,
        config: RepoConfig,
        table: FeatureView,
        keys: list[EntityKeyProto],
        columns: dict[str, np.ndarray],
        event_ts: list[datetime],
        created: datetime | None,
    ) -> None:
        """Write float64 feature columns for many entities in one transaction.

        Stores exactly what ``online_write_batch`` stores for the same
        ``Value(double_val=...)`` values, without a protobuf object per value.
        """
        version = config.entity_key_serialization_version
        ek = [serialize_entity_key(k, entity_key_serialization_version=version) for k in keys]
        payloads = pack_doubles({f: columns[f] for f in sorted(columns)})
        created_ts = _epoch(created) if created is not None else None
        rows = [
            (k, p, _epoch(t), created_ts) for k, p, t in zip(ek, payloads, event_ts, strict=True)
        ]
        self._upsert(config, table, rows)

    def online_write_batch(
        self,
        config: RepoConfig,
        table: FeatureView,
        data: list[tuple[EntityKeyProto, dict[str, ValueProto], datetime, datetime | None]],
        progress: Callable[[int], Any] | None,
    ) -> None:
        version = config.entity_key_serialization_version
        rows = [
            (
                serialize_entity_key(key, entity_key_serialization_version=version),
                pack(dict(sorted(values.items()))),
                _epoch(ts),
                _epoch(created) if created is not None else None,
            )
            for key, values, ts, created in data
        ]
        self._upsert(config, table, rows)
        if progress:
            progress(len(data))

    # -- reads ------------------------------------------------------------------

    def online_read(
        self,
        config: RepoConfig,
        table: FeatureView,
        entity_keys: list[EntityKeyProto],
        requested_features: list[str] | None = None,
    ) -> list[tuple[datetime | None, dict[str, ValueProto] | None]]:
        """Each entity's features (the requested ones) and event time, in key order."""
        version = config.entity_key_serialization_version
        keys = [
            serialize_entity_key(k, entity_key_serialization_version=version) for k in entity_keys
        ]
        marks = ",".join("?" * len(keys))
        conn = self._get_conn(config)
        if self._name(config, table) not in self.__dict__.get("_created", ()):
            # A view nothing was written to yet (or a home from before this
            # layout): an empty table, not a failing statement on every read.
            with conn:
                self._create(conn, config, table)
        rows = conn.execute(
            f"SELECT entity_key, payload, event_ts FROM {self._name(config, table)} "
            f"WHERE entity_key IN ({marks})",
            keys,
        ).fetchall()
        found = {key: (ts, payload) for key, payload, ts in rows}
        wanted = set(requested_features) if requested_features else None
        out: list[tuple[datetime | None, dict[str, ValueProto] | None]] = []
        for key in keys:
            hit = found.get(key)
            if hit is None:
                out.append((None, None))
            else:
                out.append((datetime.fromtimestamp(hit[0], UTC), unpack(hit[1], wanted)))
        return out
