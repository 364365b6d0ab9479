"""Prefect flow ``analyze_experiment``: did the decisions help?

1. The scorer's live events are ingested (as ``build_features`` does), so
   that every purchase and exposure so far is in the raw store.
2. Decisions since ``since`` are joined to what their sessions did after them
   (:mod:`experiments.join`), and one experiment is analysed
   (:mod:`experiments.analysis`): sample-ratio check, lift per arm with fixed
   and always-valid intervals, Bayesian chance to beat control, CUPED, per
   risk decile and device, revenue and margin guard rails, a verdict.
3. Outputs: ``reports/experiments/<UTC time>/`` holds ``report.html`` and
   ``analysis.json`` (also copied to ``reports/experiments/latest.json``), an
   MLflow run in the ``experiments`` experiment, Prefect artifacts, and an
   alert (log, artifact, ``MICROTUNE_ALERT_WEBHOOK_URL``) when an arm is
   significantly worse than control or the sample ratio is off.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from core.errors import InputError
from core.files import atomic_write_bytes
from core.privacy import pseudonymizer
from core.settings import Settings
from events.ingest import ingest_files, live_inbox_files, retire_inbox_files
from events.raw_store import RawEventStore
from experiments.analysis import PLANNED_SESSIONS, Analysis, analyze, cumulative
from experiments.load import (
    default_since,
    experiments_in,
    latest_version,
    load_joined,
    read_truth,
    weights_of,
)
from experiments.report import write_report
from flows.context import flow_settings
from flows.drift_flow import post_alert
from flows.locks import FEATURES, exclusive

MLFLOW_EXPERIMENT = "experiments"


@exclusive(FEATURES)
def _collect_live(settings: Settings) -> int:
    live = live_inbox_files(settings.paths.live_inbox)
    if not live:
        return 0
    raw = RawEventStore(settings.paths.raw_events)
    report = ingest_files(
        live, raw, settings.paths.quarantine, pseudonymize=pseudonymizer(settings)
    )
    retire_inbox_files(live, settings.paths.ingested_inbox)
    return report.accepted


@task(name="ingest-live-events", cache_policy=NO_CACHE)
def ingest_live(settings: Settings) -> int:
    """The scorer's live events into the raw store, as ``build_features`` takes them."""
    return _collect_live(settings)


@task(name="analyze", cache_policy=NO_CACHE)
def analyze_task(
    settings: Settings,
    experiment: str | None,
    since: datetime,
    until: datetime,
    exposed_only: bool,
    truth: str | None,
    planned: int,
) -> tuple[Analysis, list[dict[str, Any]]]:
    joined = load_joined(settings, since, until)
    names = experiments_in(joined)
    name = experiment or (names[0] if names else None)
    if name is None or name not in names:
        raise InputError(
            f"no decisions of experiment {name!r} since {since:%Y-%m-%d}; "
            f"the log has: {', '.join(names) or 'none'}"
        )
    joined, version, left_out = latest_version(joined, name)
    weights = weights_of(joined, name)
    path = Path(truth) if truth else settings.paths.home / "simulation"
    result = analyze(
        joined,
        weights,
        experiment=name,
        truth=read_truth(path),
        exposed_only=exposed_only,
        planned_sessions=planned,
    )
    if left_out:
        result.reason += (
            f"; policy version {version} only ({left_out} sessions of earlier versions, "
            "with other weights or rules, left out)"
        )
    table = joined.filter(pc.equal(joined.column("experiment"), name))
    return result, cumulative(table, weights, planned)


def log_mlflow(settings: Settings, a: Analysis, folder: Path) -> str:
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    if mlflow.get_experiment_by_name(MLFLOW_EXPERIMENT) is None:
        mlflow.create_experiment(MLFLOW_EXPERIMENT, artifact_location=settings.artifact_root)
    mlflow.set_experiment(MLFLOW_EXPERIMENT)
    with mlflow.start_run(run_name=f"{a.experiment}-{folder.name}") as run:
        mlflow.set_tags({"experiment": a.experiment, "verdict": a.verdict})
        mlflow.log_metric("srm_p_value", a.srm_p_value)
        for arm in a.arms:
            for key in ("sessions", "rate", "lift", "ci_low", "ci_high", "true_lift"):
                v = getattr(arm, key)
                if v is not None:
                    mlflow.log_metric(f"{arm.name}.{key}", float(v))
        mlflow.log_artifacts(str(folder))
        return str(run.info.run_id)


def markdown(a: Analysis) -> str:
    rows = "".join(
        f"| {x.name} | {x.sessions} | {x.rate:.4f} | "
        + (f"{x.lift:+.4f} [{x.ci_low:+.4f}, {x.ci_high:+.4f}]" if x.lift is not None else "–")
        + f" | {x.verdict or '–'} |\n"
        for x in a.arms
    )
    return (
        f"# Experiment {a.experiment}: {a.verdict}\n\n{a.reason}. SRM p = {a.srm_p_value:.3g}.\n\n"
        f"| arm | sessions | rate | lift [95%] | verdict |\n|---|---|---|---|---|\n{rows}"
    )


@flow(name="analyze_experiment", flow_run_name="analyze-experiment")
def analyze_experiment(
    experiment: str | None = None,
    since: datetime | None = None,
    exposed_only: bool = False,
    truth: str | None = None,
    planned_sessions: int = PLANNED_SESSIONS,
) -> dict[str, Any]:
    """Join outcomes to decisions since ``since`` (default 30 days) and analyse one experiment."""
    settings = flow_settings()
    logger = get_run_logger()
    ingested = ingest_live(settings)
    until = datetime.now(UTC)
    result, days = analyze_task(
        settings,
        experiment,
        since or default_since(until),
        until,
        exposed_only,
        truth,
        planned_sessions,
    )
    stamp = until.strftime("%Y%m%dT%H%M%S%f")
    folder = settings.paths.reports / "experiments" / stamp
    data = json.dumps(result.as_dict(), indent=2).encode()
    atomic_write_bytes(folder / "analysis.json", data)
    atomic_write_bytes(settings.paths.reports / "experiments" / "latest.json", data)
    report = write_report(result, days, folder / "report.html")
    run_id = log_mlflow(settings, result, folder)
    create_link_artifact(
        key="experiment-report",
        link=report.as_uri(),
        description=f"Experiment {result.experiment}: {result.verdict}",
    )
    create_markdown_artifact(key="experiment-analysis", markdown=markdown(result))
    logger.info("experiment %s: %s (%s)", result.experiment, result.verdict, result.reason)
    out = {**result.as_dict(), "report": str(report), "mlflow_run": run_id, "ingested": ingested}
    if result.alerts:
        logger.error("experiment alert: %s", "; ".join(result.alerts))
        create_markdown_artifact(key="experiment-alert", markdown="\n".join(result.alerts))
        if settings.alert_webhook_url:
            payload = {
                "event": "microtune.experiment.alert",
                "alerts": result.alerts,
                "experiment": result.experiment,
                "report": str(report),
            }
            out["alert_status"] = post_alert(settings.alert_webhook_url, payload)
    return out
