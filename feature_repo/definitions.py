"""Feast objects of microtune, derived from the declarations in ``features.py``.

Nothing here names a feature by hand: the views, the on-demand view and the
feature services are built from ``SESSION_FOLDS``, ``USER_FOLDS`` and
``CONTEXT_FEATURES``. Offline tables live under ``$MICROTUNE_HOME/offline``
(written by ``microtune features build``).
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from feast import (
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    RequestSource,
    ValueType,
)
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String

from feature_repo.features import (
    ABANDONMENT_CONTEXT_FEATURES,
    ABANDONMENT_SERVICE,
    ABANDONMENT_SESSION_FEATURES,
    ABANDONMENT_USER_FEATURES,
    CONTEXT_FEATURES,
    CONTEXT_INPUTS,
    REQUEST_FIELDS,
    SEGMENT,
    SEGMENT_VIEW,
    SESSION_FOLDS,
    SESSION_KEY,
    SESSION_VIEW,
    USER_FOLDS,
    USER_KEY,
    USER_VIEW,
    session_context,
)
from feature_repo.uci import UCI_FEATURES, UCI_KEY, UCI_SERVICE, UCI_VIEW
from folds import state_columns

#: Where the offline tables are. The variable is the one the Feast yaml files
#: use, so ``feast`` run by hand on a home sees the same paths; microtune
#: re-points every file source at the home it is given before it applies
#: (``stores.feature_store.repo_contents``).
OFFLINE = Path(os.environ.get("MICROTUNE_HOME", ".microtune")).resolve() / "offline"
_DTYPES = {"float": Float64, "int": Int64, "str": String}

session = Entity(
    name="session",
    join_keys=[SESSION_KEY],
    value_type=ValueType.STRING,
    description="One visit of one visitor.",
)
user = Entity(
    name="user",
    join_keys=[USER_KEY],
    value_type=ValueType.STRING,
    description="Pseudonymous visitor across sessions.",
)
uci_session = Entity(
    name="uci_session",
    join_keys=[UCI_KEY],
    value_type=ValueType.STRING,
    description="A session of the UCI Online Shoppers data set.",
)

session_source = FileSource(
    name="session_features_source",
    path=str(OFFLINE / "session_features"),
    timestamp_field="event_timestamp",
    description="Session features after each event, built by `microtune features build`.",
)
session_push = PushSource(name="session_push", batch_source=session_source)

user_source = FileSource(
    name="user_features_source",
    path=str(OFFLINE / "user_features"),
    timestamp_field="event_timestamp",
    description="User history after each ended session.",
)
user_push = PushSource(name="user_push", batch_source=user_source)

session_behaviour = FeatureView(
    name=SESSION_VIEW,
    entities=[session],
    ttl=timedelta(hours=6),
    schema=[Field(name=c, dtype=Float64) for c in state_columns(SESSION_FOLDS)],
    source=session_push,
    online=True,
    description="Micro-behaviour of the session so far (see feature_repo/features.py).",
)

user_history = FeatureView(
    name=USER_VIEW,
    entities=[user],
    ttl=timedelta(days=365),
    schema=[Field(name=c, dtype=Float64) for c in state_columns(USER_FOLDS)],
    source=user_push,
    online=True,
    description="The user's record over ended sessions.",
)

segment_source = FileSource(
    name="session_segments_source",
    path=str(OFFLINE / "session_segments"),
    timestamp_field="event_timestamp",
    description="Each session's segment after each of its events, by `microtune segment`.",
)

session_segment = FeatureView(
    name=SEGMENT_VIEW,
    entities=[session],
    ttl=timedelta(hours=6),
    # Stored as a float, like every online value microtune writes; the ids are integers.
    schema=[Field(name=SEGMENT.name, dtype=Float64)],
    source=segment_source,
    online=True,
    description=SEGMENT.description,
)

request_context = RequestSource(
    name="request_context",
    schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in REQUEST_FIELDS],
    description="What the caller knows at decision time.",
)

session_context_view = on_demand_feature_view(
    sources=[session_behaviour[list(CONTEXT_INPUTS)], request_context],
    schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in CONTEXT_FEATURES],
    mode="python",
    description="Session age, recency, click rate, hour, device and page at decision time.",
)(session_context)

abandonment_v1 = FeatureService(
    name=ABANDONMENT_SERVICE,
    features=[
        session_behaviour[list(ABANDONMENT_SESSION_FEATURES)],
        user_history[list(ABANDONMENT_USER_FEATURES)],
        session_context_view[list(ABANDONMENT_CONTEXT_FEATURES)],
    ],
    description="Features of the abandonment-risk models (LightGBM and river).",
)

uci_source = FileSource(
    name="uci_online_shoppers_source",
    path=str(OFFLINE / "uci_online_shoppers.parquet"),
    timestamp_field="event_timestamp",
    description="UCI Online Shoppers Purchasing Intention (real sessions, CC BY 4.0).",
)
uci_sessions = FeatureView(
    name=UCI_VIEW,
    entities=[uci_session],
    ttl=timedelta(days=400),
    schema=[Field(name=f.name, dtype=_DTYPES[f.dtype]) for f in UCI_FEATURES],
    source=uci_source,
    online=True,
    description="Session-level aggregates of the UCI data set, one row per session.",
)
uci_purchase_v1 = FeatureService(
    name=UCI_SERVICE,
    features=[uci_sessions],
    description="Features of the real-data check models (label: Revenue).",
)
