"""The gauges the alert rules read: the drift verdict and the online features' age."""

from __future__ import annotations

import json
import os
import re

from core.settings import Settings
from serving import metrics
from serving.runtime import Runtime
from stores.online_state import record_write


def _gauges() -> dict[str, float]:
    """``name{labels}`` -> value of the health gauges in the scorer's /metrics text."""
    text = metrics.render()[0].decode()
    names = r"microtune_(?:drift_verdict|drift_verdict_age_seconds|online_features_age_seconds)"
    line = rf"^({names}(?:{{[^}}]*}})?) (\S+)$"
    return {m.group(1): float(m.group(2)) for m in re.finditer(line, text, re.M)}


def test_the_gauges_follow_the_homes_records(home: Settings) -> None:
    runtime = Runtime(home)  # not started: no scorer, only the home's records
    runtime.refresh_health(now=1_000.0)
    g = _gauges()
    assert g['microtune_drift_verdict{status="no_data"}'] == 1.0
    assert g['microtune_drift_verdict{status="fail"}'] == 0.0
    assert g["microtune_drift_verdict_age_seconds"] != g["microtune_drift_verdict_age_seconds"]
    assert (
        g['microtune_online_features_age_seconds{view="user_history"}']
        != g['microtune_online_features_age_seconds{view="user_history"}']
    )  # NaN: no row written yet, never "fresh"

    latest = home.paths.drift_reports / "latest.json"
    latest.parent.mkdir(parents=True)
    latest.write_text(json.dumps({"status": "fail", "checks": []}))
    os.utime(latest, (900.0, 900.0))
    record_write(home.paths.feast, "session_behaviour", 400.0)
    record_write(home.paths.feast, "user_history", 700.0)
    runtime.refresh_health(now=1_000.0)
    g = _gauges()
    assert g['microtune_drift_verdict{status="fail"}'] == 1.0
    assert g['microtune_drift_verdict{status="pass"}'] == 0.0
    assert g['microtune_drift_verdict{status="no_data"}'] == 0.0
    assert g["microtune_drift_verdict_age_seconds"] == 100.0
    assert g['microtune_online_features_age_seconds{view="session_behaviour"}'] == 600.0
    assert g['microtune_online_features_age_seconds{view="user_history"}'] == 300.0
