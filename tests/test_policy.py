"""The decision policy: conditions, guard rails, flags, dynamic thresholds, variants."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from core.errors import InputError
from serving.policy import Guard, Policy, RiskBaseline, assign_variant
from serving.policy_doc import DEFAULT_POLICY, Experiment, Variant

ALL_TREATED = "experiment: {variants: {treatment: {weight: 1}}}\n"


def policy(rules: str, extra: str = "") -> Policy:
    return Policy.from_yaml(ALL_TREATED + extra + "rules:\n" + rules)


def actions(p: Policy, risk: float, features=None, context=None, guard=None, now=0.0):
    d = p.decide("s", risk, features or {}, context or {}, guard or Guard(), now=now)
    return [a.action for a in d.actions]


AND_OR = """
  - name: r
    when:
      all:
        - risk: {gte: 0.5}
        - any:
            - "feature:cart_value": {gt: 100}
            - "context:device": {in: [mobile, tablet]}
        - not: {"feature:checkout_starts": {gte: 1}}
    action: emphasize_cta
"""


@pytest.mark.parametrize(
    ("risk", "features", "context", "fires"),
    [
        (0.6, {"cart_value": 150.0}, {"device": "desktop"}, True),
        (0.6, {"cart_value": 50.0}, {"device": "mobile"}, True),
        (0.6, {"cart_value": 50.0}, {"device": "desktop"}, False),  # neither OR branch
        (0.4, {"cart_value": 150.0}, {"device": "mobile"}, False),  # risk below
        (0.6, {"cart_value": 150.0, "checkout_starts": 1.0}, {}, False),  # NOT fails
        (0.6, {"cart_value": None}, {"device": None}, False),  # missing never matches
    ],
)
def test_conditions_combine_with_and_or_not(risk, features, context, fires) -> None:
    got = actions(policy(AND_OR), risk, features, context)
    assert got == (["emphasize_cta"] if fires else ["none"])


def test_rules_in_order_and_actions_per_decision() -> None:
    two = """
  - {name: a, when: {risk: {gte: 0.5}}, action: show_discount_popup, params: {percent: 5}}
  - {name: b, when: {risk: {gte: 0.5}}, action: emphasize_cta}
"""
    assert actions(policy(two), 0.9) == ["show_discount_popup"]
    many = policy(two, "guard_rails: {max_actions_per_decision: 2}\n")
    assert actions(many, 0.9) == ["show_discount_popup", "emphasize_cta"]


def test_session_cap_and_cooldown() -> None:
    p = policy(
        "  - {name: a, when: {risk: {gte: 0.5}}, action: emphasize_cta}\n",
        "guard_rails: {max_adjustments_per_session: 2, cooldown_seconds: 30}\n",
    )
    g = Guard()
    assert actions(p, 0.9, guard=g, now=0.0) == ["emphasize_cta"]
    d = p.decide("s", 0.9, {}, {}, g, now=10.0)
    assert d.actions[0].action == "none" and "cooldown: 20 s" in d.actions[0].reason
    assert actions(p, 0.9, guard=g, now=31.0) == ["emphasize_cta"]
    d = p.decide("s", 0.9, {}, {}, g, now=100.0)
    assert d.actions[0].action == "none" and "cap reached (2" in d.actions[0].reason
    # A "none" answer does not use up the cap.
    g2 = Guard()
    actions(p, 0.1, guard=g2)
    assert g2.shown == 0


def test_feature_flag_turns_a_rule_off() -> None:
    rule = "  - {name: a, enabled: %s, when: {risk: {gte: 0.5}}, action: show_social_proof}\n"
    assert actions(policy(rule % "true"), 0.9) == ["show_social_proof"]
    assert actions(policy(rule % "false"), 0.9) == ["none"]


def test_percentile_threshold_follows_recent_risks() -> None:
    p = policy(
        "  - {name: top, when: {risk_percentile: {gte: 90}}, action: show_discount_popup}\n",
        "dynamic: {window: 100, min_samples: 50}\n",
    )
    rng = np.random.default_rng(3)
    # Until the baseline is warm, a dynamic condition cannot hold.
    assert actions(p, 0.99) == ["none"]
    for r in rng.uniform(0.0, 0.5, 100):
        p.baseline.add(float(r))
    assert actions(p, 0.49) == ["show_discount_popup"]  # above the 90th percentile of U(0, .5)
    assert actions(p, 0.30) == ["none"]
    # The baseline moves: after many high scores, 0.49 is no longer in the top decile.
    for r in rng.uniform(0.5, 1.0, 100):
        p.baseline.add(float(r))
    assert actions(p, 0.49) == ["none"]


def test_zscore_threshold() -> None:
    b = RiskBaseline(window=1000, min_samples=10)
    for r in [0.2, 0.4] * 50:
        b.add(r)
    assert b.zscore(0.5) == pytest.approx(2.0)
    p = policy(
        "  - {name: z, when: {risk_zscore: {gte: 1.5}}, action: emphasize_cta}\n",
        "dynamic: {window: 1000, min_samples: 10}\n",
    )
    for r in [0.2, 0.4] * 50:
        p.baseline.add(r)
    assert actions(p, 0.5) == ["emphasize_cta"]
    assert actions(p, 0.35) == ["none"]


def test_variant_assignment_is_deterministic_and_weighted() -> None:
    e = Experiment(
        variants={"control": Variant(weight=1), "a": Variant(weight=1), "b": Variant(weight=2)}
    )
    first = [assign_variant(e, f"s{i}") for i in range(8000)]
    assert first == [assign_variant(e, f"s{i}") for i in range(8000)]
    shares = {k: v / 8000 for k, v in Counter(first).items()}
    assert shares["control"] == pytest.approx(0.25, abs=0.02)
    assert shares["b"] == pytest.approx(0.5, abs=0.02)
    # Another experiment name reshuffles sessions (independent experiments).
    other = Experiment(name="other", variants=e.variants)
    moved = sum(assign_variant(other, f"s{i}") != v for i, v in enumerate(first))
    assert moved > 3000


def test_control_gets_nothing_and_variants_override_params() -> None:
    p = Policy.from_yaml(
        """
experiment:
  variants:
    control: {weight: 1}
    big: {weight: 1, params: {show_discount_popup: {percent: 20}}}
rules:
  - name: d
    when: {risk: {gte: 0.5}}
    action: show_discount_popup
    params: {percent: 10, ttl_s: 60}
"""
    )
    seen = {}
    for i in range(50):
        d = p.decide(f"s{i}", 0.9, {}, {}, Guard(), now=0.0)
        seen[d.variant] = d.actions[0]
    assert seen["control"].action == "none" and "control" in seen["control"].reason
    assert seen["big"].params == {"percent": 20, "ttl_s": 60}


def test_rule_limited_to_variants() -> None:
    p = Policy.from_yaml(
        """
experiment: {variants: {a: {weight: 1}, b: {weight: 1}}}
rules:
  - {name: only-a, variants: [a], when: {risk: {gte: 0}}, action: emphasize_cta}
"""
    )
    for i in range(40):
        d = p.decide(f"s{i}", 0.9, {}, {}, Guard(), now=0.0)
        assert (d.actions[0].action == "emphasize_cta") == (d.variant == "a")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("rules: [{name: x, when: {riskk: {gte: 1}}, action: none}]", "unknown subject 'riskk'"),
        ("rules: [{name: x, when: {risk: {about: 1}}, action: none}]", "unknown operator"),
        ("rules: [{name: x, when: {risk: {gte: 1}}, action: fly}]", "rules.0.action"),
        ("guard_rails: {cooldown_seconds: -1}", "guard_rails.cooldown_seconds"),
        ("rules: [{name: x, when: {risk: {gte: 1}}}]", "rules.0.action: Field required"),
        ("rules: [", "not valid YAML"),
    ],
)
def test_invalid_policies_say_where(doc: str, message: str) -> None:
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        Policy.from_yaml(doc)


def test_shipped_policy_is_valid(tmp_path: Path) -> None:
    p = Policy.load(DEFAULT_POLICY)
    assert {r.action.value for r in p.doc.rules} >= {
        "show_discount_popup",
        "highlight_size_guide",
        "emphasize_cta",
        "show_social_proof",
    }
    with pytest.raises(InputError, match="cannot read policy"):
        Policy.load(tmp_path / "missing.yaml")


THREE_ARMS = """
experiment:
  variants:
    control: {weight: 1}
    ten: {weight: 2}
    fifteen: {weight: 2, params: {show_discount_popup: {percent: 15}}}
guard_rails: {max_adjustments_per_session: 1, cooldown_seconds: 0}
rules:
  - name: d
    when: {risk: {gte: 0.5}}
    action: show_discount_popup
    params: {percent: 10}
"""


def test_every_arm_says_what_it_would_apply_and_propensities_sum_to_one() -> None:
    p = Policy.from_yaml(THREE_ARMS)
    for i, risk in enumerate((0.9, 0.2)):
        d = p.decide(f"s{i}", risk, {}, {}, Guard(), now=0.0)
        if risk >= 0.5:
            assert d.arm_policies == {
                "control": {"none": 1.0},
                "ten": {"show_discount_popup@10": 1.0},
                "fifteen": {"show_discount_popup@15": 1.0},
            }
        else:
            assert all(p == {"none": 1.0} for p in d.arm_policies.values())
        # Each treatment's probability over the experiment: the shares of its arms.
        by_treatment: dict[str, float] = {}
        for arm, dist in d.arm_policies.items():
            share = {"control": 0.2, "ten": 0.4, "fifteen": 0.4}[arm]
            for t, prob in dist.items():
                by_treatment[t] = by_treatment.get(t, 0.0) + share * prob
        assert sum(by_treatment.values()) == pytest.approx(1.0)
        assert d.treatment_propensity == pytest.approx(by_treatment[d.treatment])
        assert d.propensity == pytest.approx(
            {"control": 0.2, "ten": 0.4, "fifteen": 0.4}[d.variant]
        )


def test_the_other_arms_change_no_guard_state() -> None:
    # A control session at high risk: the other arms would adjust, but only the
    # session's own arm moves its guard (cap 1 stays unused).
    p = Policy.from_yaml(THREE_ARMS)
    sid = next(
        f"s{i}" for i in range(100) if assign_variant(p.doc.experiment, f"s{i}") == "control"
    )
    guard = Guard()
    d = p.decide(sid, 0.9, {}, {}, guard, now=0.0)
    assert d.treatment == "none" and guard.shown == 0 and guard.last_at is None
    assert d.treatment_propensity == pytest.approx(0.2)


LEARNING = """
experiment:
  variants:
    control: {weight: 1}
    rules: {weight: 1}
    learner: {weight: 2, policy: bandit}
guard_rails: {max_adjustments_per_session: 1, cooldown_seconds: 0}
bandit:
  actions:
    - {action: none}
    - {action: show_discount_popup, params: {percent: 10}}
    - {action: emphasize_cta}
  numeric: [risk, cart_value]
  epsilon: 0.3
rules:
  - name: d
    when: {risk: {gte: 0.5}}
    action: show_discount_popup
    params: {percent: 10}
"""


def test_a_bandit_arm_logs_its_distribution_and_respects_the_guard_rails() -> None:
    p = Policy.from_yaml(LEARNING)
    sids = [f"s{i}" for i in range(200)]
    mine = [s for s in sids if assign_variant(p.doc.experiment, s) == "learner"]
    seen = Counter()
    for sid in mine[:60]:
        guard = Guard()
        d = p.decide(sid, 0.9, {"cart_value": 40.0}, {"device": "mobile"}, guard, now=5.0)
        dist = d.arm_policies["learner"]
        assert set(dist) == {"none", "show_discount_popup@10", "emphasize_cta"}
        assert sum(dist.values()) == pytest.approx(1.0) and min(dist.values()) >= 0.1 - 1e-9
        assert d.propensity == pytest.approx(0.5 * dist[d.treatment])
        expected = 0.25 * (d.treatment == "none") + 0.25 * (d.treatment == "show_discount_popup@10")
        assert d.treatment_propensity == pytest.approx(expected + 0.5 * dist[d.treatment])
        seen[d.treatment] += 1
        # The same decision draws the same; the cap then leaves only `none`.
        again = p.decide(sid, 0.9, {"cart_value": 40.0}, {"device": "mobile"}, Guard(), now=5.0)
        assert again.treatment == d.treatment
        if d.adjusted:
            capped = p.decide(sid, 0.9, {"cart_value": 40.0}, {}, guard, now=6.0)
            assert capped.treatment == "none" and capped.arm_policies["learner"] == {"none": 1.0}
    assert len(seen) == 3  # an untrained bandit explores every treatment


def test_the_margin_budget_stops_discounts_until_old_offers_leave_its_window() -> None:
    # Budget 10 an hour: a 10% discount on a cart of 40 puts 4 at stake.
    doc = (
        LEARNING.replace(
            "cooldown_seconds: 0}",
            "cooldown_seconds: 0, margin_budget: {amount: 10, window_s: 3600}}",
        )
        + "  - {name: cta, when: {risk: {gte: 0.5}}, action: emphasize_cta}\n"
    )
    p = Policy.from_yaml(doc)
    rules = [f"s{i}" for i in range(400) if assign_variant(p.doc.experiment, f"s{i}") == "rules"]
    cart = {"cart_value": 40.0}
    got = [
        p.decide(s, 0.9, cart, {}, Guard(), now=float(i)).treatment for i, s in enumerate(rules[:4])
    ]
    # Two offers (8) fit; a third (12) does not: the next rule applies instead.
    assert got == ["show_discount_popup@10"] * 2 + ["emphasize_cta"] * 2
    assert p.margin is not None and p.margin.spent == pytest.approx(8.0)
    # Every arm sees the same budget: the learner gives the discount no probability.
    learner = next(s for s in (f"t{i}" for i in range(400))
                   if assign_variant(p.doc.experiment, s) == "learner")  # fmt: skip
    d = p.decide(learner, 0.9, cart, {}, Guard(), now=10.0)
    assert d.arm_policies["learner"]["show_discount_popup@10"] == 0.0
    assert sum(d.arm_policies["learner"].values()) == pytest.approx(1.0)
    assert d.arm_policies["rules"] == {"emphasize_cta": 1.0}
    # A small cart still fits (2 at stake); an hour later the old offers have left.
    assert p.decide(rules[4], 0.9, {"cart_value": 20.0}, {}, Guard(), now=11.0).treatment == (
        "show_discount_popup@10"
    )
    assert p.decide(rules[5], 0.9, cart, {}, Guard(), now=3602.0).treatment == (
        "show_discount_popup@10"
    )
    # In the window now: the small cart's 2 and the last 4; calls to action cost nothing.
    assert p.margin.spent == pytest.approx(6.0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d[: d.index("bandit:\n")] + d[d.index("rules:\n  - name: d") :],
         "add a `bandit:` section"),
        (lambda d: d.replace("control: {weight: 1}", "control: {weight: 1, policy: bandit}"),
         "cannot be a bandit arm"),
        (lambda d: d.replace("    - {action: none}\n", ""), "must include `none`"),
    ],
)  # fmt: skip
def test_bandit_sections_are_validated(change, message) -> None:
    with pytest.raises(InputError, match=message):
        Policy.from_yaml(change(LEARNING))


def test_a_learnt_bandit_must_choose_among_the_policys_actions() -> None:
    from models.bandit import BanditSpec, ContextualBandit

    p = Policy.from_yaml(LEARNING)
    p.attach_bandit(ContextualBandit(p.bandit_spec()))
    other = ContextualBandit(BanditSpec(actions=("none", "emphasize_cta")))
    with pytest.raises(InputError, match="retrain it"):
        p.attach_bandit(other)
