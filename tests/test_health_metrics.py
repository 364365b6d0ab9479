"""The gauges the alert rules read: the drift verdict and the online features' age.

Each refresh runs in a fresh Python process: the gauges are the process's own,
and a scorer another test left serving in this process (the session's
``served`` fixture) refreshes them from its own home every half second.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from core.settings import Settings
from stores.online_state import record_write

#: One refresh of a Runtime (not started: no scorer, only the home's records), and
#: the /metrics text after it.
REFRESH = (
    "import sys\n"
    "from core.settings import Settings\n"
    "from serving import metrics\n"
    "from serving.runtime import Runtime\n"
    "Runtime(Settings(home=sys.argv[1])).refresh_health(now=1_000.0)\n"
    "sys.stdout.write(metrics.render()[0].decode())\n"
)


def _gauges(home: Settings) -> dict[str, float]:
    """``name{labels}`` -> value of the health gauges after a refresh on ``home``."""
    done = subprocess.run(
        [sys.executable, "-c", REFRESH, str(home.home)], capture_output=True, text=True, check=True
    )
    text = done.stdout
    names = r"microtune_(?:drift_verdict|drift_verdict_age_seconds|online_features_age_seconds)"
    line = rf"^({names}(?:{{[^}}]*}})?) (\S+)$"
    return {m.group(1): float(m.group(2)) for m in re.finditer(line, text, re.M)}


def test_the_gauges_follow_the_homes_records(home: Settings) -> None:
    g = _gauges(home)
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
    g = _gauges(home)
    assert g['microtune_drift_verdict{status="fail"}'] == 1.0
    assert g['microtune_drift_verdict{status="pass"}'] == 0.0
    assert g['microtune_drift_verdict{status="no_data"}'] == 0.0
    assert g["microtune_drift_verdict_age_seconds"] == 100.0
    assert g['microtune_online_features_age_seconds{view="session_behaviour"}'] == 600.0
    assert g['microtune_online_features_age_seconds{view="user_history"}'] == 300.0
