"""The contextual bandit: exploration floor, determinism, learning a known best arm."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from models.bandit import BanditSpec, ContextualBandit

ACTIONS = ("none", "emphasize_cta", "show_discount_popup@10")
#: The small world: P(purchase) per device and action; an order is worth 50, a
#: discount gives 10% of it away. Mobile visitors answer the call to action,
#: desktop ones the discount.
P_BUY = {
    "mobile": {"none": 0.40, "emphasize_cta": 0.58, "show_discount_popup@10": 0.45},
    "desktop": {"none": 0.40, "emphasize_cta": 0.42, "show_discount_popup@10": 0.62},
}
VALUE = {"none": 50.0, "emphasize_cta": 50.0, "show_discount_popup@10": 45.0}
BEST = {"mobile": "emphasize_cta", "desktop": "show_discount_popup@10"}


def _run(seed: int, rounds: int) -> tuple[ContextualBandit, list[float]]:
    """Online: choose, observe the world's reward, learn; the expected reward of each choice."""
    rng = np.random.default_rng(seed)
    bandit = ContextualBandit(BanditSpec(actions=ACTIONS, seed=seed))
    expected = []
    for _ in range(rounds):
        ctx = {"risk": float(rng.random()), "device": str(rng.choice(["mobile", "desktop"]))}
        action, p = bandit.choose(ctx, float(rng.random()))
        buy = rng.random() < P_BUY[ctx["device"]][action]
        bandit.learn(ctx, action, VALUE[action] * buy, p)
        expected.append(VALUE[action] * P_BUY[ctx["device"]][action])
    return bandit, expected


def test_probabilities_are_a_distribution_with_the_exploration_floor() -> None:
    bandit, _ = _run(seed=1, rounds=300)
    rng = np.random.default_rng(2)
    for _ in range(50):
        ctx = {"risk": float(rng.random()), "device": str(rng.choice(["mobile", "tablet"]))}
        p = bandit.probabilities(ctx)
        assert p.sum() == pytest.approx(1.0)
        assert p.min() >= bandit.spec.floor - 1e-6


def test_a_known_best_arm_is_found_for_each_kind_of_visitor() -> None:
    bandit, expected = _run(seed=3, rounds=3000)
    for device, best in BEST.items():
        p = bandit.probabilities({"risk": 0.5, "device": device})
        assert ACTIONS[int(np.argmax(p))] == best, (device, p)
        assert p.max() > 0.6  # a clear preference, not a coin toss
    # Learning pays: the last thousand choices earn more than choosing at random.
    uniform = np.mean([VALUE[a] * P_BUY[d][a] for d in P_BUY for a in ACTIONS])
    oracle = np.mean([VALUE[BEST[d]] * P_BUY[d][BEST[d]] for d in P_BUY])
    assert np.mean(expected[-1000:]) > uniform + 0.7 * (oracle - uniform)


def test_the_native_path_predicts_and_learns_like_the_vw_wrapper() -> None:
    """pmf() and learn() skip pyvw's Example wrapper; what VW computes must not change."""
    ours, theirs = (ContextualBandit(BanditSpec(actions=ACTIONS, seed=5)) for _ in range(2))
    rng = np.random.default_rng(5)
    for _ in range(400):
        ctx = {"risk": float(rng.random()), "device": str(rng.choice(["mobile", "desktop"]))}
        wrapped = theirs._vw.predict([theirs._shared(ctx), *theirs._action_lines])
        raw = np.maximum(np.asarray(wrapped, float), 0.0)
        expected = (1 - theirs.spec.epsilon) * raw / raw.sum() + theirs.spec.floor
        assert ours.pmf(ctx) == pytest.approx(expected.tolist(), abs=1e-12)
        action, p = ours.choose(ctx, float(rng.random()))
        reward = 50.0 * (rng.random() < P_BUY[ctx["device"]][action])
        ours.learn(ctx, action, reward, p)
        lines = list(theirs._action_lines)  # the same label, through Workspace.learn
        i = ACTIONS.index(action)
        lines[i] = f"0:{-reward / theirs.spec.reward_scale:.6g}:{p:.6g} {lines[i]}"
        theirs._vw.learn([theirs._shared(ctx), *lines])
    assert max(ours.pmf({"risk": 0.5, "device": "desktop"})) > 0.5  # it did learn


def test_the_learner_is_deterministic_for_a_seed(tmp_path: Path) -> None:
    a, ea = _run(seed=5, rounds=400)
    b, eb = _run(seed=5, rounds=400)
    assert ea == eb
    ctx = {"risk": 0.3, "device": "desktop"}
    assert np.array_equal(a.probabilities(ctx), b.probabilities(ctx))
    # Saved and loaded, it answers the same and knows what it is.
    loaded = ContextualBandit.load(a.save(tmp_path / "bandit"))
    assert loaded.spec == a.spec and loaded.rounds == 400
    assert np.allclose(loaded.probabilities(ctx), a.probabilities(ctx))


def test_bad_feedback_is_refused_with_a_reason() -> None:
    bandit = ContextualBandit(BanditSpec(actions=ACTIONS))
    with pytest.raises(ValueError, match="unknown action"):
        bandit.learn({"risk": 0.5}, "free_shipping", 1.0, 0.5)
    with pytest.raises(ValueError, match="propensity"):
        bandit.learn({"risk": 0.5}, "none", 1.0, 0.0)
    with pytest.raises(ValueError, match="epsilon"):
        BanditSpec(actions=ACTIONS, epsilon=0.0)


def test_only_a_sessions_first_decision_teaches_the_bandit(tmp_path: Path) -> None:
    from serving.learner import LabelQueue

    q = LabelQueue(tmp_path / "labels.db")
    q.add_assignment("s1", 10.0, {"risk": 0.8}, "emphasize_cta", 0.25)
    for i in range(50):  # the session is scored on every page: later decisions are not kept
        q.add_assignment("s1", 11.0 + i, {"risk": 0.9}, "none", 0.5)
    q.add_assignment("s2", 12.0, {"risk": 0.1}, "none", 0.5)
    assert len(q._assignments) == 2  # not even buffered
    q.add_activity("s1", 70.0, purchased=True, revenue=40.0)
    q.add_activity("s2", 20.0, purchased=False)
    rewards = q.take_rewards(now=1000.0, gap_s=600.0)
    assert [(r[0], r[3], r[4], r[5]) for r in rewards] == [
        ("s1", "emphasize_cta", 0.25, 40.0),
        ("s2", "none", 0.5, 0.0),
    ]
    assert q.take_rewards(now=1000.0, gap_s=600.0) == []  # taken once
