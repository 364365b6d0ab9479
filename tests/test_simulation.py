"""The world that answers decisions, the simulator, and outcomes joined to decisions."""

from __future__ import annotations

import math
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import orjson
import pyarrow as pa
import pytest

from core.settings import Settings
from events.synth import GeneratorConfig
from events.synth.effects import ACTIONS, CTA, DISCOUNT, SIZE_GUIDE, effect_logit
from experiments.join import join_outcomes
from serving.policy import Policy, variant_share
from simulation.run import HttpChannel, simulate
from simulation.visitors import ending, visitors
from stores.decision_log import read_decisions

WORLD = GeneratorConfig(sessions=3000, days=1, seed=404)


@pytest.fixture(scope="module")
def people() -> list:
    return visitors(WORLD)


def test_endings_depend_on_seed_and_decisions_only(people: list) -> None:
    shown = [(DISCOUNT, {"percent": 10})]
    forward = [ending(v, shown, seed=1) for v in people[:200]]
    backward = [ending(v, shown, seed=1) for v in reversed(people[:200])][::-1]
    assert forward == backward  # the order visitors run in changes nothing
    other = [ending(v, shown, seed=2) for v in people[:200]]
    assert [e.purchased for e in other] != [e.purchased for e in forward]


def test_effects_have_the_documented_size_sign_and_targets(people: list) -> None:
    z = np.array([v.intent for v in people])
    h = np.array([v.hesitation for v in people])
    s = np.array([v.size_share for v in people])
    base = np.array([v.base_logit for v in people])
    p0 = 1 / (1 + np.exp(base))  # purchase probability without an adjustment
    points = {}
    for action in ACTIONS[1:]:
        p1 = 1 / (1 + np.exp(base + effect_logit(action, {}, z, h, s)))
        points[action] = 100 * (p1 - p0)
    for action, pts in points.items():
        assert 0.2 <= abs(pts.mean()) <= 5.0, (action, pts.mean())
        assert pts.max() <= 8.0, action
    # A discount helps price-hesitant visitors more than size-hesitant ones; the size
    # guide the other way round; the stronger call to action helps low intent most.
    hesitant = h > 0.5
    price, size = hesitant & (s < 0.3), hesitant & (s > 0.7)
    assert points[DISCOUNT][price].mean() > 2 * points[DISCOUNT][size].mean()
    assert points[SIZE_GUIDE][size].mean() > 2 * points[SIZE_GUIDE][price].mean()
    assert points[CTA][z < -1].mean() > points[CTA][z > 1].mean()
    # Some effects are negative: the size guide distracts confident visitors.
    assert (points[SIZE_GUIDE] < 0).mean() > 0.1


def test_simulated_outcomes_agree_with_the_true_purchase_probabilities(people: list) -> None:
    for shown in ([("none", {})], [(DISCOUNT, {"percent": 15})]):
        ends = [ending(v, shown, seed=5) for v in people]
        rate = np.mean([e.purchased for e in ends])
        truth = np.mean([e.p_purchase for e in ends])
        se = math.sqrt(truth * (1 - truth) / len(ends))
        assert abs(rate - truth) < 3 * se, (shown, rate, truth)
    # Revenue gives the discount away on every purchase it was shown to.
    v = next(v for v in people if ending(v, [(DISCOUNT, {"percent": 15})], 5).purchased)
    assert ending(v, [(DISCOUNT, {"percent": 15})], 5).revenue == round(v.cart_value * 0.85, 2)


def test_the_join_counts_only_what_happened_after_the_decision() -> None:
    t0 = datetime(2026, 6, 1, 12, tzinfo=UTC)
    decisions = pa.table(
        {
            "ts": [t0, t0 + timedelta(seconds=30), t0],
            "session_id": ["a", "a", "b"],
            "experiment": ["x"] * 3,
            "variant": ["control", "control", "t"],
            "propensity": [0.5] * 3,
            "risk": [0.8, 0.7, 0.4],
            "actions": ["none", "none", "emphasize_cta"],
        }
    )
    rows = [  # (session, seconds after t0, type, value)
        ("a", -60, "purchase", 10.0),  # before: never counted
        ("a", 0, "purchase", 11.0),  # at the decision's own time: it could have seen it
        ("b", 5, "exposure", None),
        ("b", 20, "add_to_cart", 3.0),
        ("b", 40, "purchase", 12.5),
        ("c", 50, "purchase", 99.0),  # no decision: no row
    ]
    events = pa.table(
        {
            "ts": [t0 + timedelta(seconds=r[1]) for r in rows],
            "session_id": [r[0] for r in rows],
            "event_type": [r[2] for r in rows],
            "cart_value": [r[3] for r in rows],
            "device": ["mobile"] * len(rows),
        }
    )
    out = {r["session_id"]: r for r in join_outcomes(decisions, events).to_pylist()}
    assert set(out) == {"a", "b"}
    assert out["a"]["purchased"] is False and out["a"]["revenue"] == 0.0
    assert out["a"]["risk"] == 0.8  # the first decision is the assignment
    b = out["b"]
    assert (b["purchased"], b["revenue"], b["exposed"], b["added_to_cart_after"]) == (
        True,
        12.5,
        True,
        True,
    )
    assert b["time_to_purchase_s"] == 40.0 and b["action"] == "emphasize_cta"


def _inbox(settings: Settings) -> pa.Table:
    rows = []
    for f in sorted((settings.paths.home / "inbox" / "live").rglob("*.jsonl")):
        rows += [orjson.loads(line) for line in f.read_bytes().splitlines() if line]
    return pa.table(
        {
            "ts": [datetime.fromisoformat(r["ts"].replace("Z", "+00:00")) for r in rows],
            "session_id": [r["session_id"] for r in rows],
            "event_type": [r["event_type"] for r in rows],
            "cart_value": pa.array([r.get("cart_value") for r in rows], pa.float64()),
            "device": [r.get("device") for r in rows],
        }
    )


def test_visitors_through_the_real_scorer_leave_outcomes_the_join_recovers(
    served: tuple[Settings, str], tmp_path: Path
) -> None:
    settings, url = served
    channel = HttpChannel(url)
    try:
        result = simulate(channel, WORLD, tmp_path, limit=150)
    finally:
        channel.close()
    truth = {r["session_id"]: r for r in pa.parquet.read_table(result.truth_path).to_pylist()}
    assert result.visitors == result.decisions == len(truth) == 150
    assert result.adjusted > 0 and result.exposed > 0 and result.purchases > 0
    policy = Policy.load(settings.serve.policy)
    now = datetime.now(UTC)
    decisions = read_decisions(settings.paths.decisions, now - timedelta(hours=1), now)
    mine = decisions.filter(pa.compute.is_in(decisions["session_id"], pa.array(list(truth))))
    assert mine.num_rows == 150
    for d in mine.to_pylist():
        # The arm's share times the arm's probability of what it applied (1 for rules).
        own = orjson.loads(d["arm_policies"])[d["variant"]][d["treatment"]]
        assert d["propensity"] == pytest.approx(
            variant_share(policy.doc.experiment, d["variant"]) * own
        )
        assert d["policy_version"] == policy.doc.version
        assert d["experiment"] == policy.doc.experiment.name
        assert d["variant"] == truth[d["session_id"]]["variant"]
    joined = {r["session_id"]: r for r in join_outcomes(mine, _inbox(settings)).to_pylist()}
    assert set(joined) == set(truth)
    for sid, t in truth.items():
        j = joined[sid]
        assert (j["purchased"], j["exposed"]) == (t["purchased"], t["exposed"]), sid
        # Without consent the store keeps no order value: the purchase still counts.
        assert j["revenue"] == (t["revenue"] if t["consent"] else 0.0), sid
        assert j["action"] == t["action"]
        # Control never sees an adjustment; an exposure needs one.
        if t["variant"] == "control":
            assert t["action"] == "none" and not t["exposed"]
        for action in ACTIONS:
            assert 0.0 < t[f"p_purchase_{action}"] < 1.0
    # No live model beats the best risk the events allow: its error to the true
    # risk is the larger (the scorer learnt from a two-day log).
    scored = [d for d in mine.to_pylist() if truth[d["session_id"]]["consent"] and d["risk"]]
    assert len(scored) > 100
    oracle = np.array([truth[d["session_id"]]["oracle_risk"] for d in scored])
    ideal = np.array([truth[d["session_id"]]["ideal_risk"] for d in scored])
    live = np.array([d["risk"] for d in scored])
    assert np.mean((ideal - oracle) ** 2) < np.mean((live - oracle) ** 2)


def test_an_exposure_is_stored_but_folds_into_no_feature(client: httpx.Client) -> None:
    now = datetime.now(UTC)
    ev = {
        "event_id": "exposure-only-1",
        "session_id": "exposure-only",
        "ts": now.isoformat(),
        "event_type": "exposure",
        "page_type": "cart",
        "element_id": "show_discount_popup",
        "device": "mobile",
        "browser": "chrome",
        "consent": True,
    }
    out = client.post("/v1/events", json={"events": [ev]}).json()
    assert out["accepted"] == 1 and out["sessions_updated"] == 0


def test_the_simulate_command_drives_a_running_scorer(
    served: tuple[Settings, str], tmp_path: Path
) -> None:
    import subprocess
    import sys

    settings, url = served
    cmd = [sys.executable, "-m", "cli.main", "simulate", "--url", url, "--visitors", "12"]
    cmd += ["--sessions", "400", "--seed", "9", "--out", str(tmp_path)]
    env = {**os.environ, **settings.environment()}
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "12 visitors" in done.stdout
    (truth,) = tmp_path.rglob("truth.parquet")
    assert pa.parquet.read_table(truth).num_rows == 12


def test_the_experiment_flow_analyses_simulated_traffic(
    prefect_server: None, served: tuple[Settings, str], tmp_path: Path
) -> None:
    from cli.experiment import summary
    from flows.context import use_settings
    from flows.experiment_flow import analyze_experiment

    settings, url = served
    # Other tests of this server change its policy: analyse this run's decisions only.
    since = datetime.now(UTC) - timedelta(seconds=1)
    channel = HttpChannel(url)
    try:
        sim = simulate(channel, GeneratorConfig(sessions=1200, days=1, seed=55), tmp_path)
    finally:
        channel.close()
    with use_settings(settings):
        out = analyze_experiment(since=since, truth=str(tmp_path))
    policy = Policy.load(settings.serve.policy)
    assert out["experiment"] == policy.doc.experiment.name
    arms = {a["name"]: a for a in out["arms"]}
    assert "control" in arms and sum(a["sessions"] for a in arms.values()) >= sim.visitors
    assert out["srm_p_value"] > 0.001
    assert out["verdict"] in {"ship", "stop", "keep running", "invalid"}
    for name, a in arms.items():
        if name != "control":
            assert a["ci_low"] <= a["lift"] <= a["ci_high"]
            assert a["seq_ci_low"] <= a["ci_low"] and a["true_lift"] is not None
    report = Path(out["report"])
    assert report.exists() and report.read_text().count("<img") >= 2
    latest = settings.paths.reports / "experiments" / "latest.json"
    assert orjson.loads(latest.read_bytes())["verdict"] == out["verdict"]
    import mlflow

    mlflow.set_tracking_uri(settings.tracking_uri)
    run = mlflow.get_run(out["mlflow_run"])
    assert run.data.tags["verdict"] == out["verdict"]
    js = summary(out)
    assert {"experiment", "srm_p_value", "verdict", "arms"} <= set(js)
    assert {"name", "sessions", "conversions", "rate", "lift", "ci_low", "ci_high", "p_value",
            "chance_to_beat_control"} <= set(js["arms"][1])  # fmt: skip
    _policies_valued_off_policy(settings, since, tmp_path, policy)


def _policies_valued_off_policy(settings: Settings, since, truth: Path, policy: Policy) -> None:
    """`microtune policy evaluate` on the same traffic: identities the log must satisfy."""
    from experiments.load import load_joined
    from experiments.policy_eval import evaluate_home

    out = evaluate_home(settings, since=since, truth=truth)
    values = {p["name"]: p for p in out["policies"]}
    assert list(values) == ["none", *policy.doc.experiment.variants, "logged"]
    joined = load_joined(settings, since, datetime.now(UTC))
    (path,) = truth.rglob("truth.parquet")
    ours = pa.parquet.read_table(path).column("session_id")
    mine = joined.filter(pa.compute.equal(joined["consent"], True))
    # Only this run's visitors: other tests' traffic may fall in the window.
    mine = mine.filter(pa.compute.is_in(mine["session_id"], value_set=ours))
    # The logged mix, weighted by the logged propensities, is exactly the mean reward.
    mean_revenue = float(np.mean(mine["revenue"].to_numpy()))
    assert values["logged"]["ips"]["value"] == pytest.approx(mean_revenue, rel=1e-9)
    assert out["sessions"] == mine.num_rows
    # Control adjusts nobody: it is the `none` policy.
    assert values["control"]["ips"]["value"] == pytest.approx(values["none"]["ips"]["value"])
    for p in values.values():
        assert p["ci_low"] <= p["value_estimate"] <= p["ci_high"]
        assert p["true_value"] is not None and p["true_value"] > 0
    # The gate on the same log: `control` against itself can never be surely better.
    from experiments.policy_eval import gate_home

    same = gate_home(settings, "control", "none", since=since)
    assert same["promote"] is False and same["difference"]["value"] == pytest.approx(0.0)


def test_the_in_process_channel_runs_the_same_scoring_core(
    served: tuple[Settings, str], tmp_path: Path
) -> None:
    """Large benchmarks skip HTTP: the same Scorer class, built as the server builds it."""
    from serving.champions import load_champions, policy_path
    from serving.policy import Policy as P
    from serving.runtime import _open_online
    from serving.scorer import Scorer
    from simulation.run import InProcessChannel

    settings, _ = served
    online, error = _open_online(settings)
    assert error is None
    scorer = Scorer(settings, online, load_champions(settings), P.load(policy_path(settings)))
    cfg = GeneratorConfig(sessions=300, days=1, seed=606)
    first = simulate(InProcessChannel(scorer), cfg, tmp_path / "a", limit=40, run="inproc")
    again = simulate(InProcessChannel(scorer), cfg, tmp_path / "b", limit=40, run="inproc")
    assert first.visitors == 40 and first.degraded < 40
    a = pa.parquet.read_table(first.truth_path).to_pylist()
    b = pa.parquet.read_table(again.truth_path).to_pylist()
    # Same seed and same decisions: the same outcomes (variants are hashed, so equal).
    for x, y in zip(a, b, strict=True):
        assert x["variant"] == y["variant"]
        if x["action"] == y["action"]:
            assert (x["purchased"], x["revenue"]) == (y["purchased"], y["revenue"])


def test_a_visitors_order_total_is_its_adds_less_its_removes() -> None:
    """As the generator's purchase event has it, for every session that bought."""
    from events.synth import generate_events

    cfg = GeneratorConfig(sessions=2000, days=1, seed=8)
    events, _ = generate_events(cfg)
    bought = {
        r["session_id"]: r["cart_value"]
        for r in events.to_pylist()
        if r["event_type"] == "purchase"
    }
    people = [v for v in visitors(cfg) if v.session_id in bought]
    assert len(people) > 100
    assert any(any(e["event_type"] == "remove_from_cart" for e in v.events) for v in people)
    for v in people:
        assert v.cart_value == pytest.approx(bought[v.session_id], abs=0.011)


def test_a_visitors_ideal_risk_is_the_ideal_at_its_decision_event(people: list) -> None:
    from events.synth import generate_events
    from events.synth.ideal import ideal_risk

    events, oracle = generate_events(WORLD)
    table = ideal_risk(events, oracle, WORLD)
    at = {
        (sid, ts.timestamp()): r
        for sid, ts, r in zip(
            table["session_id"].to_pylist(),
            table["ts"].to_pylist(),
            table["ideal_risk"].to_pylist(),
            strict=True,
        )
    }
    for v in people[:300]:
        assert v.ideal_risk == at[(v.session_id, v.decided_at)]


def test_two_runs_of_one_world_are_different_visitors() -> None:
    cfg = GeneratorConfig(sessions=300, days=1, seed=8)
    a, b = visitors(cfg, run="r1-"), visitors(cfg, run="r2-")
    assert a[0].session_id == "r1-" + b[0].session_id.removeprefix("r2-")
    assert {e["event_id"][:3] for e in a[0].events} == {"r1-"}


LEARNING_POLICY = """
version: 7
experiment:
  name: learning-test
  variants:
    control: {weight: 0.2}
    learner: {weight: 0.8, policy: bandit}
bandit:
  actions:
    - {action: none}
    - {action: show_discount_popup, params: {percent: 10}}
    - {action: emphasize_cta}
  numeric: [risk, cart_value]
  epsilon: 0.2
"""


def test_a_learning_arm_decides_live_and_learns_from_the_outcomes(
    served: tuple[Settings, str], tmp_path: Path
) -> None:
    """The bandit arm through the real scorer: logged distributions, then live learning."""
    from serving_harness import TOKEN

    from models.bandit import ContextualBandit
    from serving.runtime import bandit_folder

    settings, url = served
    assert settings.serve.policy is not None
    shipped = settings.serve.policy.read_text()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        settings.serve.policy.write_text(LEARNING_POLICY)
        assert httpx.post(f"{url}/v1/admin/reload-policy", headers=auth).status_code == 200
        channel = HttpChannel(url)
        try:
            sim = simulate(channel, GeneratorConfig(sessions=900, days=1, seed=77), tmp_path)
        finally:
            channel.close()
        assert sim.purchases > 20
        now = datetime.now(UTC)
        mine = read_decisions(settings.paths.decisions, since, now)
        mine = mine.filter(pa.compute.equal(mine["experiment"], "learning-test"))
        learnt = 0
        for d in mine.to_pylist():
            if d["degraded"]:
                continue
            dist = orjson.loads(d["arm_policies"])["learner"]
            assert sum(dist.values()) == pytest.approx(1.0) and min(dist.values()) >= 0.2 / 3 - 1e-9
            if d["variant"] == "learner":
                assert d["propensity"] == pytest.approx(0.8 * dist[d["treatment"]])
                learnt += 1
            assert d["treatment_propensity"] == pytest.approx(
                0.2 * (d["treatment"] == "none") + 0.8 * dist[d["treatment"]]
            )
        assert learnt > 50
        # Purchases end sessions at once: the learner (once a second) learns them.
        card = bandit_folder(settings) / "bandit.json"
        for _ in range(40):
            if card.exists() and ContextualBandit.load(card.parent).rounds >= sim.purchases // 2:
                break
            time.sleep(0.5)
        bandit = ContextualBandit.load(card.parent)
        assert bandit.spec.actions == ("none", "show_discount_popup@10", "emphasize_cta")
        assert bandit.rounds >= sim.purchases // 2
        metrics = httpx.get(f"{url}/metrics").text
        assert "microtune_bandit_learned_total" in metrics
    finally:
        settings.serve.policy.write_text(shipped)
        assert httpx.post(f"{url}/v1/admin/reload-policy", headers=auth).status_code == 200
