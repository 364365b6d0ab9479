"""Policies as registered versions: a canary beside the champion, the gate, and rollback."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pyarrow as pa
import pytest

from core.settings import Settings
from experiments.policy_eval import CANARY, CHAMPION, evaluate_policies, gate_policy
from serving.policy import Guard, Policy
from serving.policy_doc import DEFAULT_POLICY

CHAMPION_YAML = """
experiment:
  name: checkout
  variants: {control: {weight: 1}, cta: {weight: 1}}
rules:
  - {name: cta, when: {risk: {gte: 0.0}}, action: emphasize_cta, variants: [cta]}
"""
CANDIDATE_YAML = """
version: 2
experiment:
  name: checkout
  variants: {discount: {weight: 1}}
rules:
  - {name: hesitant, when: {risk: {gte: 0.5}}, action: show_discount_popup, params: {percent: 15}}
"""


def _canary(share: float) -> Policy:
    champion = Policy.from_yaml(CHAMPION_YAML)
    return champion.with_canary(Policy.from_yaml(CANDIDATE_YAML), share)


def test_a_canary_serves_its_share_and_every_decision_logs_both_policies() -> None:
    policy = _canary(0.25)
    rng = np.random.default_rng(4)
    served, n = [], 4000
    for i in range(n):
        risk = float(rng.random())
        d = policy.decide(f"s{i}", risk, {}, {}, Guard(), now=0.0)
        served.append(d.variant)
        assert set(d.arm_policies) == {"control", "cta", "canary:discount"}
        # What each arm would apply, whichever arm served.
        assert d.arm_policies["cta"] == {"emphasize_cta": 1.0}
        discount = "show_discount_popup@15" if risk >= 0.5 else "none"
        assert d.arm_policies["canary:discount"] == {discount: 1.0}
        # Over every treatment, the experiment's probabilities sum to 1.
        shares = policy.shares()
        keys = {k for dist in d.arm_policies.values() for k in dist}
        total = sum(
            shares[v] * dist.get(k, 0.0) for k in keys for v, dist in d.arm_policies.items()
        )
        assert total == pytest.approx(1.0)
        assert d.treatment_propensity == pytest.approx(
            sum(shares[v] * dist.get(d.treatment, 0.0) for v, dist in d.arm_policies.items())
        )
        assert d.propensity == pytest.approx(shares[d.variant])
    share = sum(v.startswith("canary:") for v in served) / n
    assert abs(share - 0.25) < 4 * np.sqrt(0.25 * 0.75 / n)
    # Routing is a hash of the session: the same session is served by the same policy.
    assert policy.assign("s7") == served[7] and policy.version == 2
    # Only the served decision counts against the session's guard rails.
    guard = Guard()
    sid = next(f"s{i}" for i, v in enumerate(served) if v == "control")
    assert policy.decide(sid, 0.9, {}, {}, guard, now=0.0).treatment == "none"
    assert guard.shown == 0


def _logged(policy: Policy, world, n: int, seed: int) -> pa.Table:
    """Decisions of ``policy`` on visitors with uniform risk; rewards from ``world``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        risk = float(rng.random())
        d = policy.decide(f"v{seed}-{i}", risk, {}, {}, Guard(), now=0.0)
        rows.append(
            {
                "session_id": f"v{seed}-{i}",
                "treatment": d.treatment,
                "variant": d.variant,
                "propensity": d.propensity,
                "treatment_propensity": d.treatment_propensity,
                "arm_policies": json.dumps(d.arm_policies),
                "revenue": world(d.treatment, risk) + rng.normal(0.0, 5.0),
                "risk": risk,
                "device": "mobile" if i % 2 else "desktop",
                "consent": True,
            }
        )
    return pa.Table.from_pylist(rows)


def _discount_pays(treatment: str, risk: float) -> float:
    # Champion: 10 either way. Candidate: 14 on the risky half, 10 elsewhere: 12.
    return 14.0 if treatment.startswith("show_discount") else 10.0


def _discount_costs(treatment: str, risk: float) -> float:
    return 7.0 if treatment.startswith("show_discount") else 10.0


def test_the_policy_gate_promotes_a_better_canary_and_refuses_a_worse_one() -> None:
    good = _logged(_canary(0.3), _discount_pays, 1500, seed=1)
    values = {v.name: v for v in evaluate_policies(good)}
    # Each policy as a whole, its arms mixed by their shares.
    for name, true in ((CHAMPION, 10.0), (CANARY, 12.0)):
        assert values[name].dr.ci_low <= true <= values[name].dr.ci_high, name
    decision = gate_policy(good, CANARY, CHAMPION)
    assert decision.promote and decision.difference.ci_low > 0
    assert decision.difference.value == pytest.approx(2.0, abs=0.6)
    bad = _logged(_canary(0.3), _discount_costs, 1500, seed=2)
    refused = gate_policy(bad, CANARY, CHAMPION)
    assert not refused.promote and refused.difference.ci_high < 0
    assert "stays" in refused.reason


HOLD_YAML = """
experiment: {name: e2e, variants: {hold: {weight: 1}}}
rules: []
"""
DISCOUNT_YAML = """
experiment: {name: e2e, variants: {all: {weight: 1}}}
guard_rails: {cooldown_seconds: 0}
rules:
  - {name: everyone, when: {risk: {gte: 0.0}}, action: show_discount_popup, params: {percent: 40}}
"""


def _register(s: Settings, tmp: Path, name: str, text: str, canary: float) -> str:
    from typer.testing import CliRunner

    from cli.main import app
    from core.settings import get_settings

    get_settings.cache_clear()  # the command reads its home from this environment
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    env = {"MICROTUNE_HOME": str(s.home), "MICROTUNE_PROFILE": s.profile}
    out = CliRunner().invoke(
        app, ["policy", "register", str(path), "--canary", str(canary), "--json"], env=env
    )
    get_settings.cache_clear()
    assert out.exit_code == 0, out.output
    return str(json.loads(out.stdout)["registered"])


def _serving(http: httpx.Client, version: int, canary: float | None = None) -> dict:
    """The scorer's policy once it serves ``version`` with that canary share (it polls)."""
    deadline = time.monotonic() + 30
    while True:
        policy = http.get("/v1/admin/models").json()["policy"]
        share = policy.get("canary", {}).get("share")
        if (policy["version"], share) == (version, canary) or time.monotonic() > deadline:
            return {k: v for k, v in policy.items() if k != "rules"}
        time.sleep(0.1)


@pytest.mark.slow
@pytest.mark.integration
def test_a_policy_is_registered_gated_on_its_canary_and_rolled_back(
    served: tuple[Settings, str], home: Settings, prefect_server: None, tmp_path: Path
) -> None:
    """Real MLflow registry, real scoring core and world, real Prefect flows."""
    from serving_harness import TOKEN, Server, score, simulate_in_process

    from flows.policy_flows import promote_policy, rollback_policy
    from models import policy_registry, registry
    from serving.champions import served_policy

    trained, _ = served
    scorer = Server(home.override(serve={"model_poll_s": 0.2, "admin_token": TOKEN}))
    admin = {"Authorization": f"Bearer {TOKEN}"}
    with scorer, httpx.Client(base_url=scorer.url, timeout=30, headers=admin) as http:
        # No policy registered: the policy file serves.
        assert _serving(http, 1) == {"source": str(DEFAULT_POLICY), "version": 1}
        # The first registered policy is the champion at once: a 40% discount for all.
        assert _register(home, tmp_path, "discount", DISCOUNT_YAML, 0.5) == "1"
        policy, versions = served_policy(home)
        assert versions == ("1", None, 0.0) and policy.canary is None and policy.version == 1
        # Doing nothing, as a canary on half the sessions; the scorer polls the registry.
        assert _register(home, tmp_path, "hold", HOLD_YAML, 0.5) == "2"
        live = _serving(http, 2, 0.5)
        assert live["canary"]["share"] == 0.5 and live["source"].endswith("v1")
        arms = [score(http, f"canary-{i}")["decision"]["variant"] for i in range(60)]
        assert set(arms) == {"all", "canary:hold"}
        since = datetime.now(UTC).isoformat()
        simulate_in_process(home, trained, tmp_path / "a", 500)
        out = promote_policy(since=since)
        assert out["promote"] is True, out["reason"]
        # The discount gives 40% of every order away: the canary earns surely more.
        assert out["difference"]["ci_low"] > 0 and out["challenger"] == "2"
        client = registry.reader(home.tracking_uri)
        assert registry.version_of(client, policy_registry.POLICY, registry.CHAMPION) == "2"
        assert registry.version_of(client, policy_registry.POLICY, registry.PREVIOUS) == "1"
        assert served_policy(home)[1] == ("2", None, 0.0)
        assert "canary" not in _serving(http, 2)
        # The same discount again, as a canary against the new champion: refused.
        since = datetime.now(UTC).isoformat()
        assert _register(home, tmp_path, "discount-again", DISCOUNT_YAML, 0.5) == "3"
        simulate_in_process(home, trained, tmp_path / "b", 500)
        out = promote_policy(since=since)
        assert out["promote"] is False and out["difference"]["value"] < 0, out["reason"]
        assert served_policy(home)[1] == ("2", "3", 0.5)  # the canary keeps collecting
        assert _serving(http, 3, 0.5)["canary"]["share"] == 0.5
        runs = registry.reader(home.tracking_uri).get_model_version(policy_registry.POLICY, "3")
        assert runs.tags["gate"] != "passed"
        # Rollback restores the previous champion and ends the canary.
        assert rollback_policy() == {"replaced": "2", "restored": "1"}
        policy, versions = served_policy(home)
        assert versions == ("1", None, 0.0) and policy.version == 1
        assert policy.doc.rules[0].params == {"percent": 40}
        assert _serving(http, 1) == {"source": "registry microtune-policy v1", "version": 1}
