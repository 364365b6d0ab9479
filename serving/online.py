"""Online features for the scorer: read, freshen and update through Feast's online store.

The scorer reads the ``session_behaviour`` and ``user_history`` views with the
online store's own ``online_read`` (the call ``get_online_features`` ends in)
and computes the request-time context with the on-demand view's function
(:func:`feature_repo.features.context_features`). That keeps Feast's storage
and the declared features, and leaves out the per-request feature-service
resolution and pandas work, which cost more than the whole decision.

Feast does not enforce a view's TTL online, so :meth:`OnlineFeatures.read`
does: a row older than its view's TTL is treated as missing.

Live events are folded into the stored session state with the same fold
declarations as the batch builder (:func:`folds.fold_one`) and written
back with ``online_write_batch``. A store that fails is reported as
:class:`~core.errors.StoreError`; the caller degrades.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from core.errors import StoreError
from feature_repo.features import (
    ABANDONMENT_CONTEXT_FEATURES,
    ABANDONMENT_SESSION_FEATURES,
    ABANDONMENT_USER_FEATURES,
    CONTEXT_INPUTS,
    SEGMENT_INPUTS,
    SESSION_KEY,
    SESSION_VIEW,
    USER_KEY,
    USER_VIEW,
    context_features,
)
from features.stream import SESSION_STATE, Row

if TYPE_CHECKING:
    from feast import FeatureStore

#: Session columns a decision reads: the model's and the context's inputs.
_SESSION_READ = list(
    dict.fromkeys([*ABANDONMENT_SESSION_FEATURES, *CONTEXT_INPUTS, *SEGMENT_INPUTS])
)


@dataclass
class FeatureRead:
    """What the scorer knows about a session at decision time."""

    features: dict[str, float | None]
    session_found: bool
    user_found: bool
    stale: list[str]
    age_s: float | None
    #: The stored session row as read (the segment's inputs come from it).
    session: Mapping[str, float] = field(default_factory=dict)


def _value(v: Any) -> float:
    kind = v.WhichOneof("val")
    return math.nan if kind is None else float(getattr(v, kind))


def _present(v: float | None) -> float | None:
    return None if v is None or math.isnan(v) else v


def model_features(
    session: Mapping[str, float],
    user: Mapping[str, float],
    context: Mapping[str, Any],
    now: float,
) -> dict[str, float | None]:
    """The feature service's values from stored session and user rows and the request.

    Missing or NaN values are None; the context is computed by the on-demand
    view's own function. Empty rows give the request-context-only features.

    >>> f = model_features({}, {}, {"device": "mobile", "page_type": "cart"}, 0.0)
    >>> f["event_count"], f["is_mobile"], f["on_checkout_page"]
    (None, 1.0, 1.0)
    """
    features: dict[str, float | None] = {}
    for name in ABANDONMENT_SESSION_FEATURES:
        features[name] = _present(session.get(name))
    for name in ABANDONMENT_USER_FEATURES:
        features[name] = _present(user.get(name))
    ctx = context_features(
        {
            **{name: [session.get(name)] for name in CONTEXT_INPUTS},
            "request_ts": [now],
            "device": [context.get("device")],
            "page_type": [context.get("page_type")],
        }
    )
    for name in ABANDONMENT_CONTEXT_FEATURES:
        v = ctx[name][0]
        features[name] = None if v is None else _present(float(v))
    return features


def _ttl_s(view: Any) -> float:
    ttl = view.ttl.total_seconds() if view.ttl is not None else 0.0
    return ttl or math.inf  # Feast: a zero TTL means "never expires"


def _fail_fast(online: Any, config: Any, timeout_s: float) -> None:
    """A request has a latency budget: no retries with back-off, short socket timeouts.

    redis-py retries a failed connection three times with exponential back-off
    by default (seconds); the scorer answers a safe decision instead, and the
    circuit in :class:`OnlineFeatures` keeps a dead store off the request path.
    """
    get_client = getattr(online, "_get_client", None)
    if get_client is None:  # SQLite: local file, fails at once
        return
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    client = get_client(config.online_store)
    client.set_retry(Retry(NoBackoff(), 0))
    kwargs = client.connection_pool.connection_kwargs
    kwargs["socket_timeout"] = kwargs["socket_connect_timeout"] = timeout_s


class OnlineFeatures:
    """Reads and writes of the scorer's feature views on the profile's online store."""

    def __init__(
        self, store: FeatureStore, *, down_for_s: float = 1.0, timeout_s: float = 0.1
    ) -> None:
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        self._EntityKey, self._Value = EntityKey, Value
        self.store = store
        self.config = store.config
        self.online = store._get_provider().online_store
        self.session_view = store.get_feature_view(SESSION_VIEW)
        self.user_view = store.get_feature_view(USER_VIEW)
        self.session_ttl = _ttl_s(self.session_view)
        self.user_ttl = _ttl_s(self.user_view)
        self._session_features = list(SESSION_STATE)
        self._user_features = [f.name for f in self.user_view.features]
        # After a failure the store is not tried again for ``down_for_s``, so a dead
        # store costs one timeout per second, not one per request.
        self.down_for_s = down_for_s
        self._down_until = 0.0
        #: When this process last wrote a session row (epoch seconds; 0: never).
        self.last_session_write = 0.0
        self.last_error: str | None = None
        _fail_fast(self.online, self.config, timeout_s)

    # -- plumbing -----------------------------------------------------------

    def _key(self, join_key: str, value: str) -> Any:
        return self._EntityKey(join_keys=[join_key], entity_values=[self._Value(string_val=value)])

    def _guard(self) -> None:
        if time.monotonic() < self._down_until:
            raise StoreError(f"online store unavailable: {self.last_error}")

    def _failed(self, exc: Exception) -> StoreError:
        self.last_error = f"{type(exc).__name__}: {exc}"
        self._down_until = time.monotonic() + self.down_for_s
        return StoreError(f"online store unavailable: {self.last_error}")

    def _read(self, view: Any, join_key: str, value: str, names: list[str]) -> Row | None:
        self._guard()
        try:
            # A copy: Feast's Redis store appends its timestamp key to the list.
            ((ts, values),) = self.online.online_read(
                self.config, view, [self._key(join_key, value)], list(names)
            )
        except Exception as exc:
            raise self._failed(exc) from exc
        # Redis answers an unknown entity with empty values stamped 1970: not found.
        if not values or ts is None or all(v.WhichOneof("val") is None for v in values.values()):
            return None
        return Row({k: _value(v) for k, v in values.items()}, ts.timestamp())

    # -- reads ----------------------------------------------------------------

    def session_state(self, session_id: str, now: float) -> Row | None:
        """The session's stored fold state, or None when unknown or older than the TTL."""
        return self.session_states([session_id], now)[session_id]

    def session_states(self, session_ids: Sequence[str], now: float) -> dict[str, Row | None]:
        """Stored fold states of several sessions, in one read of the store."""
        self._guard()
        keys = [self._key(SESSION_KEY, s) for s in session_ids]
        try:
            read = self.online.online_read(
                self.config, self.session_view, keys, list(self._session_features)
            )
        except Exception as exc:
            raise self._failed(exc) from exc
        out: dict[str, Row | None] = dict.fromkeys(session_ids)
        for session, (ts, values) in zip(session_ids, read, strict=True):
            # Redis answers an unknown entity with empty values stamped 1970.
            if (
                not values
                or ts is None
                or all(v.WhichOneof("val") is None for v in values.values())
            ):
                continue
            if now - ts.timestamp() <= self.session_ttl:
                out[session] = Row({k: _value(v) for k, v in values.items()}, ts.timestamp())
        return out

    def read(
        self, session_id: str, user_id: str | None, context: Mapping[str, Any], now: float
    ) -> FeatureRead:
        """The model features of one decision, as the feature service defines them."""
        stale: list[str] = []
        session = self._read(self.session_view, SESSION_KEY, session_id, _SESSION_READ)
        if session is not None and now - session.ts > self.session_ttl:
            stale.append(SESSION_VIEW)
            session = None
        user = None
        if user_id:
            user = self._read(self.user_view, USER_KEY, user_id, self._user_features)
            if user is not None and now - user.ts > self.user_ttl:
                stale.append(USER_VIEW)
                user = None
        features = model_features(
            session.values if session else {}, user.values if user else {}, context, now
        )
        return FeatureRead(
            features,
            session is not None,
            user is not None,
            stale,
            (now - session.ts) if session is not None else None,
            session.values if session is not None else {},
        )

    # -- writes ---------------------------------------------------------------

    def write_session(self, session_id: str, state: Mapping[str, float], ts: float) -> None:
        """Store a session's fold state as of event time ``ts``."""
        self.write_sessions({session_id: (state, ts)})

    def write_sessions(self, states: Mapping[str, tuple[Mapping[str, float], float]]) -> None:
        """Store several sessions' fold states, each as of its event time, in one write."""
        self._guard()
        created = datetime.now(UTC)
        rows: list[Any] = [
            (
                self._key(SESSION_KEY, session_id),
                {c: self._Value(double_val=float(state[c])) for c in self._session_features},
                datetime.fromtimestamp(ts, UTC),
                created,
            )
            for session_id, (state, ts) in states.items()
        ]
        try:
            self.online.online_write_batch(self.config, self.session_view, rows, None)
        except Exception as exc:
            raise self._failed(exc) from exc
        self.last_session_write = time.time()
