"""The scorer through real HTTP: real Feast online store, real MLflow champions, uvicorn.

One trained home (generated events ending yesterday, champions promoted
through the gate) and one server are shared by the module; each test uses its
own session ids.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
import pandas as pd
import pytest
from serving_harness import TOKEN, Server, build_events, environment, trained_home

from feature_repo.features import SESSION_FOLDS
from flows.build import read_offline
from flows.folds import state_columns
from flows.settings import Settings, get_settings
from models import registry
from serving.policy import DEFAULT_POLICY

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, str]]:
    root = tmp_path_factory.mktemp("serving")
    env = {
        "MICROTUNE_HOME": str(root / "home"),
        "MICROTUNE_PROFILE": "embedded",
        "MICROTUNE_PROJECT": "microtune",
        # ~250 cart sessions a day: see test_model_flows.py for the wider ECE bound.
        "MICROTUNE_GATE_MAX_ECE": "0.15",
        "MICROTUNE_SERVE_ADMIN_TOKEN": TOKEN,
        "MICROTUNE_SERVE_MODEL_POLL_S": "0.5",
        "MICROTUNE_SERVE_POLICY": str(root / "policy.yaml"),
    }
    shutil.copy(DEFAULT_POLICY, root / "policy.yaml")
    with environment(**env):
        settings = trained_home(root)
        with Server(get_settings()) as server:
            yield settings, server.url


@pytest.fixture
def client(served: tuple[Settings, str]) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served[1], timeout=30) as c:
        yield c


def live_events(session: str, start: datetime, kinds: list[tuple[str, dict[str, Any]]]) -> list:
    return [
        {
            "event_id": f"{session}-{i}",
            "session_id": session,
            "user_id": f"user-{session}",
            "ts": (start + timedelta(seconds=7 * i)).isoformat().replace("+00:00", "Z"),
            "event_type": kind,
            "page_type": extra.pop("page_type", "product"),
            "device": "mobile",
            "browser": "safari",
            "consent": extra.pop("consent", True),
            **extra,
        }
        for i, (kind, extra) in enumerate(kinds)
    ]


BROWSE = [
    ("page_view", {}),
    ("hover", {"element_id": "price", "duration_ms": 1200}),
    ("scroll", {"scroll_depth": 0.4, "scroll_velocity": 650.0}),
    ("image_zoom", {}),
    ("hover", {"element_id": "image", "duration_ms": 300}),
    ("add_to_cart", {"cart_value": 59.9}),
    ("size_guide_open", {}),
    ("scroll", {"scroll_depth": 0.9, "scroll_velocity": 1400.0}),
    ("page_view", {"page_type": "cart"}),
    ("remove_from_cart", {"cart_value": 19.95, "page_type": "cart"}),
    ("click", {"element_id": "checkout", "page_type": "cart"}),
]


def score(client: httpx.Client, session: str, **ctx: Any) -> dict[str, Any]:
    r = client.post(
        "/v1/score",
        json={"session_id": session, "user_id": f"user-{session}", "context": ctx},
    )
    assert r.status_code == 200, r.text
    return r.json()


def decision_log(settings: Settings, session: str) -> list[dict[str, Any]]:
    time.sleep(1.5)  # the server flushes its log every second
    out = []
    for f in sorted(settings.paths.decisions.rglob("*.jsonl")):
        out += [r for line in f.read_bytes().splitlines() if (r := orjson.loads(line))]
    return [r for r in out if r["session_id"] == session]


def historical(settings: Settings, session: str, at: float, ctx: dict[str, Any]) -> dict:
    """The feature service's values for ``session`` at time ``at``, as training reads them.

    The session's user is new (no history rows), so the user part is left out:
    its features are missing online and offline alike.
    """
    from flows.feaststore import open_store
    from models.dataset import historical_features

    points = pd.DataFrame(
        {
            "session_id": [session],
            "user_id": [None],
            "event_timestamp": [pd.Timestamp(at, unit="s", tz="UTC")],
            "request_ts": [at],
            "device": [ctx.get("device")],
            "page_type": [ctx.get("page_type")],
        }
    )
    frame, _ = historical_features(open_store(settings), points, "abandonment_v1")
    row = frame.iloc[0].to_dict()
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in row.items()}


def same(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9)


# --- scoring known sessions -------------------------------------------------


def test_batch_session_scores_with_its_offline_features(served, client) -> None:
    """A session built by the batch flow: the features used equal the offline ones then."""
    settings, _ = served
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=20)
    path = settings.home / "fresh" / "batch.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"".join(orjson.dumps(e) + b"\n" for e in live_events("known-1", start, BROWSE))
    )
    build_events(settings, [path])
    ctx = {"page_type": "cart", "device": "mobile"}
    out = score(client, "known-1", **ctx)
    assert not out["degraded"], out["degraded_reasons"]
    assert out["features"]["event_count"] == len(BROWSE)
    assert 0.0 < out["risk"] < 1.0 and out["model"]["lgbm"] == "1"
    (logged,) = decision_log(settings, "known-1")
    offline = historical(settings, "known-1", logged["ts"], ctx)
    for name, used in out["features"].items():
        assert same(used, offline[name]), (name, used, offline[name])
    assert out["features_age_s"] == pytest.approx(logged["ts"] - (start.timestamp() + 70), abs=1)
    top = out["explanation"]
    assert 0 < len(top) <= 5
    assert abs(top[0]["contribution"]) >= abs(top[-1]["contribution"])


def test_live_events_change_the_next_score_and_equal_the_batch(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    events = live_events("live-1", start, BROWSE)
    # Unknown before any event: scored from the request context alone.
    first = score(client, "live-1", device="mobile", page_type="product")
    assert first["degraded"] and "unknown session" in first["degraded_reasons"][0]
    assert first["risk"] is not None and first["features"]["event_count"] is None
    seen = []
    for chunk in (events[:3], events[3:4], events[4:]):
        r = client.post("/v1/events", json={"events": chunk})
        assert r.status_code == 200 and r.json()["accepted"] == len(chunk), r.text
        seen.append(score(client, "live-1", device="mobile")["features"])
    assert [f["event_count"] for f in seen] == [3, 4, len(BROWSE)]
    assert seen[-1]["cart_value"] == pytest.approx(59.9 - 19.95)
    assert seen[-1]["hover_ms_mean"] == pytest.approx(750.0)

    # The batch builder folds the same events (kept in the live inbox) to the same state.
    client.post("/v1/score", json={"session_id": "flush"})
    time.sleep(1.5)
    build_events(settings, [settings.paths.live_inbox])
    batch = read_offline(settings.paths.session_features).to_pandas()
    last = batch[batch["session_id"] == "live-1"].sort_values("event_timestamp").iloc[-1]
    from flows.feaststore import open_store
    from serving.online import OnlineFeatures

    online = OnlineFeatures(open_store(settings)).session_state("live-1", time.time())
    assert online is not None
    for col in state_columns(SESSION_FOLDS):
        a, b = float(last[col]), online.values[col]
        assert (math.isnan(a) and math.isnan(b)) or a == b, (col, a, b)


def test_events_are_validated_like_ingest(client) -> None:
    start = datetime.now(UTC) - timedelta(minutes=1)
    good = live_events("mixed-1", start, [("page_view", {}), ("hover", {"duration_ms": 10})])
    bad = [
        {**good[0], "event_id": "b1", "event_type": "teleport"},
        {**good[0], "event_id": "b2", "scroll_depth": 1.5},
        {**good[0], "event_id": "b3", "ts": "2999-01-01T00:00:00Z"},
        {**good[0], "event_id": "b4", "duration_ms": -5},
        "not an object",
    ]
    r = client.post("/v1/events", json={"events": [bad[0], good[0], bad[1], good[1], *bad[2:]]})
    assert r.status_code == 200
    body = r.json()
    assert body["accepted"] == 2 and body["sessions_updated"] == 1
    reasons = {x["position"]: x["reason"] for x in body["rejected"]}
    assert reasons[0].startswith("event_type: ")
    assert reasons[2].startswith("scroll_depth: ")
    assert reasons[4].startswith("ts: more than 5 minutes in the future")
    assert reasons[5].startswith("duration_ms: ")
    assert reasons[6] == "row: expected a JSON object"
    # A retry of the same events is taken once: the features count them once.
    again = client.post("/v1/events", json={"events": good}).json()
    assert again["accepted"] == 2 and again["duplicates"] == 2 and again["sessions_updated"] == 0
    assert score(client, "mixed-1")["features"]["event_count"] == 2


def test_events_without_consent_are_minimized_and_feed_no_feature(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=1)
    hover = {"element_id": "price", "duration_ms": 900, "consent": False}
    private = live_events("private-1", start, [("hover", hover)])
    body = client.post("/v1/events", json={"events": private}).json()
    assert body["accepted"] == 1 and body["sessions_updated"] == 0
    assert score(client, "private-1")["features"]["event_count"] is None
    time.sleep(1.5)  # the inbox is flushed every second
    kept = [
        orjson.loads(line)
        for f in settings.paths.live_inbox.rglob("*.jsonl")
        for line in f.read_bytes().splitlines()
    ]
    (row,) = [r for r in kept if r["session_id"] == "private-1"]
    assert row["element_id"] is None and row["duration_ms"] is None and row["device"] is None
    assert row["event_type"] == "hover" and row["consent"] is False


def test_stale_features_are_treated_as_missing(served, client) -> None:
    """A session last seen more than the view's TTL (6 h) ago is stale: not used."""
    settings, _ = served
    table = read_offline(settings.paths.session_features).to_pandas()
    old = table.sort_values("event_timestamp").iloc[0]["session_id"]
    out = score(client, old)
    assert out["degraded"] and "stale" in out["degraded_reasons"][0]
    assert out["features"]["event_count"] is None and out["features_age_s"] is None


# --- models ---------------------------------------------------------------------


def test_promotion_is_picked_up_without_restart(served, client) -> None:
    settings, _ = served
    client_ml = registry.configure(settings.tracking_uri, settings.artifact_root)
    model = registry.load(registry.LGBM, "champion")
    new = registry.register(
        client_ml, registry.LGBM, model, metrics={}, artifacts=[], run_name="republish"
    )
    registry.set_champion(client_ml, registry.LGBM, new.version)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if score(client, "promo-1")["model"]["lgbm"] == new.version:
            break
        time.sleep(0.3)
    assert score(client, "promo-1")["model"]["lgbm"] == new.version
    models = client.get("/v1/models").json()["models"]
    assert models[registry.LGBM]["version"] == new.version
    assert models[registry.LGBM]["card"]["feature_service"] == "abandonment_v1"
    text = client.get("/metrics").text
    pid = r'(pid="\d+",)?'
    pattern = rf'microtune_model_version{{model="abandonment-lgbm",{pid}version="{new.version}"}} 1'
    assert re.search(pattern, text), text[-2000:]
    assert re.search(r'microtune_request_seconds_count{(pid="\d+",)?route="/v1/score"} \d', text)


def test_river_learns_from_a_purchase_with_one_writer(served, client) -> None:
    settings, _ = served
    start = datetime.now(UTC) - timedelta(minutes=3)
    events = live_events("buyer-1", start, BROWSE[:6])
    client.post("/v1/events", json={"events": events})
    out = score(client, "buyer-1", device="mobile")
    assert out["risk_river"] is not None and out["model"]["river_role"] == "shadow"
    before = client.get("/v1/models").json()["river_learner"]
    purchase = live_events("buyer-1", start + timedelta(minutes=2), [("purchase", {})])
    purchase[0]["event_id"] = "buyer-1-purchase"
    assert client.post("/v1/events", json={"events": purchase}).json()["accepted"] == 1
    deadline = time.monotonic() + 20
    after = before
    while time.monotonic() < deadline and after["learned"] <= before["learned"]:
        time.sleep(0.5)
        after = client.get("/v1/models").json()["river_learner"]
    assert after["this_process_learns"] and after["learned"] >= before["learned"] + 1
    version = client.get("/v1/models").json()["models"][registry.RIVER]["version"]
    assert (settings.paths.serving / "river" / f"v{version}.pkl").exists()
    # A second process cannot take the writer lock while this server holds it.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import fcntl,sys; f=open(sys.argv[1],'a');fcntl.flock(f, fcntl.LOCK_EX|fcntl.LOCK_NB)",
            str(settings.paths.serving / "river.lock"),
        ],
        capture_output=True,
    )
    assert probe.returncode != 0


# --- bad input and admin ------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"session_id": 5}, "session_id"),
        ({}, "session_id"),
        ({"session_id": "s", "context": {"device": "fridge"}}, "device"),
        ({"session_id": "s", "contxt": {}}, "contxt"),
        ({"session_id": "x" * 500}, "session_id"),
    ],
)
def test_bad_score_requests_get_422_with_the_field(client, body, field) -> None:
    r = client.post("/v1/score", json=body)
    assert r.status_code == 422
    assert any(field in map(str, d["loc"]) for d in r.json()["detail"]), r.json()


def test_malformed_and_oversized_bodies(served, client) -> None:
    r = client.post("/v1/score", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422
    huge = {"events": [{"event_id": "x" * 1000}] * 1200}
    assert client.post("/v1/events", json=huge).status_code == 413
    many = {"events": [{"event_id": str(i)} for i in range(1001)]}
    r = client.post("/v1/events", json=many)
    assert r.status_code == 413 and "at most 1000" in r.json()["detail"]


def test_admin_routes_need_the_token(served, client) -> None:
    for path in ("/v1/admin/reload-models", "/v1/admin/reload-policy"):
        assert client.post(path).status_code == 401
        wrong = client.post(path, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        ok = client.post(path, headers={"Authorization": f"Bearer {TOKEN}"})
        assert ok.status_code == 200, ok.text


def test_policy_reload_without_restart(served, client) -> None:
    settings, _ = served
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert settings.serve_policy is not None
    shipped = settings.serve_policy.read_text()
    try:
        settings.serve_policy.write_text(
            "experiment: {variants: {all: {weight: 1}}}\n"
            "rules:\n  - {name: always, when: {risk: {gte: 0}}, action: show_social_proof}\n"
        )
        assert client.post("/v1/admin/reload-policy", headers=auth).json()["rules"] == 1
        actions = score(client, "policy-1")["decision"]["actions"]
        assert actions[0]["action"] == "show_social_proof" and actions[0]["rule"] == "always"
        settings.serve_policy.write_text("rules: [{name: broken}]")
        bad = client.post("/v1/admin/reload-policy", headers=auth)
        assert bad.status_code == 422 and "rules.0.when" in bad.json()["detail"]
        # The last good policy stays in force.
        assert score(client, "policy-2")["decision"]["actions"][0]["rule"] == "always"
    finally:
        settings.serve_policy.write_text(shipped)
        assert client.post("/v1/admin/reload-policy", headers=auth).status_code == 200


# --- faults ----------------------------------------------------------------------


def test_online_store_failure_gives_a_safe_decision(served, client) -> None:
    """Move the SQLite online store away: 200, ``none``, degraded; events are kept."""
    settings, _ = served
    db = settings.paths.feast / "online.db"
    moved = db.with_name("online.db.moved")
    start = datetime.now(UTC) - timedelta(minutes=1)
    client.post("/v1/events", json={"events": live_events("fault-1", start, BROWSE[:2])})
    os.rename(db, moved)
    try:
        t0 = time.perf_counter()
        out = score(client, "fault-1", device="mobile")
        elapsed_ms = (time.perf_counter() - t0) * 1000
        assert out["degraded"] and "online store unavailable" in out["degraded_reasons"][0]
        assert [a["action"] for a in out["decision"]["actions"]] == ["none"]
        assert elapsed_ms < 1000
        later = live_events("fault-1", start + timedelta(seconds=30), [("hover", {})])
        later[0]["event_id"] = "fault-1-late"
        r = client.post("/v1/events", json={"events": later})
        assert r.status_code == 200 and r.json()["accepted"] == 1 and r.json()["degraded"]
        assert client.get("/readyz").status_code == 200  # loaded; the failure is per request
    finally:
        os.rename(moved, db)
    time.sleep(1.1)  # the store is retried one second after a failure
    back = score(client, "fault-1", device="mobile")
    assert not back["degraded"] and back["features"]["event_count"] == 2
    time.sleep(1.2)
    kept = b"".join(f.read_bytes() for f in settings.paths.live_inbox.rglob("*.jsonl"))
    assert b"fault-1-late" in kept  # nothing accepted was lost


def test_no_models_and_no_store_still_answer(tmp_path: Path) -> None:
    """An empty home: no feature views, no champions. Valid requests get 200 and ``none``."""
    with (
        environment(
            MICROTUNE_HOME=str(tmp_path / "empty"),
            MICROTUNE_PROFILE="embedded",
            MICROTUNE_PROJECT="microtune",
        ),
        Server(get_settings()) as server,
        httpx.Client(base_url=server.url) as c,
    ):
        r = c.post("/v1/score", json={"session_id": "s", "context": {"device": "mobile"}})
        assert r.status_code == 200
        out = r.json()
        assert out["degraded"] and out["risk"] is None
        assert out["decision"]["actions"][0]["action"] == "none"
        ready = c.get("/readyz")
        assert ready.status_code == 503 and registry.LGBM in ready.json()["detail"]
        assert c.get("/healthz").status_code == 200


# --- schema fuzzing -----------------------------------------------------------------


def test_schema_fuzz_finds_no_server_error(served) -> None:
    _, url = served
    st = str(Path(sys.executable).with_name("st"))
    run = subprocess.run(
        [
            st,
            "run",
            f"{url}/openapi.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "7",
            "--exclude-path",
            "/v1/admin/reload-models",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]


# --- the docs ---------------------------------------------------------------------


def test_docs_curl_examples_work_as_printed(served) -> None:
    """Every curl command of README.md and docs/api.md, against this server."""
    from test_docs import ROOT, shell_commands

    _, url = served
    ran = 0
    for doc in ("README.md", "docs/api.md"):
        for cmd in shell_commands(ROOT / doc):
            if not cmd.startswith("curl "):
                continue
            live = cmd.replace("http://127.0.0.1:8000", url).replace("curl -s", "curl -sf", 1)
            run = subprocess.run(["bash", "-c", live], capture_output=True, text=True, timeout=60)
            assert run.returncode == 0, (doc, cmd, run.stdout, run.stderr)
            ran += 1
            if "/metrics" in cmd:
                assert "microtune_request_seconds" in run.stdout
                continue
            body = orjson.loads(run.stdout)
            if "/v1/events" in cmd:
                assert body["accepted"] == 1, body
            if "/v1/score" in cmd and "readme-s1" in cmd:
                assert not body["degraded"] and body["features"]["cart_adds"] == 1, body
    assert ran >= 6


def test_several_workers_share_one_learner_and_one_metrics_view(served) -> None:
    """`microtune serve --workers 2`: the writer lock stays with its holder (this test's
    server), no worker learns, and /metrics aggregates both workers."""
    from serving_harness import free_port

    settings, _ = served
    port = free_port()
    env = {**os.environ, "MICROTUNE_HOME": str(settings.home)}
    cmd = [sys.executable, "-m", "flows.cli", "serve", "--port", str(port), "--workers", "2"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.5)
        with httpx.Client(base_url=url, timeout=10) as c:
            time.sleep(2.5)  # both workers have tried to take the lock
            learners = {c.get("/v1/models").json()["river_learner"]["this_process_learns"]}
            for _ in range(20):
                learners.add(c.get("/v1/models").json()["river_learner"]["this_process_learns"])
            assert learners == {False}
            text = c.get("/metrics").text
        pids = set(re.findall(r'microtune_model_version{[^}]*pid="(\d+)"', text))
        assert len(pids) == 2, text[-1500:]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
