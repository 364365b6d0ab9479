"""Prometheus from Debian's package, with infra/'s config and alert rules, on a real scorer."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from test_infra import ALERTS, PROMETHEUS, tool


@pytest.mark.slow
@pytest.mark.integration
def test_prometheus_scrapes_the_scorer_with_the_shipped_config(
    served: tuple[Any, str], tmp_path: Path
) -> None:
    """Debian's Prometheus, with infra/'s config and alert rules, scrapes a real scorer.

    Only the target (compose's service name) and the interval change; the job,
    the metrics path and the rule file are the shipped ones.
    """
    from serving_harness import free_port

    binary = tool("prometheus", "prometheus")
    config = yaml.safe_load(PROMETHEUS.read_text())
    config["global"]["scrape_interval"] = config["global"]["evaluation_interval"] = "1s"
    config["rule_files"] = [str(ALERTS)]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [urlsplit(served[1]).netloc]}]
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    port = free_port()
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={path}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}/api/v1"

    def query(expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{api}/query", params={"query": expr}, timeout=5)
        r.raise_for_status()
        return list(r.json()["data"]["result"])

    try:
        deadline, up = time.monotonic() + 60, []
        while time.monotonic() < deadline:
            try:
                up = query(f'up{{job="{job["job_name"]}"}}')
                if up and up[0]["value"][1] == "1":
                    break
            except httpx.HTTPError:  # not listening yet, or 503 while it starts
                pass
            time.sleep(0.5)
        assert up and up[0]["value"][1] == "1", up
        httpx.post(f"{served[1]}/v1/score", json={"session_id": "prom-1"}, timeout=10)
        time.sleep(2.5)  # two scrapes
        scored = query('microtune_request_seconds_count{route="/v1/score"}')
        assert scored and float(scored[0]["value"][1]) >= 1
        rules = httpx.get(f"{api}/rules", timeout=5).json()["data"]["groups"]
        loaded = [r for g in rules for r in g["rules"]]
        assert loaded and all(r["health"] == "ok" for r in loaded)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
