"""Session rows in Feast's Redis online store, read and written in a caller's own commands.

The stream workers (:mod:`serving.stream_worker`) fold a batch inside one Redis
transaction that also records the folded event ids, and read the sessions'
rows in the same round trip as those ids: they cannot go through Feast's
``online_read`` / ``online_write_batch``, which own their connections. This
module reads and writes exactly what Feast's Redis store keeps (its
``online_write_batch``): per entity one hash under ``_redis_key(project,
entity key)``, the field ``_ts:<view>`` (a protobuf ``Timestamp``) and per
feature the field ``mmh3("<view>:<feature>")`` (a serialized ``Value``).
``tests/test_stream.py`` writes with Feast and reads here, and the reverse.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from feature_repo.features import SESSION_KEY
from features.stream import Row
from serving.online import OnlineFeatures

#: Field 5 (``double_val``) of Feast's ``Value`` proto: tag 0x29, then the
#: little-endian double, as protobuf writes it.
_DOUBLE = struct.Struct("<d")
_DOUBLE_TAG = b"\x29"


class RedisSessionRows:
    """The session view's rows on Redis, for :class:`~serving.online.OnlineFeatures`'s store."""

    def __init__(self, online: OnlineFeatures) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name
        from feast.protos.feast.types.Value_pb2 import Value
        from google.protobuf.timestamp_pb2 import Timestamp

        self.online = online
        self._Value, self._Timestamp = Value, Timestamp
        view = _versioned_fv_name(online.session_view, online.config)
        self.names = list(online._session_features)
        self.ts_field = f"_ts:{view}".encode()
        self.hashes = [_mmh3(f"{view}:{c}") for c in self.names]
        #: The hash fields one HMGET asks for: the time, then the features in order.
        self.fields: list[bytes] = [self.ts_field, *self.hashes]
        self.ttl_s: int | None = getattr(online.config.online_store, "key_ttl_seconds", None)

    def key(self, session_id: str) -> bytes:
        """The Redis key Feast keeps ``session_id``'s row under."""
        from feast.infra.online_stores.helpers import _redis_key

        config = self.online.config
        return _redis_key(
            config.project,
            self.online._key(SESSION_KEY, session_id),
            entity_key_serialization_version=config.entity_key_serialization_version,
        )

    def parse(self, values: Sequence[bytes | None], now: float) -> Row | None:
        """A row from the answer to ``HMGET key *fields``: None when absent, or older
        than the view's TTL (as :meth:`OnlineFeatures.session_states` does)."""
        if values[0] is None or all(v is None for v in values[1:]):
            return None
        stamp = self._Timestamp()
        stamp.ParseFromString(values[0])
        ts = stamp.seconds + stamp.nanos / 1e9
        if now - ts > self.online.session_ttl:
            return None
        out: dict[str, float] = {}
        for name, raw in zip(self.names, values[1:], strict=True):
            out[name] = self._number(raw)
        return Row(out, ts)

    def _number(self, raw: bytes | None) -> float:
        if raw is None:
            return math.nan
        if len(raw) == 9 and raw[:1] == _DOUBLE_TAG:
            return float(_DOUBLE.unpack_from(raw, 1)[0])
        value = self._Value()  # written by another path: another numeric type
        value.ParseFromString(raw)
        kind = value.WhichOneof("val")
        return math.nan if kind is None else float(getattr(value, kind))

    def rows(
        self, states: Mapping[str, tuple[Mapping[str, float], float]]
    ) -> list[tuple[bytes, dict[bytes, bytes]]]:
        """Each session's key and hash fields, exactly as Feast's Redis store writes them."""
        out: list[tuple[bytes, dict[bytes, bytes]]] = []
        for session_id, (state, ts) in states.items():
            stamp = self._Timestamp()
            stamp.FromDatetime(datetime.fromtimestamp(ts, UTC))
            row: dict[bytes, bytes] = {self.ts_field: stamp.SerializeToString()}
            for name, field in zip(self.names, self.hashes, strict=True):
                row[field] = _DOUBLE_TAG + _DOUBLE.pack(float(state[name]))
            out.append((self.key(session_id), row))
        return out
