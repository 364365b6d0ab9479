"""Experiment statistics against hand computations, and analysis against the world's truth."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from events.synth import GeneratorConfig
from events.synth.effects import CTA, DISCOUNT
from experiments.analysis import analyze
from experiments.join import OUTCOME_SCHEMA
from experiments.stats import (
    chance_to_beat,
    cuped,
    proportion_lift,
    sequential_halfwidth,
    srm_p_value,
)
from serving.policy import assign_variant
from serving.policy_doc import Experiment, Variant
from simulation.visitors import ending, visitors

T0 = datetime(2026, 6, 1, tzinfo=UTC)


def joined(variant: list[str], purchased: list[bool], risk: list[float] | None = None) -> pa.Table:
    n = len(variant)
    risk = risk or [0.5] * n
    return pa.Table.from_pydict(
        {
            "session_id": [f"s{i}" for i in range(n)],
            "decided_at": [T0 + timedelta(minutes=i) for i in range(n)],
            "experiment": ["x"] * n,
            "variant": variant,
            "propensity": [0.5] * n,
            "policy_version": [1] * n,
            "risk": risk,
            "action": ["none"] * n,
            "discount_percent": [0.0] * n,
            "device": ["mobile" if i % 2 else "desktop" for i in range(n)],
            "purchased": purchased,
            "revenue": [30.0 if p else 0.0 for p in purchased],
            "exposed": [v != "control" for v in variant],
            "added_to_cart_after": [False] * n,
            "time_to_purchase_s": [60.0 if p else None for p in purchased],
            "consent": [True] * n,
            "treatment": ["none"] * n,
            "treatment_propensity": [None] * n,
            "arm_policies": [None] * n,
            "segment": [i % 3 if i % 7 else None for i in range(n)],
        },
        schema=OUTCOME_SCHEMA,
    )


def test_srm_and_lift_match_hand_computations() -> None:
    # chi-square = 2 * 20^2 / 500 = 1.6 on one degree of freedom
    assert srm_p_value([520, 480], [1, 1]) == pytest.approx(stats.chi2.sf(1.6, 1), abs=1e-12)
    assert srm_p_value([520, 480], [1, 1]) == pytest.approx(0.20590, abs=1e-5)
    d = proportion_lift(120, 1000, 100, 1000)
    se = math.sqrt(0.12 * 0.88 / 1000 + 0.10 * 0.90 / 1000)
    assert (d.lift, d.se) == (pytest.approx(0.02), pytest.approx(se))
    assert (d.ci_low, d.ci_high) == (pytest.approx(0.02 - 1.959964 * se, abs=1e-6),
                                     pytest.approx(0.02 + 1.959964 * se, abs=1e-6))  # fmt: skip
    assert d.p_value == pytest.approx(2 * stats.norm.sf(0.02 / se), abs=1e-6)
    h = 2 * math.asin(math.sqrt(0.12)) - 2 * math.asin(math.sqrt(0.10))
    assert d.cohens_h == pytest.approx(h)
    # relative lift: log-ratio interval, se = sqrt(1/x_t - 1/n_t + 1/x_c - 1/n_c)
    se_log = math.sqrt(1 / 120 - 1 / 1000 + 1 / 100 - 1 / 1000)
    assert d.relative == pytest.approx(0.2)
    assert d.rel_low == pytest.approx(1.2 * math.exp(-1.959964 * se_log) - 1, abs=1e-5)
    assert d.rel_high == pytest.approx(1.2 * math.exp(1.959964 * se_log) - 1, abs=1e-5)


def test_bayesian_chance_and_loss_agree_with_the_normal_approximation() -> None:
    p, loss = chance_to_beat(120, 1000, 100, 1000)
    a, b = stats.beta(121, 881), stats.beta(101, 901)
    z = (a.mean() - b.mean()) / math.sqrt(a.var() + b.var())
    assert p == pytest.approx(stats.norm.cdf(z), abs=0.005)
    assert 0 < loss < 0.002
    assert chance_to_beat(100, 1000, 100, 1000)[0] == pytest.approx(0.5, abs=0.005)
    assert chance_to_beat(120, 1000, 100, 1000) == chance_to_beat(120, 1000, 100, 1000)


def test_cuped_recovers_the_effect_with_a_narrower_interval() -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(size=4000)
    t = rng.random(4000) < 0.5
    y = 0.3 * t + 2.0 * x + rng.normal(size=4000)
    a = cuped(y, t, x)
    assert a.theta == pytest.approx(2.0, abs=0.1)
    assert a.cuped_effect == pytest.approx(0.3, abs=3 * a.cuped_se)
    # Var(y | t) = 4 + 1 without the covariate, 1 with it: the interval is sqrt(5) narrower.
    assert a.width_ratio == pytest.approx(1 / math.sqrt(5), abs=0.03)
    # The reference: statsmodels' OLS of y on treatment and the centred covariate.
    import statsmodels.api as sm

    xc = x - x.mean()
    ols = sm.OLS(y, sm.add_constant(np.column_stack([t.astype(float), xc]))).fit(cov_type="HC1")
    plain = sm.OLS(y, sm.add_constant(t.astype(float))).fit(cov_type="HC1")
    assert a.cuped_effect == pytest.approx(ols.params[1], abs=0.01)
    assert a.cuped_se == pytest.approx(ols.bse[1], rel=0.02)
    assert (a.effect, a.se) == (
        pytest.approx(plain.params[1]),
        pytest.approx(plain.bse[1], rel=0.01),
    )


def test_the_always_valid_interval_is_wider_than_the_fixed_one_and_shrinks() -> None:
    widths = [sequential_halfwidth(1 / math.sqrt(n), n, 10_000) for n in (100, 1000, 10_000)]
    assert widths == sorted(widths, reverse=True)
    for n, w in zip((100, 1000, 10_000), widths, strict=True):
        assert w > 1.96 / math.sqrt(n)


def test_a_skewed_assignment_blocks_the_verdict() -> None:
    variant = ["control"] * 400 + ["b"] * 600  # weights say 50/50
    out = analyze(joined(variant, [i % 3 == 0 for i in range(1000)]), {"control": 1, "b": 1},
                  experiment="x")  # fmt: skip
    assert out.srm_p_value < 1e-9 and out.verdict == "invalid"
    assert "sample-ratio mismatch" in out.reason and out.alerts


def test_verdicts_ship_stop_and_keep_running() -> None:
    def run(rate_b: float) -> str:
        variant = ["control", "b"] * 2000
        rng = np.random.default_rng(1)
        buy = [bool(rng.random() < (0.3 if v == "control" else rate_b)) for v in variant]
        return analyze(joined(variant, buy), {"control": 1, "b": 1}, experiment="x").verdict

    assert run(0.45) == "ship"
    assert run(0.15) == "stop"
    assert run(0.30) == "keep running"


@pytest.fixture(scope="module")
def world_experiment() -> tuple[pa.Table, pa.Table]:
    """A large experiment in the world: the truth known for every visitor."""
    people = visitors(GeneratorConfig(sessions=36_000, days=1, seed=77))
    exp = Experiment(
        name="world",
        variants={"control": Variant(weight=0.2), "discount": Variant(weight=0.4),
                  "cta": Variant(weight=0.4)},
    )  # fmt: skip
    shown = {"control": ("none", {}), "discount": (DISCOUNT, {"percent": 15}), "cta": (CTA, {})}
    rows, truth = [], []
    for v in people:
        arm = assign_variant(exp, v.session_id)
        action, params = shown[arm]
        end = ending(v, [(action, params)], seed=77)
        rows.append((v.session_id, arm, end.purchased, 1 - v.oracle_risk, action))
        p_none, _ = v.truth("none", {})
        truth.append({"session_id": v.session_id, "p_purchase": end.p_purchase,
                      "p_purchase_none": p_none})  # fmt: skip
    n = len(rows)
    table = joined([r[1] for r in rows], [r[2] for r in rows], [r[3] for r in rows])
    table = table.set_column(0, "session_id", pa.array([r[0] for r in rows]))
    assert n > 9000
    return table, pa.Table.from_pylist(truth)


def test_a_large_experiment_recovers_the_true_lifts(
    world_experiment: tuple[pa.Table, pa.Table],
) -> None:
    table, truth = world_experiment
    out = analyze(table, {"control": 0.2, "discount": 0.4, "cta": 0.4}, experiment="x",
                  truth=truth)  # fmt: skip
    assert out.srm_p_value > 0.001
    arms = {a.name: a for a in out.arms}
    for name in ("discount", "cta"):
        a = arms[name]
        assert a.true_lift is not None and a.ci_low < a.true_lift < a.ci_high, a
        assert a.cuped_width_ratio is not None and a.cuped_width_ratio < 1.0
    assert arms["discount"].true_lift > arms["cta"].true_lift > 0
    # Per risk decile, the estimates scatter around the true per-band lift.
    errors = [abs(b["lift"] - b["true_lift"]) for b in out.bands]
    assert len(errors) == 20 and np.mean(errors) < 0.03
    assert out.as_dict()["arms"][1]["true_lift"] == arms["discount"].true_lift


def test_tiny_arms_exposed_only_and_missing_risks_do_not_break_the_analysis() -> None:
    # 4 of 4 against 0 of 3: a zero-variance interval, but no verdict on so few.
    variant = ["b"] * 4 + ["control"] * 3
    out = analyze(joined(variant, [True] * 4 + [False] * 3), {"control": 1, "b": 1},
                  experiment="x")  # fmt: skip
    assert out.verdict == "keep running" and out.arms[1].verdict == "keep running"
    # An arm with no exposed session drops out of the exposed-only view; no crash.
    variant = ["control"] * 300 + ["b"] * 300 + ["holdout"] * 300
    t = joined(variant, [i % 3 == 0 for i in range(900)], [0.1 + (i % 7) / 10 for i in range(900)])
    exposed = pa.array([v == "b" for v in variant])
    t = t.set_column(t.schema.get_field_index("exposed"), "exposed", exposed)
    weights = {"control": 1, "b": 1, "holdout": 1}
    out = analyze(t, weights, experiment="x", exposed_only=True)
    assert [a.name for a in out.arms] == ["control", "b"]
    # A session without a risk (a degraded decision) leaves CUPED on for the others.
    risk = t.column("risk").to_pylist()
    risk[5] = None
    t = t.set_column(t.schema.get_field_index("risk"), "risk", pa.array(risk, pa.float64()))
    assert analyze(t, weights, experiment="x").arms[1].cuped_width_ratio is not None


def test_lift_per_segment_matches_a_hand_count() -> None:
    # Session i is in segment i % 3, except every 7th (no segmenter then: "none").
    variant = ["control" if i % 2 else "treatment" for i in range(42)]
    purchased = [i % 4 == 0 for i in range(42)]
    t = joined(variant, purchased)
    out = analyze(t, {"control": 0.5, "treatment": 0.5}, experiment="x")
    got = {r["group"]: r for r in out.segments}
    assert set(got) == {"0", "1", "2", "none"}
    for label in got:
        rows = [i for i in range(42) if (str(i % 3) if i % 7 else "none") == label]
        treated = [i for i in rows if variant[i] == "treatment"]
        control = [i for i in rows if variant[i] == "control"]
        rate = lambda ids: sum(purchased[i] for i in ids) / len(ids)  # noqa: E731
        assert got[label]["sessions"] == len(treated)
        assert got[label]["control_sessions"] == len(control)
        assert got[label]["lift"] == pytest.approx(rate(treated) - rate(control))
