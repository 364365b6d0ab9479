"""The ideal risk: the best risk the events allow, checked against the world's truth."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from events.synth import GeneratorConfig, generate_events
from events.synth.ideal import EVIDENCE, ideal_risk
from events.synth.likelihood import FIRST_ADD

CFG = GeneratorConfig(sessions=4000, days=2, seed=9)


@pytest.fixture(scope="module")
def world() -> tuple[pa.Table, pa.Table, pa.Table]:
    events, oracle = generate_events(CFG)
    return events, oracle, ideal_risk(events, oracle, CFG)


def _with_truth(ideal: pa.Table, oracle: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ideal risk, the oracle's risk of the same session, and the session's row number."""
    at = pc.index_in(ideal["session_id"], value_set=oracle["session_id"]).to_numpy()
    p = oracle["p_abandon"].to_numpy(zero_copy_only=False)[at]
    return ideal["ideal_risk"].to_numpy(), p, at


def test_first_add_position_given_length_by_hand() -> None:
    # browse = 20: floor(U(0.4, 0.8) * 20) is 8 .. 15, each with chance 1/8.
    assert FIRST_ADD[8:16, 20] == pytest.approx([0.125] * 8)
    assert FIRST_ADD[:, 20].sum() == pytest.approx(1.0)
    # browse = 14: floor(u * 14) is 5 .. 11 and the world moves 5, 6, 7 up to 8.
    assert FIRST_ADD[8, 14] == pytest.approx((9 / 14 - 0.4) / 0.4)
    assert FIRST_ADD[:, 14:].sum(axis=0) == pytest.approx(np.ones(398 - 14 + 1))


def test_every_decision_point_of_every_cart_session_has_one(world) -> None:
    events, oracle, ideal = world
    carts = oracle.filter(oracle["added_to_cart"])
    assert set(ideal["session_id"].to_pylist()) == set(carts["session_id"].to_pylist())
    # Rows run from the first add_to_cart up to (not including) the checkout.
    counts = {}
    for sid, kind in zip(
        events["session_id"].to_pylist(), events["event_type"].to_pylist(), strict=True
    ):
        seen, done, n = counts.get(sid, (False, False, 0))
        seen = seen or kind == "add_to_cart"
        done = done or kind in ("checkout_start", "purchase")
        counts[sid] = (seen, done, n + (seen and not done))
    expected = sum(n for _, _, n in counts.values())
    assert ideal.num_rows == expected
    risk = ideal["ideal_risk"].to_numpy()
    assert np.isfinite(risk).all() and (risk > 0).all() and (risk < 1).all()


def test_ideal_risk_is_the_posterior_mean_of_the_true_risk(world) -> None:
    # A posterior mean is calibrated against the truth it averages: among points
    # with ideal risk r, the oracle's true risk averages r. A wrong likelihood
    # term (a sign, a scale, a page off by one) breaks this.
    _, oracle, ideal = world
    r, p, _ = _with_truth(ideal, oracle)
    assert abs(p.mean() - r.mean()) < 0.01
    slope, _ = np.polyfit(r, p, 1)
    assert 0.93 < slope < 1.07
    edges = np.quantile(r, np.linspace(0, 1, 11))
    band = np.clip(np.searchsorted(edges, r, side="right") - 1, 0, 9)
    for b in range(10):
        assert abs(p[band == b].mean() - r[band == b].mean()) < 0.03, b
    # ...and it is far from the oracle's prior: it does learn from the events.
    assert np.corrcoef(r, p)[0, 1] > 0.9


def test_more_events_bring_the_ideal_closer_to_the_oracle(world) -> None:
    _, oracle, ideal = world
    r, p, at = _with_truth(ideal, oracle)
    first = np.ones(len(at), dtype=bool)
    first[1:] = at[1:] != at[:-1]
    last = np.ones(len(at), dtype=bool)
    last[:-1] = at[1:] != at[:-1]
    err_first = np.abs(r - p)[first].mean()
    err_last = np.abs(r - p)[last].mean()
    assert err_last < 0.9 * err_first


def _session_rows(ideal: pa.Table, sid: str) -> np.ndarray:
    return ideal.filter(pc.equal(ideal["session_id"], sid))["ideal_risk"].to_numpy()


def test_the_ideal_at_a_decision_point_reads_only_the_past(world) -> None:
    events, oracle, ideal = world
    carts = oracle.filter(oracle["added_to_cart"])
    sid = carts["session_id"][5].as_py()
    mine = events.filter(pc.equal(events["session_id"], sid))
    full = _session_rows(ideal, sid)
    assert len(full) >= 4
    # Cut the session two decision points after its first add_to_cart.
    first_add = mine["event_type"].to_pylist().index("add_to_cart")
    cut_ts = mine["ts"][first_add + 2]
    keep = pc.invert(pc.and_(pc.equal(events["session_id"], sid), pc.greater(events["ts"], cut_ts)))
    cut = ideal_risk(events.filter(keep), oracle, CFG)
    assert _session_rows(cut, sid) == pytest.approx(full[:3], rel=1e-9)


def test_a_users_earlier_sessions_inform_the_ideal_and_later_ones_do_not(world) -> None:
    events, oracle, ideal = world
    rows = oracle.select(["session_id", "user_id", "start_ts", "consent", "added_to_cart"])
    df = rows.to_pandas().dropna(subset=["user_id"]).sort_values("start_ts")
    df["nth"] = df.groupby("user_id").cumcount()
    df["count"] = df.groupby("user_id")["session_id"].transform("size")
    # A cart session that is neither its user's first nor last session.
    pick = df[df["added_to_cart"] & (df["nth"] >= 1) & (df["nth"] < df["count"] - 1)].iloc[0]
    mine = df[df["user_id"] == pick["user_id"]]
    earlier = mine[mine["nth"] < pick["nth"]]
    earlier = earlier[earlier["consent"]]
    later = mine[mine["nth"] > pick["nth"]]["session_id"].tolist()
    assert len(earlier) >= 1, "the chosen user needs an earlier consented session"
    base = _session_rows(ideal, pick["session_id"])

    def without(sessions: list[str]) -> np.ndarray:
        """The chosen session's ideal when ``sessions`` were not consented (not observed)."""
        hidden = pc.is_in(oracle["session_id"], pa.array(sessions))
        consent = pc.and_(oracle["consent"], pc.invert(hidden))
        blind = oracle.set_column(oracle.schema.get_field_index("consent"), "consent", consent)
        return _session_rows(ideal_risk(events, blind, CFG), pick["session_id"])

    assert without(later) == pytest.approx(base, rel=1e-9)
    assert not np.allclose(without(earlier["session_id"].tolist()), base, rtol=1e-6)


def test_leaving_evidence_out_is_a_diagnostic_that_names_what_it_knows(world) -> None:
    events, oracle, _ = world
    with pytest.raises(ValueError, match="unknown evidence"):
        ideal_risk(events, oracle, CFG, leave_out=("mood",))
    # With no evidence at all, the risk is the prior: one per device, signed in or not.
    blind = ideal_risk(events, oracle, CFG, leave_out=EVIDENCE)
    assert len(np.unique(np.round(blind["ideal_risk"].to_numpy(), 12))) <= 3 * 2
