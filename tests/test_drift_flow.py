"""check_drift end to end: real Feast, MLflow, Prefect, decision log and webhook receiver."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from test_drift import Receiver

from core.settings import Settings
from models import registry
from models.dataset import training_frame
from stores.feature_store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.integration]

FAST = ("scroll_velocity_mean", "scroll_velocity_ewm", "hover_ms_mean", "hover_ms_ewm")
LOST = ("past_sessions", "past_purchase_rate", "past_abandon_rate")


def serve_broken_traffic(settings: Settings) -> int:
    """The hold-out day's decisions as the scorer logs them, after a broken release.

    Scrolls and hovers come in three times larger, the user history is lost,
    and the scorer's ADWIN raised one drift signal.
    """
    from stores.decision_log import AppendLog

    champion = registry.load(registry.LGBM, registry.CHAMPION)
    frame = training_frame(settings, open_store(settings))
    rows = frame[frame["event_timestamp"] >= frame["event_timestamp"].max().floor("D")].copy()
    for c in FAST:
        rows[c] *= 3.0
    for c in LOST:
        rows[c] = np.nan
    columns = champion.card.columns
    risk = champion.predict(rows[columns].to_numpy(np.float64))
    log = AppendLog(settings.paths.decisions)
    for i, (row, p) in enumerate(zip(rows.to_dict("records"), risk, strict=True)):
        features = {c: None if math.isnan(row[c]) else float(row[c]) for c in columns}
        log.append(
            {
                "ts": pd.Timestamp(row["event_timestamp"]).timestamp(),
                "session_id": row["session_id"],
                "user_id": row["user_id"],
                "variant": "control",
                "risk": float(p),
                "features": features,
                "actions": [],
                "models": {registry.LGBM: "1"},
                "degraded": False,
                "drift_signal": i == 10,
            }
        )
    return log.flush()


def test_a_failing_verdict_alerts_retrains_and_the_gate_refuses_the_bad_data(
    prefect_server: None, home: Settings, model_log
) -> None:
    from flows.context import use_settings
    from flows.drift_flow import check_drift
    from flows.feature_flow import build_features
    from flows.model_flows import promote, train

    receiver = Receiver()
    # About 200 cart sessions a day: see test_model_flows.py for this bound.
    settings = home.override(gate={"max_ece": 0.15}, alert_webhook_url=receiver.url)
    try:
        with use_settings(settings):
            # Parameters are checked by the flow's own tests; this one only needs the features.
            build_features.with_options(validate_parameters=False)(
                inbox=[str(model_log / "events")]
            )
            train(seed=0, oracle=str(model_log / "oracle.parquet"))
            assert promote()["promoted"].get(registry.LGBM) == "1"
            moved_segments(home)
            served = serve_broken_traffic(home)
            assert served > 300

            # The generated log is dated 2026-06: a window long enough to reach it.
            out = check_drift(window_hours=24 * 3650, seed=0)
    finally:
        receiver.close()

    verdict = out["verdict"]
    status = {c["name"]: c["status"] for c in verdict["checks"]}
    assert verdict["status"] == "fail" and verdict["windows"]["source"] == "decision log"
    assert status["data_drift"] == "fail" and status["online"] == "fail"
    assert status["data_quality"] == "fail" and status["performance"] in ("pass", "fail")
    drifted = {f["name"] for f in verdict["drifted_features"]}
    assert set(FAST) <= drifted and not drifted & set(LOST)
    assert verdict["rows"]["current"] == served

    # Outputs: the report, the verdict beside it and as latest.json, the champion's run.
    report = home.paths.reports / "drift"
    assert (report / "latest.json").read_text() == (
        report / out["report"].rsplit("/", 1)[-1] / "verdict.json"
    ).read_text()
    assert (report / out["report"].rsplit("/", 1)[-1] / "drift.html").stat().st_size > 10_000
    client = registry.configure(home.tracking_uri, home.artifact_root)
    run_id = client.get_model_version(registry.LGBM, "1").run_id
    assert client.get_run(run_id).data.tags["drift_status"] == "fail"

    # The alert reached the webhook.
    assert len(receiver.posts) == 1 and receiver.posts[0]["event"] == "microtune.drift.fail"
    assert receiver.posts[0]["summary"] == verdict["summary"]

    # Drift started train then promote; the gate refused the challenger trained on
    # the window whose data failed quality, and recorded why.
    retrained = out["retrain"]
    assert retrained["versions"] == {"lgbm": "2", "river": "2"}
    decision = retrained["decisions"][registry.LGBM]
    drift_check = next(c for c in decision["checks"] if c["name"] == "drift")
    assert not decision["promote"] and not drift_check["passed"]
    assert (
        "data quality failed" in drift_check["detail"] and "past_sessions" in drift_check["detail"]
    )
    assert registry.version_of(client, registry.LGBM, registry.CHAMPION) == "1"
    assert "data quality failed" in client.get_model_version(registry.LGBM, "2").tags["gate"]
    assert json.loads((report / "latest.json").read_text())["retrain"] is True

    # The streaming centroids moved away from the segmenter's: the segments are redrawn
    # (a new segmenter version), while the shares of the same sessions did not move.
    assert status["segment_centroids"] == "fail" and status["segment_shares"] == "pass"
    assert out["resegment"] == "2"


def moved_segments(home: Settings) -> None:
    """A registered segmenter (v1), and streaming centroids that followed sessions which
    all moved one unit along every component."""
    from flows.segment_flow import segment_sessions
    from models.segment_registry import champion_segmenter
    from models.segment_run import ended_sessions, window_of
    from models.segment_stream import StreamingCentroids

    assert segment_sessions()["version"] == "1"
    version, seg = champion_segmenter(registry.reader(home.tracking_uri))  # type: ignore[misc]
    stream = StreamingCentroids.start(version, seg.centroids, seed=0)
    for point in seg.project(ended_sessions(home, *window_of(home)).x):
        stream.learn(point + 1.0)
    stream.save(home.paths.segment_stream)
