"""Off-policy estimators: hand computations on a tiny log, and coverage in a known world."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from scipy import stats

from experiments.ope import (
    doubly_robust,
    dr_difference,
    fit_reward_model,
    ips,
    snips,
)

# Four logged decisions over two actions.
ACTION = np.array([0, 1, 1, 0])
MU = np.array([0.5, 0.25, 0.25, 0.8])
REWARD = np.array([10.0, 0.0, 20.0, 5.0])
ALWAYS_1 = np.tile([0.0, 1.0], (4, 1))
HALF = np.full((4, 2), 0.5)
Q = np.array([[8.0, 12.0], [8.0, 12.0], [8.0, 12.0], [8.0, 12.0]])


def test_ips_by_hand() -> None:
    # Always 1: weights 0, 4, 4, 0 -> contributions 0, 0, 80, 0.
    est = ips(ALWAYS_1, ACTION, MU, REWARD)
    assert est.value == pytest.approx(20.0)
    contrib = np.array([0.0, 0.0, 80.0, 0.0])
    half = stats.t.ppf(0.975, 3) * contrib.std(ddof=1) / 2
    assert (est.ci_low, est.ci_high) == pytest.approx((20.0 - half, 20.0 + half))
    assert est.ess == pytest.approx(8.0**2 / 32.0)
    # Half and half: weights 1, 2, 2, 0.625.
    assert ips(HALF, ACTION, MU, REWARD).value == pytest.approx((10 + 0 + 40 + 3.125) / 4)


def test_snips_by_hand() -> None:
    w = np.array([1.0, 2.0, 2.0, 0.625])
    assert snips(HALF, ACTION, MU, REWARD).value == pytest.approx((w * REWARD).sum() / w.sum())


def test_doubly_robust_by_hand() -> None:
    # Always 1: direct part 12 each; corrections 0, 4*(0-12), 4*(20-12), 0.
    est = doubly_robust(ALWAYS_1, ACTION, MU, REWARD, Q)
    assert est.value == pytest.approx((12 + (12 - 48) + (12 + 32) + 12) / 4)
    # A perfect reward model and a deterministic log: DR is the direct estimate.
    exact = np.tile([10.0, 20.0], (4, 1))
    assert (
        doubly_robust(ALWAYS_1, np.array([1] * 4), np.ones(4), np.full(4, 20.0), exact).value
        == 20.0
    )


def test_the_paired_difference_is_the_difference_of_the_values() -> None:
    d = dr_difference(ALWAYS_1, HALF, ACTION, MU, REWARD, Q)
    a = doubly_robust(ALWAYS_1, ACTION, MU, REWARD, Q).value
    b = doubly_robust(HALF, ACTION, MU, REWARD, Q).value
    assert d.value == pytest.approx(a - b)
    assert d.ci_low < d.value < d.ci_high


@pytest.mark.parametrize(
    ("mu", "target", "message"),
    [
        (np.array([0.5, 0.0, 0.25, 0.8]), ALWAYS_1, "propensity"),
        (MU, np.tile([0.5, 0.4], (4, 1)), "probability distribution"),
    ],
)
def test_bad_logs_are_refused_with_a_reason(mu, target, message) -> None:
    with pytest.raises(ValueError, match=message):
        ips(target, ACTION, mu, REWARD)


def _logged_world(rng: np.random.Generator, n: int):
    """Contexts, a logging policy that prefers action 0, rewards, and the true values."""
    x = rng.random(n)
    p = np.column_stack([0.3 + 0.2 * x, 0.6 - 0.4 * x, 0.2 + 0.5 * x])  # P(reward 1 | x, a)
    logging = np.column_stack([np.full(n, 0.6), np.full(n, 0.25), np.full(n, 0.15)])
    action = (rng.random(n)[:, None] > np.cumsum(logging, axis=1)).sum(axis=1)
    reward = (rng.random(n) < p[np.arange(n), action]).astype(float)
    target = np.zeros((n, 3))
    target[np.arange(n), np.where(x > 0.5, 2, 1)] = 1.0  # a context-dependent candidate
    true = 0.5 * (0.6 - 0.4 * 0.25) + 0.5 * (0.2 + 0.5 * 0.75)  # E over x of its p
    return x, action, logging[np.arange(n), action], reward, target, true


def test_intervals_cover_the_true_value_of_a_candidate_policy() -> None:
    # 300 logs of a world whose candidate value is known in closed form.
    rng = np.random.default_rng(17)
    cover = {"ips": 0, "snips": 0, "dr": 0}
    runs = 300
    for _ in range(runs):
        x, action, mu, reward, target, true = _logged_world(rng, 400)
        q = np.tile(np.array([reward[action == a].mean() for a in range(3)]), (len(x), 1))
        for name, est in (
            ("ips", ips(target, action, mu, reward)),
            ("snips", snips(target, action, mu, reward)),
            ("dr", doubly_robust(target, action, mu, reward, q)),
        ):
            cover[name] += est.ci_low <= true <= est.ci_high
    for name, hits in cover.items():
        assert 0.91 <= hits / runs <= 0.99, (name, hits)


def test_the_cross_fitted_reward_model_learns_the_rewards() -> None:
    rng = np.random.default_rng(3)
    x, action, _, _, _, _ = _logged_world(rng, 6000)
    expected = np.column_stack([0.3 + 0.2 * x, 0.6 - 0.4 * x, 0.2 + 0.5 * x])
    reward = expected[np.arange(len(x)), action] * 50  # a revenue: 50 times P(buy)
    q = fit_reward_model(x[:, None], action, reward, 3, seed=0)
    assert np.abs(q - expected * 50).mean() < 1.0
    # Cross-fitting: the same seed gives the same model.
    assert np.array_equal(q, fit_reward_model(x[:, None], action, reward, 3, seed=0))


def _two_arms(b_revenue: list[float]) -> pa.Table:
    """A log of two arms, half each: control never adjusts, b shows the call to action."""
    n = 400
    arms = '{"control": {"none": 1}, "b": {"emphasize_cta": 1}}'
    revenue = [10.0 if i % 2 == 0 else b_revenue[(i // 2) % len(b_revenue)] for i in range(n)]
    return pa.table(
        {
            "treatment": ["none", "emphasize_cta"] * (n // 2),
            "variant": ["control", "b"] * (n // 2),
            "propensity": [0.5] * n,
            "treatment_propensity": [0.5] * n,
            "revenue": revenue,
            "arm_policies": [arms] * n,
            "risk": [0.5] * n,
            "device": ["mobile", "mobile", "desktop", "desktop"] * (n // 4),  # both arms see both
        }
    )


def test_the_gate_promotes_only_a_policy_that_is_surely_better() -> None:
    from core.errors import InputError
    from experiments.policy_eval import gate_policy

    better = gate_policy(_two_arms([14.0, 12.0]), "b", "control")
    assert better.promote and better.difference.ci_low > 0
    assert better.difference.value == pytest.approx(3.0, abs=0.05)
    # A worse candidate, and one no better than noise, are refused.
    worse = gate_policy(_two_arms([4.0, 12.0]), "b", "control")
    assert not worse.promote and worse.difference.value == pytest.approx(-2.0, abs=0.05)
    tie = gate_policy(_two_arms([0.0, 20.0]), "b", "control")
    assert not tie.promote and tie.difference.ci_low < 0 < tie.difference.ci_high
    assert "stays" in tie.reason
    with pytest.raises(InputError, match="no policy 'learner'"):
        gate_policy(_two_arms([12.0]), "learner")
