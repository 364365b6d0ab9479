"""Prefect flows ``promote_policy``, ``rollback_policy`` and ``train_uplift``.

``promote_policy`` values the running canary (the registry's challenger policy,
served to a share of sessions beside the champion) against the champion,
off-policy on the same decisions (:func:`experiments.policy_eval.gate_canary`).
It promotes only when the 95% interval of the doubly robust difference lies
above zero; otherwise the canary keeps serving and collecting evidence. Every
decision is an MLflow run of the ``promotion`` experiment. ``rollback_policy``
restores the previous champion policy. Both hold the models lock: they move
registry aliases. ``train_uplift`` fits the uplift model on the decision log,
measures it (Qini, AUUC, its policy's value off-policy) and registers it.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from core.errors import NotReadyError
from experiments.policy_eval import gate_canary
from flows.context import flow_settings
from flows.experiment_flow import ingest_live
from flows.locks import MODELS, exclusive
from models import policy_registry, registry


@flow(name="promote_policy", flow_run_name="promote-policy")
@exclusive(MODELS)
def promote_policy(since: str | None = None) -> dict[str, Any]:
    """Gate the canary policy; promote it when its doubly robust gain is surely positive.

    ``since`` (ISO time) starts the window of decisions read (default: 30 days
    ago). Returns the gate's decision; ``{"skipped": reason}`` when no canary
    runs or it has no joined decisions yet.
    """
    from datetime import datetime

    settings = flow_settings()
    logger = get_run_logger()
    ingest_live(settings)  # the scorer's latest events carry the outcomes
    try:
        out = gate_canary(settings, since=datetime.fromisoformat(since) if since else None)
    except NotReadyError as exc:
        logger.info("policy gate skipped: %s", exc)
        return {"skipped": str(exc)}
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    challenger = out["challenger"]
    record = {
        "promote": out["promote"],
        "challenger": {"dr_difference": out["difference"]["value"]},
        "champion": {"dr_difference": 0.0},
        "checks": [{"name": "dr_difference", "passed": out["promote"], "detail": out["reason"]}],
    }
    registry.record_gate(
        client, policy_registry.POLICY, challenger, out["champion"], record, {"since": since}
    )
    if out["promote"]:
        registry.set_champion(client, policy_registry.POLICY, challenger)
        policy_registry.set_canary_share(client, challenger, 0.0)
    verdict = "promoted" if out["promote"] else "kept as a canary"
    logger.info("policy v%s %s: %s", challenger, verdict, out["reason"])
    create_markdown_artifact(
        key="policy-gate",
        markdown=f"# Policy v{challenger}: {verdict}\n\n{out['reason']}\n",
    )
    return out


@flow(name="rollback_policy", flow_run_name="rollback-policy")
@exclusive(MODELS)
def rollback_policy() -> dict[str, str]:
    """Serve the previous champion policy again (the scorer picks it up on its next poll)."""
    settings = flow_settings()
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    replaced, restored = registry.rollback(client, policy_registry.POLICY)
    # The replaced version is the challenger again; it must not come back as a canary.
    policy_registry.set_canary_share(client, replaced, 0.0)
    create_markdown_artifact(
        key="policy-rollback",
        markdown=f"# Policy: champion v{replaced} -> v{restored} (rollback)",
    )
    return {"replaced": replaced, "restored": restored}


@flow(name="train_uplift", flow_run_name="train-uplift-seed-{seed}")
@exclusive(MODELS)
def train_uplift(
    since: str | None = None, truth: str | None = None, seed: int = 0
) -> dict[str, Any]:
    """Fit the uplift model on the decision log, plot its Qini curves, register it.

    ``since`` (ISO time) starts the window (default: 30 days ago); ``truth`` is
    a simulator's truth folder (default ``HOME/simulation`` when it exists).
    Writes ``reports/uplift/<UTC time>/`` (``qini.png``, ``report.json``) and
    registers ``microtune-uplift`` as challenger, with the model card.
    """
    import json
    from datetime import UTC, datetime
    from pathlib import Path

    from experiments.uplift_eval import train_uplift_home
    from models.plots import plot_qini
    from models.uplift import UPLIFT

    settings = flow_settings()
    ingest_live(settings)
    report = train_uplift_home(
        settings,
        since=datetime.fromisoformat(since) if since else None,
        truth=Path(truth) if truth else None,
        seed=seed,
    )
    folder = settings.paths.reports / "uplift" / datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    folder.mkdir(parents=True, exist_ok=True)
    plot = plot_qini(report.qini, report.auuc, folder / "qini.png")
    client = registry.configure(settings.tracking_uri, settings.artifact_root)
    registered = registry.register(
        client,
        UPLIFT,
        report.model,
        metrics=report.metrics(),
        artifacts=[plot],
        run_name=f"uplift-seed-{seed}",
        params={"seed": seed, "sessions": report.sessions, **report.window},
    )
    out = {**report.as_dict(), "version": registered.version, "plot": str(plot)}
    (folder / "report.json").write_text(json.dumps(out, indent=2))
    rows = "\n".join(
        f"| {p['name']} | {p['value_estimate']:.2f} [{p['ci_low']:.2f}, {p['ci_high']:.2f}] |"
        for p in out["policies"]
    )
    create_markdown_artifact(
        key="uplift",
        markdown=f"# Uplift model v{registered.version}\n\n| policy | DR value |\n|---|---|\n"
        f"{rows}\n\nAUUC: {report.auuc}\n",
    )
    return out
