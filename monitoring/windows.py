"""The two windows a drift check compares, read from the home.

* **Reference:** the decision points of the LightGBM champion's training window
  (``ModelCard.training_window["train"]``), with the champion's risk on each.
* **Current:** the decision log's rows of the last ``window_hours`` (written by
  the scorer), labelled from ``session_outcomes`` once their sessions end; when
  nothing was served in the window, the last ``window_hours`` of offline
  decision points instead.

Examples
--------
>>> parse_window("2d"), parse_window("90m"), parse_window("6")
(48.0, 1.5, 6.0)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from core.errors import InputError, NotReadyError
from core.settings import Settings
from features import read_offline
from monitoring.verdict import LABEL, RISK
from stores.decision_log import read_decisions

if TYPE_CHECKING:
    from feast import FeatureStore

TIME = "event_timestamp"


def parse_window(text: str) -> float:
    """A window such as ``24h``, ``2d``, ``90m`` or ``6`` (hours), in hours."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([mhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise InputError(f"window '{text}' is not a duration like 24h, 2d or 90m")
    return float(m.group(1)) * {"m": 1 / 60, "h": 1.0, "d": 24.0, "": 1.0}[m.group(2)]


def categorical_features(columns: list[str]) -> list[str]:
    """Integer-coded request context (``is_mobile``, ``hour_of_day``…) is categorical."""
    from feature_repo.features import CONTEXT_FEATURES

    ints = {f.name for f in CONTEXT_FEATURES if f.dtype == "int"}
    return [c for c in columns if c in ints]


def report_only_features(columns: list[str]) -> list[str]:
    """Features scored and reported but not counted towards ``data_drift``.

    They move with the calendar or the window, not with behaviour: the user
    history features grow as the log ages (a user has more past sessions every
    week), and ``hour_of_day`` follows which hours the window covers (a 12-hour
    window never matches a reference of whole days).
    """
    from feature_repo.features import ABANDONMENT_USER_FEATURES

    trend = {*ABANDONMENT_USER_FEATURES, "hour_of_day"}
    return [c for c in columns if c in trend]


@dataclass
class Windows:
    """The two frames a drift check compares, and where they came from."""

    reference: pd.DataFrame
    current: pd.DataFrame
    source: str
    spans: dict[str, list[str]] = field(default_factory=dict)
    drift_signals: int | None = None


def _span(start: datetime, end: datetime) -> list[str]:
    return [start.isoformat(), end.isoformat()]


def read_served(decisions: Path, start: datetime, end: datetime) -> pd.DataFrame | None:
    """The scorer's decision log in ``[start, end)``, or None when nothing was served."""
    table = read_decisions(decisions, start, end)
    if table.num_rows == 0:
        return None
    return table.to_pandas().rename(columns={"ts": TIME})


def attach_labels(served: pd.DataFrame, outcomes: pd.DataFrame | None) -> pd.DataFrame:
    """``label`` = 1 abandoned, 0 purchased, NaN while the cart session has not ended."""
    out = served.copy()
    out[LABEL] = np.nan
    if outcomes is None or outcomes.empty:
        return out
    carts = outcomes[outcomes["added_to_cart"] > 0].drop_duplicates("session_id", keep="last")
    labels = carts.set_index("session_id")["abandoned"].astype(float)
    out[LABEL] = out["session_id"].map(labels)
    return out


def load_windows(
    settings: Settings, store: FeatureStore, champion: Any, window_hours: float
) -> Windows:
    """Reference rows of the champion's training window; current served or offline rows."""
    from models.dataset import training_frame

    columns: list[str] = champion.card.columns
    frame = training_frame(settings, store)
    train_span = champion.card.training_window.get("train") or ["", ""]
    if not all(train_span):
        raise NotReadyError("the champion's card has no training window")
    lo, hi = (pd.Timestamp(t) for t in train_span)
    reference = frame[(frame[TIME] >= lo) & (frame[TIME] <= hi)].copy()
    reference[RISK] = champion.predict(reference[columns].to_numpy(np.float64))
    spans = {"reference": [lo.isoformat(), hi.isoformat()]}

    end = datetime.now(UTC)
    start = end - timedelta(hours=window_hours)
    served = read_served(settings.paths.decisions, start, end)
    if served is not None:
        table = read_offline(settings.paths.session_outcomes)
        outcomes = table.to_pandas() if table is not None else None
        current = attach_labels(served, outcomes)
        for c in columns:
            if c not in current:
                current[c] = np.nan
        signals = int(current["drift_signal"].sum()) if "drift_signal" in current else 0
        spans["current"] = _span(start, end)
        return Windows(reference, current, "decision log", spans, signals)
    last = frame[TIME].max()
    current = frame[frame[TIME] > last - pd.Timedelta(hours=window_hours)].copy()
    current[RISK] = champion.predict(current[columns].to_numpy(np.float64))
    spans["current"] = [(last - pd.Timedelta(hours=window_hours)).isoformat(), last.isoformat()]
    return Windows(reference, current, "offline features", spans, None)


def verdict_markdown(verdict: dict[str, Any], source: str) -> str:
    rows = "\n".join(
        f"| {c['name']} | {'**fail**' if c['status'] == 'fail' else c['status']} | {c['detail']} |"
        for c in verdict["checks"]
    )
    drifted = ", ".join(f"{f['name']} ({f['score']:.3f})" for f in verdict["drifted_features"])
    return (
        f"# Drift verdict: {verdict['status']}\n\nCurrent window from the {source}; "
        f"rows {verdict['rows']}.\n\n| check | status | detail |\n|---|---|---|\n{rows}\n\n"
        f"Drifted features: {drifted or 'none'}\n"
    )
