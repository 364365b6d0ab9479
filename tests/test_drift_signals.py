"""river's drift signals: ADWIN on one mean error per session, rises only (models/online.py)."""

from __future__ import annotations

import numpy as np
from river import drift

from models.card import ModelCard
from models.online import (
    ADWIN_DELTA,
    ADWIN_RISES_ONLY,
    ErrorDrift,
    RiverRiskModel,
    replay,
)
from serving.learner import by_session, learn

COLUMNS = ["hesitation", "step"]


def sessions(
    n: int, seed: int, flip_at: int | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Decision points of ``n`` sessions, one a minute, in decision order.

    A session has one hesitation and one outcome, and 1 + Poisson(5) decision
    points. From session ``flip_at`` on, the link flips: hesitation lowers
    abandonment instead of raising it. Returns x, y, decided, labelled, session.
    """
    rng = np.random.default_rng(seed)
    size = 1 + rng.poisson(5, n)
    h = rng.normal(size=n)
    flipped = np.zeros(n, bool) if flip_at is None else np.arange(n) >= flip_at
    y = (rng.random(n) < 1 / (1 + np.exp(-np.where(flipped, -2.0, 2.0) * h))).astype(int)
    row = np.repeat(np.arange(n), size)
    step = np.concatenate([np.arange(k) for k in size])
    x = np.column_stack([h[row] + rng.normal(0, 0.3, len(row)), step])
    decided = row * 60.0 + step * 20.0
    labelled = row * 60.0 + size[row] * 20.0 + 1800.0
    order = np.argsort(decided, kind="stable")
    return x[order], y[row][order], decided[order], labelled[order], row[order]


def river(adwin: ErrorDrift | None = None) -> RiverRiskModel:
    return RiverRiskModel(ModelCard("river", "svc", COLUMNS, {}), adwin=adwin)


def test_the_model_uses_the_one_setting() -> None:
    m = river()
    assert isinstance(m.adwin, ErrorDrift)
    assert m.adwin.delta == ADWIN_DELTA and m.adwin.rises_only == ADWIN_RISES_ONLY
    assert m.adwin.adwin.delta == ADWIN_DELTA


def test_a_falling_error_is_a_change_but_no_signal() -> None:
    rng = np.random.default_rng(1)
    falling = np.r_[rng.random(2000) < 0.5, rng.random(2000) < 0.2].astype(float)
    quiet, loud = ErrorDrift(delta=0.002), ErrorDrift(delta=0.002, rises_only=False)
    assert not any(quiet.update(e) for e in falling) and quiet.changes >= 1
    assert quiet.last_change < 0
    assert sum(loud.update(e) for e in falling) == loud.changes >= 1


def test_one_error_a_session_stays_quiet_without_drift_and_catches_a_flipped_link() -> None:
    x, y, decided, labelled, session = sessions(4000, 0, flip_at=3000)
    flip = decided[session == 3000].min()
    new = river()
    signals = replay(new, x, y, decided, labelled, session).drift_at
    at = [decided[min(i, len(x) - 1)] for i in signals]
    assert at and min(at) > flip  # nothing before the flip
    assert min(at) - flip < 300 * 60  # caught within 300 sessions of the flip
    assert new.drifts == len(signals)
    # The old detector (one error a decision point, delta 2e-4, any change) signals
    # several times before the flip: a session's errors come in runs.
    old = river(ErrorDrift(delta=2e-4, rises_only=False))
    before = [i for i in replay(old, x, y, decided, labelled).drift_at if decided[i] < flip]
    assert len(before) >= 3


def test_per_session_replay_learns_exactly_what_per_row_replay_learns() -> None:
    x, y, decided, labelled, session = sessions(600, 2)
    a, b = river(), river()
    ra = replay(a, x, y, decided, labelled, session)
    rb = replay(b, x, y, decided, labelled)
    assert np.array_equal(ra.predictions, rb.predictions) and a.learned == b.learned == len(x)


def test_an_old_checkpoint_gets_the_calibrated_detector() -> None:
    m = river()
    m.adwin = drift.ADWIN(delta=0.0002)  # what checkpoints held before ErrorDrift
    assert m.learn_session([({"hesitation": 1.0, "step": 0.0}, 0.4)], 1) is False
    assert isinstance(m.adwin, ErrorDrift) and m.adwin.delta == ADWIN_DELTA


class Recorder:
    """Stands in for the river model: records the sessions the learner passes."""

    def __init__(self, fire_on: str) -> None:
        self.sessions: list[tuple[list[float | None], int]] = []
        self.fire_on = fire_on

    def learn_session(self, rows: list[tuple[dict[str, float], float | None]], y: int) -> bool:
        self.sessions.append(([p for _, p in rows], y))
        return rows[0][0]["id"] == self.fire_on  # type: ignore[comparison-overlap]


def test_the_live_learner_feeds_whole_sessions_in_time_order() -> None:
    # (id, session, ts, x, p, y) as LabelQueue.take_labelled returns them.
    examples = [
        (1, "a", 10.0, {"id": "a"}, 0.1, 1),
        (2, "b", 11.0, {"id": "b"}, 0.5, 0),
        (3, "a", 12.0, {"id": "a"}, 0.2, 1),
        (4, "b", 13.0, {"id": "b"}, None, 0),
        (5, "a", 14.0, {"id": "a"}, 0.3, 1),
    ]
    model = Recorder(fire_on="a")
    assert learn(model, examples) == [14.0]  # dated by the session's last decision
    assert model.sessions == [([0.1, 0.2, 0.3], 1), ([0.5, None], 0)]
    chunks = list(by_session(examples, 2))
    assert [[e[0] for e in c] for c in chunks] == [[1, 3, 5], [2, 4]]


def test_the_label_queue_finds_ended_sessions_without_scanning_open_ones(tmp_path) -> None:
    from serving.learner import TAKE_LABELLED, LabelQueue

    q = LabelQueue(tmp_path / "labels.db")
    # 2,000 decisions of 200 sessions still open, and three sessions that ended.
    for i in range(2000):
        q.add_decision(f"open-{i % 200}", 1000.0 + i, {"i": float(i)}, 0.5)
        q.add_activity(f"open-{i % 200}", 1000.0 + i, purchased=False)
    q.add_decision("bought", 50.0, {"i": -1.0}, 0.2)
    q.add_activity("bought", 60.0, purchased=True)
    q.add_decision("left", 40.0, {"i": -2.0}, 0.7)
    q.add_decision("left", 45.0, {"i": -3.0}, 0.8)
    q.add_activity("left", 45.0, purchased=False)
    taken = q.take_labelled(now=3000.0, gap_s=1800.0)
    assert [(s, ts, y) for _, s, ts, _, _, y in taken] == [
        ("left", 40.0, 1),
        ("left", 45.0, 1),
        ("bought", 50.0, 0),
    ]
    assert q.pending() == 2000
    # The plan reaches decisions through their session index, never by a scan.
    plan = [r[3] for r in q._conn.execute("EXPLAIN QUERY PLAN " + TAKE_LABELLED, (0.0, 10))]
    assert not any(step.startswith("SCAN") for step in plan), plan
    assert any("decisions_session" in step for step in plan), plan
