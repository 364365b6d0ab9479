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
  challengers trained on broken data instead, and lets one trained on drifted
  data through only when it beats the champion (``models.gate``).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.errors import NotReadyError
from core.files import atomic_write_bytes
from core.settings import DriftSettings, Settings
from flows.context import flow_settings
from models import registry
from monitoring import DriftRun, online_check
from monitoring.segments import SEGMENT_CHECKS, centroids_check, shares_check
from monitoring.verdict import CheckResult, overall
from monitoring.windows import Windows, check_windows, load_windows, verdict_markdown

TIME = "event_timestamp"

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


# --------------------------------------------------------------------------- flow


@task(name="drift-check", cache_policy=NO_CACHE)
def drift_task(
    settings: Settings, window_hours: float, sample_rows: int | None
) -> tuple[DriftRun, Windows, str]:
    from stores.feature_store import open_store

    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    version = registry.version_of(client, registry.LGBM, registry.CHAMPION)
    if version is None:
        raise NotReadyError("no champion to compare with: run `microtune promote` first")
    champion = registry.load(registry.LGBM, version)
    windows = load_windows(settings, open_store(settings), champion, window_hours)
    cfg = settings.drift.model_copy(update={"sample_rows": sample_rows})
    online = online_check(windows.drift_signals, len(windows.current))
    run = check_windows(champion, windows.reference, windows.current, cfg, online)
    run.verdict.windows = {**windows.spans, "source": windows.source, "champion": version}
    return run, windows, version


@task(name="segment-checks", cache_policy=NO_CACHE)
def segment_checks_task(settings: Settings, window_hours: float) -> list[CheckResult]:
    """The champion segmenter's two checks (none while no segmenter is registered): the
    shares of the last ``window_hours`` of ended sessions, and the streaming centroids."""
    from datetime import timedelta

    from models.segment_registry import champion_card
    from models.segment_run import ended_sessions, window_of
    from models.segment_stream import read_centers
    from models.segments import Segmenter

    found = champion_card(registry.configure(settings.tracking_uri, settings.artifact_root))
    if found is None:
        return []
    version, card = found
    seg = Segmenter.from_card(card)
    reference = {int(p["segment"]): float(p["share"]) for p in card.get("profiles", [])}
    _, end = window_of(settings)
    current = ended_sessions(settings, end - timedelta(hours=window_hours), end)
    s = settings.segments
    stream = read_centers(settings.paths.segment_stream)
    return [
        shares_check(seg, reference, current.x, s.share_psi_max, s.share_min_sessions),
        centroids_check(seg, version, stream, s.centroid_shift_max, s.stream_min_sessions),
    ]


@task(name="alert", cache_policy=NO_CACHE)
def alert_task(url: str | None, verdict: dict[str, Any], report: str) -> int | None:
    logger = get_run_logger()
    logger.error("drift verdict FAILED: %s (report %s)", verdict["summary"], report)
    create_markdown_artifact(
        key="drift-alert",
        markdown=f"# Drift alert\n\n{verdict['summary']}\n\nReport: {report}\n",
        description="A drift check failed",
    )
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
    sample_rows: int | None = DriftSettings().sample_rows,
    resegment_on_fail: bool = True,
) -> dict[str, Any]:
    """Compare the recent window with the champion's training window; act on a failure:
    retrain when the data or the model drifted, segment again when the segments did."""
    settings = flow_settings()
    run, windows, version = drift_task(settings, window_hours, sample_rows)
    run.verdict.checks += segment_checks_task(settings, window_hours)
    run.verdict.status = overall(run.verdict.checks)
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
        out["alert_status"] = alert_task(settings.alert_webhook_url, verdict, str(main))
    moved = [c for c in run.verdict.checks if c.name in SEGMENT_CHECKS and c.status == "fail"]
    if moved and resegment_on_fail:
        from flows.segment_flow import segment_sessions

        out["resegment"] = segment_sessions()["version"]
    if run.verdict.retrain and retrain_on_fail:
        from flows.model_flows import retrain

        out["retrain"] = retrain(seed=seed, reason=f"drift: {verdict['summary']}"[:200])
    return out
