"""The production stack as files (``infra/``), checked without a Docker engine.

CI machines have no Docker engine, so the stack is validated by the tools that
do run there: Compose 1.29's own schema check (``docker-compose config``),
promtool (config, rules, and the rules' unit tests), and static checks that tie
the files together: the Dockerfile installs the lock, every service and mounted
file that one file names exists in the others, and every metric that an alert or
a dashboard panel queries is one that the scorer's real ``/metrics`` route
exposes. The Debian packages ``docker-compose`` and ``prometheus`` (for
promtool) are installed by ``.ci/run``.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
COMPOSE = INFRA / "compose.yaml"
DOCKERFILE = INFRA / "Dockerfile"
PROMETHEUS = INFRA / "prometheus" / "prometheus.yml"
ALERTS = INFRA / "prometheus" / "alerts.yml"
ALERTS_TEST = INFRA / "prometheus" / "alerts_test.yml"
DASHBOARD = INFRA / "grafana" / "dashboards" / "microtune.json"
DATASOURCES = INFRA / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = INFRA / "grafana" / "provisioning" / "dashboards" / "microtune.yml"

#: The secrets compose.yaml requires; placeholder values, for `config` only.
COMPOSE_SECRETS = {"POSTGRES_PASSWORD": "ci-only", "GRAFANA_ADMIN_PASSWORD": "ci-only"}
#: Services that run microtune's image, and every service of the stack.
MICROTUNE_SERVICES = {"prefect", "mlflow", "deploy", "worker", "scorer", "stream-worker"}
SERVICES = MICROTUNE_SERVICES | {"redis", "postgres", "prometheus", "grafana"}
#: Metric names in PromQL (Prometheus's own `up` and `ALERTS` are not the scorer's).
METRIC = re.compile(r"\bmicrotune_[a-z0-9_]+")
#: Series that Prometheus derives from one exposed histogram or summary.
SUFFIXES = {"_bucket": {"histogram"}, "_count": {"histogram", "summary"}}
SUFFIXES["_sum"] = SUFFIXES["_count"]


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed: `apt-get install -y --no-install-recommends {package}` "
            "(.ci/run installs it before `make test`)"
        )
    return path


def run(cmd: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"`{shlex.join(done.args)}` exited {done.returncode}:\n{done.stdout}\n{done.stderr}"


def compose_config(env: dict[str, str], tmp: Path) -> subprocess.CompletedProcess[str]:
    """`docker-compose config` with ``env`` only: an empty env file stands in for the
    infra/.env that a developer may have written (Compose reads it by default)."""
    docker_compose = tool("docker-compose", "docker-compose")
    empty = tmp / "empty.env"
    empty.touch()
    env = {k: v for k, v in env.items() if not k.startswith("COMPOSE_")}
    cmd = [docker_compose, "--env-file", str(empty), "-f", str(COMPOSE), "config"]
    return run(cmd, env=env)


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """compose.yaml as docker-compose 1.29 resolves it: anchors merged, variables set."""
    done = compose_config(os.environ | COMPOSE_SECRETS, tmp_path_factory.mktemp("compose"))
    assert done.returncode == 0, explain(done)
    resolved: dict[str, Any] = yaml.safe_load(done.stdout)
    return resolved


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule for group in load_yaml(ALERTS)["groups"] for rule in group["rules"] if "alert" in rule
    ]


def dashboard_queries(node: Any) -> Iterator[tuple[str, str]]:
    """(kind, text) of every query in the dashboard: panel targets, then variables."""
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            yield "promql", node["expr"]
        if node.get("type") == "query" and isinstance(node.get("definition"), str):
            yield "variable", node["definition"]
        for key, value in node.items():
            if key != "expr":
                yield from dashboard_queries(value)
    elif isinstance(node, list):
        for item in node:
            yield from dashboard_queries(item)


def metric_names(promql: str) -> set[str]:
    # Quoted strings are label values and regexes, not metric names.
    return set(METRIC.findall(re.sub(r'"(?:[^"\\]|\\.)*"', '""', promql)))


# -- Compose ------------------------------------------------------------------------


def test_compose_file_is_valid_for_compose_1_29(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES


def test_compose_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in COMPOSE_SECRETS}
    done = compose_config(env | {"GRAFANA_ADMIN_PASSWORD": "ci-only"}, tmp_path)
    assert done.returncode != 0, "compose.yaml must not fall back to a default password"
    assert "POSTGRES_PASSWORD" in done.stdout + done.stderr


def test_microtune_services_share_one_image_and_the_production_settings(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    images = {services[name]["image"] for name in MICROTUNE_SERVICES}
    assert len(images) == 1, images
    for name in MICROTUNE_SERVICES:
        build = services[name]["build"]
        assert Path(build["context"]) == ROOT, name
        assert build["dockerfile"] == "infra/Dockerfile", name
    for name in MICROTUNE_SERVICES - {"prefect", "mlflow"}:
        env = services[name]["environment"]
        assert env["MICROTUNE_PROFILE"] == "production", name
        assert env["MICROTUNE_HOME"] == "/data", name
        assert any(v.split(":")[0] == "microtune-home" for v in services[name]["volumes"]), name
        urls = (
            env["MICROTUNE_POSTGRES_URL"],
            env["MICROTUNE_PREFECT_API_URL"],
            env["MICROTUNE_MLFLOW_TRACKING_URI"],
            "redis://" + env["MICROTUNE_REDIS_URL"],
        )
        for url in urls:
            assert urlsplit(url).hostname in services, f"{name}: {url} names no service"
    assert services["worker"]["command"][:2] == ["microtune", "worker"]
    assert services["deploy"]["command"] == ["microtune", "deploy"]
    assert services["scorer"]["command"][:2] == ["microtune", "serve"]
    assert services["stream-worker"]["command"] == ["microtune", "stream-worker"]
    assert services["scorer"]["environment"]["MICROTUNE_STREAM__ENABLED"] == "true"


def test_dependencies_wait_for_health_and_for_the_deployments(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on an unknown {dependency}"
            if condition["condition"] == "service_healthy":
                check = services[dependency].get("healthcheck", {})
                assert check.get("test", ["NONE"]) != ["NONE"], f"{dependency} has no check"
    worker = services["worker"]["depends_on"]
    assert worker["deploy"]["condition"] == "service_completed_successfully"
    assert services["prometheus"].get("depends_on", {}) == {}, "it must see the scorer down"


def test_files_mounted_from_infra_exist(compose: dict[str, Any]) -> None:
    mounts = [
        volume.split(":")[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
        if volume.startswith("/")
    ]
    assert mounts
    for source in mounts:
        assert Path(source).exists(), f"compose.yaml mounts {source}, which does not exist"
    init = INFRA / "postgres" / "init-databases.sh"
    assert os.access(init, os.X_OK), "the postgres image runs (not sources) executable scripts"
    assert set(compose["services"]["postgres"]["environment"]["MICROTUNE_DATABASES"].split()) == {
        "mlflow",
        "prefect",
        "feast",
    }


def test_redis_syncs_its_append_only_file_on_every_write(compose: dict[str, Any]) -> None:
    """It holds the event stream, and the API acknowledges events durably (`aof`)."""
    command = " ".join(compose["services"]["redis"]["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync always" in command
    env = compose["services"]["scorer"]["environment"]
    assert env["MICROTUNE_STREAM__DURABILITY"] == "aof"


# -- Dockerfile ----------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), " ".join(rest.split())))
    return out


def test_dockerfile_installs_exactly_the_lock_and_runs_the_scorer() -> None:
    steps = dockerfile_instructions()
    final = steps[max(i for i, (k, _) in enumerate(steps) if k == "FROM") :]
    assert final[0] == ("FROM", "python:3.11-slim")
    copied = [rest.split()[-1] for k, rest in final if k == "COPY" and "requirements.lock" in rest]
    assert copied, "the final stage must copy requirements.lock"
    runs = [rest for k, rest in final if k == "RUN"]
    assert any("uv pip install" in r and f"-r {copied[0]}" in r for r in runs), runs
    assert any("uv pip install" in r and "--no-deps" in r for r in runs), "project without deps"
    user = [rest for k, rest in final if k == "USER"]
    assert user and user[-1] not in {"root", "0"}
    assert ("VOLUME", '["/data"]') in final
    assert any(k == "ENV" and "MICROTUNE_HOME=/data" in rest for k, rest in final)
    assert any(k == "HEALTHCHECK" and "/healthz" in rest for k, rest in final)
    cmd = json.loads(next(rest for k, rest in reversed(final) if k == "CMD"))
    assert cmd == ["microtune", "serve", "--host", "0.0.0.0", "--port", "8000"]
    ignored = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".git", ".venv", ".microtune*"} <= set(ignored)


# -- Prometheus ----------------------------------------------------------------------


def test_promtool_checks_the_config_and_its_rules() -> None:
    promtool = tool("promtool", "prometheus")
    for cmd in (["check", "config", str(PROMETHEUS)], ["check", "rules", str(ALERTS)]):
        done = run([promtool, *cmd])
        assert done.returncode == 0, explain(done)
    assert load_yaml(PROMETHEUS)["rule_files"] == [ALERTS.name]


def test_alert_rules_pass_their_unit_tests() -> None:
    done = run([tool("promtool", "prometheus"), "test", "rules", str(ALERTS_TEST)])
    assert done.returncode == 0, explain(done)


def test_every_alert_is_tested_firing_and_quiet() -> None:
    cases: dict[str, set[bool]] = {}
    for test in load_yaml(ALERTS_TEST)["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names))
    for name in names:
        assert cases.get(name) == {True, False}, f"{name}: needs a firing and a quiet test case"
    assert set(cases) <= set(names), "alerts_test.yml tests rules that alerts.yml lacks"


def test_scrape_target_is_the_scorer_service(compose: dict[str, Any]) -> None:
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS)["scrape_configs"]}
    targets = jobs["microtune-scorer"]["static_configs"][0]["targets"]
    assert targets == ["scorer:8000"]
    mounted = compose["services"]["prometheus"]["volumes"]
    assert any(v.startswith(f"{PROMETHEUS.parent}:/etc/prometheus") for v in mounted)


# -- Grafana -------------------------------------------------------------------------


def test_dashboard_is_provisioned_against_the_provisioned_datasource(
    compose: dict[str, Any],
) -> None:
    (source,) = load_yaml(DATASOURCES)["datasources"]
    assert urlsplit(source["url"]).hostname in compose["services"]
    dashboard = json.loads(DASHBOARD.read_text())
    panels = dashboard["panels"]
    assert len({p["id"] for p in panels}) == len(panels)
    for p in panels:
        for ref in [p["datasource"], *(t["datasource"] for t in p["targets"])]:
            assert ref == {"type": "prometheus", "uid": source["uid"]}, p["title"]
    (provider,) = load_yaml(PROVIDERS)["providers"]
    mounted = compose["services"]["grafana"]["volumes"]
    assert f"{DASHBOARD.parent}:{provider['options']['path']}:ro" in mounted


def test_dashboard_queries_are_valid_promql(tmp_path: Path) -> None:
    """promtool parses each panel's expression as a recording rule."""
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [query for kind, query in dashboard_queries(dashboard) if kind == "promql"]
    assert len(exprs) >= 10, exprs
    grafana_variables = {"$__rate_interval": "5m", "$route": ".*"}
    rules = []
    for i, expr in enumerate(exprs):
        for variable, value in grafana_variables.items():
            expr = expr.replace(variable, value)
        rules.append({"record": f"dashboard:panel_expr_{i}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run([tool("promtool", "prometheus"), "check", "rules", str(path)])
    assert done.returncode == 0, explain(done)


# -- Metric names against the real scorer --------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def exposed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """``# TYPE`` of every metric on GET /metrics of a real scorer, on an empty home.

    The scorer runs as `microtune serve` runs it (uvicorn on ``serving.app:factory``)
    in its own process. Without features or models it starts degraded (``/readyz``
    answers 503), which is enough: ``/metrics`` does not depend on either.
    """
    home = tmp_path_factory.mktemp("infra-home")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("MICROTUNE_", "PREFECT_", "MLFLOW_", "PROMETHEUS_MULTIPROC"))
    }
    env |= {
        "MICROTUNE_HOME": str(home),
        "MICROTUNE_PROFILE": "embedded",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
    }
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "serving.app:factory", "--factory"]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    log = home / "scorer.log"
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"the scorer exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the scorer did not answer /healthz in 120 s:\n{log.read_text()}")
            time.sleep(0.2)
        response = httpx.get(f"{url}/metrics", timeout=10)
        assert response.status_code == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    types = {}
    for line in response.text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            types[name] = kind
    return types


def is_exposed(name: str, types: dict[str, str]) -> bool:
    if name in types:
        return True
    return any(
        name.endswith(suffix) and types.get(name.removesuffix(suffix)) in kinds
        for suffix, kinds in SUFFIXES.items()
    )


def test_alerts_and_dashboard_query_only_metrics_the_scorer_exposes(
    exposed: dict[str, str],
) -> None:
    queried: dict[str, set[str]] = {}
    for rule in alert_rules():
        for name in metric_names(rule["expr"]):
            queried.setdefault(name, set()).add(f"alert {rule['alert']}")
    for kind, query in dashboard_queries(json.loads(DASHBOARD.read_text())):
        for name in metric_names(query):
            queried.setdefault(name, set()).add(f"dashboard {kind}")
    expected = {
        "microtune_request_seconds_bucket",
        "microtune_request_seconds_count",
        "microtune_degraded_total",
        "microtune_drift_verdict",
        "microtune_drift_verdict_age_seconds",
        "microtune_online_features_age_seconds",
    }
    assert expected <= set(queried), "the metric-name parser missed queries"
    missing = {
        name: sorted(users) for name, users in queried.items() if not is_exposed(name, exposed)
    }
    scorer = sorted(n for n in exposed if n.startswith("microtune_"))
    assert not missing, f"queried but not on the scorer's /metrics: {missing}; it has {scorer}"
