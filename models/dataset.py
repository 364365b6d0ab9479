"""Decision points, labels and point-in-time-correct training sets.

A *decision point* is a moment where the site could act on a session:

* every cart interaction (``add_to_cart``, ``remove_from_cart``), and
* every ``every_n``-th event of the session,

counted from the session's first ``add_to_cart`` (before it, abandonment is
not defined) and up to, not including, its first ``checkout_start`` or
``purchase`` (after that the outcome is all but known and there is nothing
left to decide). Sessions that never add to cart are not in the set.

Its label is the session's eventual outcome: 1 when the session added to cart
and ended without a purchase (abandoned), 0 when it purchased. Sessions that
have not ended yet (see ``session_gap_minutes``) have no label and are left
out. Only consented events count, as for features.

Features come from Feast's ``get_historical_features`` through the model's
feature service, as of each decision time (inclusive of the decision event).
The file offline store drops entity rows whose entity has feature rows only
after the entity timestamp (a user whose first session ended later), so the
service is queried per entity: session-keyed views with every row, the user
view only for rows with a user id, and the parts are joined back by row
number. A missing user history is NaN, exactly as at serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from core.errors import NotReadyError
from core.settings import Settings
from events.contract import EventType
from events.raw_store import RawEventStore
from feature_repo.features import ABANDONMENT_SERVICE
from features import read_offline
from features.offline import strictly_increasing

if TYPE_CHECKING:
    from feast import FeatureStore

LABEL = "label"
ROW = "__row"
CART_TYPES = (EventType.ADD_TO_CART.value, EventType.REMOVE_FROM_CART.value)
END_TYPES = (EventType.CHECKOUT_START.value, EventType.PURCHASE.value)


def micros_of(ts: pd.Series) -> np.ndarray:
    """Integer epoch microseconds of a timestamp column."""
    return ts.to_numpy(dtype="datetime64[us]").astype(np.int64)


def decision_points(events: pa.Table, outcomes: pa.Table, every_n: int = 10) -> pd.DataFrame:
    """Labelled decision points of ended cart sessions.

    ``events`` are raw events, ``outcomes`` the ``session_outcomes`` table.
    Returns one row per (session, decision time) with the request context the
    site had at that moment (device and page of the decision event).
    """
    cols = ["session_id", "user_id", "ts", "event_type", "page_type", "device", "consent"]
    ev = events.select([*cols, "seq"] if "seq" in events.column_names else cols).to_pandas()
    order = ["session_id", "ts", "seq"] if "seq" in ev else ["session_id", "ts"]
    ev = ev[ev["consent"]].sort_values(order, kind="stable", na_position="first")
    # The builder stamps each event's feature row with its order time; the decision
    # point of an event looks its features up at that same time (ties by arrival).
    session = pd.factorize(ev["session_id"])[0]
    ev["order_ts"] = strictly_increasing(session, micros_of(ev["ts"]))
    ev["pos"] = ev.groupby("session_id").cumcount()
    is_add = ev["event_type"].eq(EventType.ADD_TO_CART.value)
    is_end = ev["event_type"].isin(END_TYPES)
    big = np.iinfo(np.int64).max
    first_add = ev["pos"].where(is_add, big).groupby(ev["session_id"]).transform("min")
    first_end = ev["pos"].where(is_end, big).groupby(ev["session_id"]).transform("min")
    is_cart = ev["event_type"].isin(CART_TYPES)
    nth = (ev["pos"] + 1) % every_n == 0
    keep = (ev["pos"] >= first_add) & (ev["pos"] < first_end) & (is_cart | nth)
    points = ev.loc[keep, ["session_id", "user_id", "ts", "order_ts", "device", "page_type"]]

    out = outcomes.select(["session_id", "added_to_cart", "abandoned", "event_timestamp"])
    labels = out.to_pandas().rename(columns={"event_timestamp": "session_end"})
    labels = labels[labels["added_to_cart"] > 0]
    points = points.merge(labels[["session_id", "abandoned", "session_end"]], on="session_id")
    points = points.rename(columns={"abandoned": LABEL})
    points[LABEL] = points[LABEL].astype(int)
    points["request_ts"] = micros_of(points.pop("ts")) / 1e6
    stamps = pd.to_datetime(points.pop("order_ts"), unit="us", utc=True)
    points["event_timestamp"] = stamps.astype("datetime64[us, UTC]")
    points["session_end"] = pd.to_datetime(points["session_end"], utc=True)
    points = points.sort_values(["event_timestamp", "session_id"], kind="stable")
    return points.reset_index(drop=True)


@dataclass(frozen=True)
class ServiceColumns:
    """The feature service's features, grouped by view, in the model's column order."""

    name: str
    by_view: dict[str, list[str]]

    @property
    def columns(self) -> list[str]:
        return [f for feats in self.by_view.values() for f in feats]


def service_columns(store: FeatureStore, service_name: str) -> ServiceColumns:
    """Column order of a feature service (view order, then feature order)."""
    service = store.get_feature_service(service_name)
    by_view: dict[str, list[str]] = {}
    for proj in service.feature_view_projections:
        by_view[proj.name_to_use()] = [f.name for f in proj.features]
    return ServiceColumns(service_name, by_view)


def _views_keyed_by(store: FeatureStore, cols: ServiceColumns, key: str) -> list[str]:
    names = []
    for view in cols.by_view:
        try:
            fv = store.get_feature_view(view)
            keys = list(fv.join_keys) if hasattr(fv, "join_keys") else []
        except Exception:
            keys = ["session_id"]  # on-demand views hang off the session view
        if key in keys:
            names.append(view)
    return names


def historical_features(
    store: FeatureStore, points: pd.DataFrame, service_name: str
) -> tuple[pd.DataFrame, list[str]]:
    """Features of every decision point as of its time, in the service's column order."""
    cols = service_columns(store, service_name)
    frame = points.reset_index(drop=True).copy()
    frame[ROW] = np.arange(len(frame))
    parts: list[pd.DataFrame] = []
    user_views = _views_keyed_by(store, cols, "user_id")
    session_views = [v for v in cols.by_view if v not in user_views]
    session_refs = [f"{v}:{f}" for v in session_views for f in cols.by_view[v]]
    entity = frame[[ROW, "session_id", "event_timestamp", "request_ts", "device", "page_type"]]
    got = store.get_historical_features(entity_df=entity, features=session_refs).to_df()
    parts.append(got[[ROW, *[f for v in session_views for f in cols.by_view[v]]]])
    if user_views:
        known = frame[frame["user_id"].notna()]
        refs = [f"{v}:{f}" for v in user_views for f in cols.by_view[v]]
        if len(known):
            users = store.get_historical_features(
                entity_df=known[[ROW, "user_id", "event_timestamp"]], features=refs
            ).to_df()
            parts.append(users[[ROW, *[f for v in user_views for f in cols.by_view[v]]]])
    for part in parts:
        frame = frame.merge(part, on=ROW, how="left")
    frame = frame.sort_values(ROW).drop(columns=[ROW]).reset_index(drop=True)
    for c in cols.columns:  # a view with no entity to join (all anonymous) is all missing
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype(float) if c in frame else np.nan
    return frame, cols.columns


@dataclass(frozen=True)
class Split:
    """Time-ordered train / validation / hold-out windows."""

    train: pd.DataFrame
    valid: pd.DataFrame
    test: pd.DataFrame
    valid_start: datetime
    test_start: datetime

    def window(self) -> dict[str, Any]:
        def span(df: pd.DataFrame) -> list[str]:
            if df.empty:
                return ["", ""]
            return [
                df["event_timestamp"].min().isoformat(),
                df["event_timestamp"].max().isoformat(),
            ]

        return {"train": span(self.train), "valid": span(self.valid), "test": span(self.test)}


def time_split(frame: pd.DataFrame, valid_days: float = 1.0, test_days: float = 1.0) -> Split:
    """Earlier days train, the next ``valid_days`` validate, the last ``test_days`` are held out.

    Rows whose session ends after the next window starts are purged from the
    earlier window, so that no training label is known only later.
    """
    ts = frame["event_timestamp"]
    end = ts.max()
    test_start = (
        (end - timedelta(days=test_days)).floor("D") + timedelta(days=1)
        if test_days >= 1
        else end - timedelta(days=test_days)
    )
    test_start = min(test_start, end)
    valid_start = test_start - timedelta(days=valid_days)
    train = frame[(ts < valid_start) & (frame["session_end"] < valid_start)]
    valid = frame[(ts >= valid_start) & (ts < test_start) & (frame["session_end"] < test_start)]
    test = frame[ts >= test_start]
    return Split(train, valid, test, valid_start.to_pydatetime(), test_start.to_pydatetime())


# ---------------------------------------------------------------------------
# Reading a home's training inputs (the flows call these, then the pure cores)

#: Fewer labelled decision points than this cannot train a model worth gating.
MIN_ROWS = 200


def training_frame(settings: Settings, store: FeatureStore, every_n: int = 10) -> pd.DataFrame:
    """Labelled decision points of the home, with their point-in-time features."""
    raw = RawEventStore(settings.paths.raw_events)
    span = raw.time_range()
    outcomes = read_offline(settings.paths.session_outcomes)
    if span is None or outcomes is None:
        raise NotReadyError("no features built yet: run `microtune features build` first")
    events = raw.read(span[0], span[1] + pd.Timedelta(seconds=1))
    points = decision_points(events, outcomes, every_n)
    if len(points) < MIN_ROWS:
        raise NotReadyError(
            f"only {len(points)} labelled decision points; at least {MIN_ROWS} are needed. "
            "Ingest more events (or wait for sessions to end) and build features again."
        )
    frame, _ = historical_features(store, points, ABANDONMENT_SERVICE)
    return frame


def load_oracle(settings: Settings, explicit: Path | None = None) -> pd.DataFrame | None:
    """Ground truth of generated sessions, if any generated log lives under the home."""
    paths = (
        [explicit] if explicit else sorted((settings.home / "generated").glob("*/oracle.parquet"))
    )
    frames = [
        pq.read_table(p, columns=["session_id", "p_abandon"]).to_pandas()
        for p in paths
        if p is not None and p.exists()
    ]
    return pd.concat(frames).drop_duplicates("session_id") if frames else None


def load_ideal(settings: Settings, explicit: Path | None = None) -> pd.DataFrame | None:
    """The ideal risk of generated decision points (``ideal.parquet`` files), if any.

    Columns ``session_id``, ``ts_us`` (the decision event's time, epoch
    microseconds) and ``ideal_risk``: the best risk the events up to that point
    allow (:mod:`events.synth.ideal`).
    """
    paths = (
        [explicit] if explicit else sorted((settings.home / "generated").glob("*/ideal.parquet"))
    )
    frames = []
    for p in paths:
        if p is None or not p.exists():
            continue
        t = pq.read_table(p, columns=["session_id", "ts", "ideal_risk"])
        frames.append(
            pd.DataFrame(
                {
                    "session_id": t["session_id"].to_numpy(zero_copy_only=False),
                    "ts_us": t["ts"].cast(pa.int64()).to_numpy(),
                    "ideal_risk": t["ideal_risk"].to_numpy(),
                }
            )
        )
    return pd.concat(frames).drop_duplicates(["session_id", "ts_us"]) if frames else None
