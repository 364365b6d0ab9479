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
from core.settings import DriftSettings, Settings
from features import read_offline
from monitoring.drift import DriftRun, run_check
from monitoring.verdict import LABEL, RISK, CheckResult
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
    """The trend features among ``columns``: scored and reported, judged by no check but
    missing values (:data:`feature_repo.features.TREND_FEATURES` declares them)."""
    from feature_repo.features import TREND_FEATURES

    return [c for c in columns if c in TREND_FEATURES]


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


def reference_rows(frame: pd.DataFrame, champion: Any) -> tuple[pd.DataFrame, list[str]]:
    """The decision points of the champion's training window, with its risk on each."""
    train_span = champion.card.training_window.get("train") or ["", ""]
    if not all(train_span):
        raise NotReadyError("the champion's card has no training window")
    lo, hi = (pd.Timestamp(t) for t in train_span)
    reference = frame[(frame[TIME] >= lo) & (frame[TIME] <= hi)].copy()
    reference[RISK] = champion.predict(reference[champion.card.columns].to_numpy(np.float64))
    return reference, [lo.isoformat(), hi.isoformat()]


def offline_rows(
    frame: pd.DataFrame, champion: Any, end: pd.Timestamp, window_hours: float
) -> tuple[pd.DataFrame, list[str]]:
    """The offline decision points in ``(end - window_hours, end]``, with the champion's risk."""
    start = end - pd.Timedelta(hours=window_hours)
    current = frame[(frame[TIME] > start) & (frame[TIME] <= end)].copy()
    current[RISK] = champion.predict(current[champion.card.columns].to_numpy(np.float64))
    return current, [start.isoformat(), end.isoformat()]


def load_windows(
    settings: Settings, store: FeatureStore, champion: Any, window_hours: float
) -> Windows:
    """Reference rows of the champion's training window; current served or offline rows."""
    from models.dataset import training_frame

    columns: list[str] = champion.card.columns
    frame = training_frame(settings, store)
    reference, span = reference_rows(frame, champion)
    spans = {"reference": span}

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
    current, spans["current"] = offline_rows(frame, champion, frame[TIME].max(), window_hours)
    return Windows(reference, current, "offline features", spans, None)


def check_windows(
    champion: Any,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    cfg: DriftSettings,
    online: CheckResult | None = None,
) -> DriftRun:
    """Every drift check of ``current`` against ``reference``, as the champion's card says.

    Its columns are the features, its integer context features categorical, the
    trend features (:func:`report_only_features`) reported only, and its
    hold-out ROC AUC the performance baseline.
    """
    columns: list[str] = champion.card.columns
    return run_check(
        reference,
        current,
        features=columns,
        categorical=categorical_features(columns),
        report_only=report_only_features(columns),
        baseline_auc=champion.card.metrics.get("test_roc_auc"),
        online=online,
        cfg=cfg,
    )


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
