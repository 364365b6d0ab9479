"""Prefect flow ``check_drift``: compare served (or offline) features with the champion's.

* **Reference:** the decision points of the LightGBM champion's training window
  (``ModelCard.training_window["train"]``), with the champion's risk on each.
* **Current:** the decision log's rows of the last ``window_hours``
  (``$MICROTUNE_HOME/decisions``, written by the scorer), labelled from
  ``session_outcomes`` once their sessions end. When nothing was served in the
  window, the last ``window_hours`` of offline decision points instead.
* **Outputs:** ``reports/drift/<UTC time>/`` holds ``drift.html`` (and
  ``performance.html`` once labels exist) and ``verdict.json``; the verdict is
  copied to ``reports/drift/latest.json`` (the promotion gate reads it), logged
  on the champion's MLflow run, and shown as Prefect artifacts.
* **Closed loop:** a failing verdict is logged, shown as an alert artifact and
  posted to ``MICROTUNE_ALERT_WEBHOOK_URL``; a failing drift, prediction,
  performance or online check starts the ``retrain`` flow (``train`` then
  ``promote``). A failing data-quality check does not: the gate refuses
  challengers trained on that data instead.

Import after ``Settings.export_env()`` (the CLI does).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np
import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from flows.build import read_offline
from flows.drift import LABEL, RISK, DriftConfig, DriftRun, online_check, run_check
from flows.errors import InputError, NotReadyError
from flows.files import atomic_write_bytes
from flows.settings import Settings, get_settings
from models import registry

if TYPE_CHECKING:
    from feast import FeatureStore

TIME = "event_timestamp"


def parse_window(text: str) -> float:
    """A window such as ``24h``, ``2d``, ``90m`` or ``6`` (hours), in hours.

    >>> parse_window("2d"), parse_window("90m"), parse_window("6")
    (48.0, 1.5, 6.0)
    """
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


def read_served(home: Path, start: datetime, end: datetime) -> pd.DataFrame | None:
    """The scorer's decision log in ``[start, end)``, or None when nothing was served."""
    try:
        from serving.decision_log import read_decisions
    except ImportError:
        return None
    table = read_decisions(home / "decisions", start, end)
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
    from models.train import training_frame

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
    served = read_served(settings.home, start, end)
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


# --------------------------------------------------------------------------- outputs


def write_outputs(run: DriftRun, reports: Path, stamp: str) -> tuple[Path, list[Path]]:
    """HTML reports and ``verdict.json`` under ``reports/drift/<stamp>/``; ``latest.json``."""
    folder = reports / "drift" / stamp
    html = run.save_html(folder)
    data = json.dumps(run.verdict.as_dict(), indent=2).encode()
    atomic_write_bytes(folder / "verdict.json", data)
    atomic_write_bytes(reports / "drift" / "latest.json", data)
    return folder, html


def log_to_champion(settings: Settings, version: str, folder: Path, verdict: dict[str, Any]) -> str:
    """Record the verdict (and its reports) on the champion's MLflow run."""
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    run_id = str(client.get_model_version(registry.LGBM, version).run_id)
    client.log_artifacts(run_id, str(folder), artifact_path=f"drift/{folder.name}")
    client.set_tag(run_id, "drift_status", verdict["status"])
    client.set_tag(run_id, "drift_summary", verdict["summary"][:5000])
    for c in verdict["checks"]:
        for k, v in c["values"].items():
            client.log_metric(run_id, f"drift_{c['name']}_{k}", float(v))
    return run_id


def post_alert(url: str, payload: dict[str, Any], timeout: float = 5.0) -> int:
    """POST the alert as JSON; returns the HTTP status (raises on a transport error)."""
    response = httpx.post(url, json=payload, timeout=timeout)
    return response.status_code


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


# --------------------------------------------------------------------------- flow


@task(name="drift-check", cache_policy=NO_CACHE)
def drift_task(window_hours: float, sample_rows: int | None) -> tuple[DriftRun, Windows, str]:
    from flows.feaststore import open_store

    settings = get_settings()
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    version = registry.version_of(client, registry.LGBM, registry.CHAMPION)
    if version is None:
        raise NotReadyError("no champion to compare with: run `microtune promote` first")
    champion = registry.load(registry.LGBM, version)
    windows = load_windows(settings, open_store(settings), champion, window_hours)
    cfg = DriftConfig(sample_rows=sample_rows)
    run = run_check(
        windows.reference,
        windows.current,
        features=champion.card.columns,
        categorical=categorical_features(champion.card.columns),
        report_only=report_only_features(champion.card.columns),
        baseline_auc=champion.card.metrics.get("test_roc_auc"),
        online=online_check(windows.drift_signals, len(windows.current)),
        cfg=cfg,
    )
    run.verdict.windows = {**windows.spans, "source": windows.source, "champion": version}
    return run, windows, version


@task(name="alert", cache_policy=NO_CACHE)
def alert_task(verdict: dict[str, Any], report: str) -> int | None:
    logger = get_run_logger()
    logger.error("drift verdict FAILED: %s (report %s)", verdict["summary"], report)
    create_markdown_artifact(
        key="drift-alert",
        markdown=f"# Drift alert\n\n{verdict['summary']}\n\nReport: {report}\n",
        description="A drift check failed",
    )
    url = get_settings().alert_webhook_url
    if not url:
        return None
    payload = {"event": "microtune.drift.fail", "report": report, **verdict}
    status = post_alert(url, payload)
    logger.info("alert posted to the webhook: HTTP %s", status)
    return status


@flow(name="check_drift", flow_run_name="check-drift-{window_hours}h")
def check_drift(
    window_hours: float = 48.0,
    retrain_on_fail: bool = True,
    seed: int = 0,
    sample_rows: int | None = DriftConfig.sample_rows,
) -> dict[str, Any]:
    """Compare the recent window with the champion's training window; act on a failure."""
    settings = get_settings()
    run, windows, version = drift_task(window_hours, sample_rows)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
    folder, html = write_outputs(run, settings.paths.reports, stamp)
    verdict = run.verdict.as_dict()
    log_to_champion(settings, version, folder, verdict)
    main = html[0] if html else folder / "verdict.json"
    create_link_artifact(
        key="drift-report", link=main.as_uri(), description=f"Drift report: {verdict['status']}"
    )
    create_markdown_artifact(
        key="drift-verdict", markdown=verdict_markdown(verdict, windows.source)
    )
    out: dict[str, Any] = {"verdict": verdict, "report": str(folder), "retrain": None}
    if verdict["status"] == "fail":
        out["alert_status"] = alert_task(verdict, str(main))
    if run.verdict.retrain and retrain_on_fail:
        from flows.model_flows import retrain

        out["retrain"] = retrain(seed=seed, reason=f"drift: {verdict['summary']}"[:200])
    return out
