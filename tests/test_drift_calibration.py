"""Drift thresholds calibrated on the reference alone (monitoring/calibration.py)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from core.settings import DriftSettings
from monitoring import DriftVerdict, check
from monitoring.calibration import (
    count_limit,
    distance,
    exceedances,
    finite,
    null_scores,
    split,
    thresholds,
)


def sessions(n_sessions: int, seed: int, shift: float = 0.0, start: int = 0) -> pd.DataFrame:
    """Decision points as the log holds them: several alike rows per session.

    ``dwell`` is heavy-tailed and fixed within a session (long sessions also
    give more rows), ``speed`` is normal, ``mobile`` a 0/1 category, and
    ``history`` grows with the session's index (a trend, like a user's past).
    """
    rng = np.random.default_rng(seed)
    size = 1 + rng.poisson(5, n_sessions)
    dwell = rng.lognormal(3.0, 1.2, n_sessions) * size
    speed = rng.normal(shift, 1.0, n_sessions)
    mobile = (rng.random(n_sessions) < 0.55 + 0.25 * (shift > 0)).astype(float)
    history = np.arange(start, start + n_sessions) / 100.0
    rep = np.repeat(np.arange(n_sessions), size)
    return pd.DataFrame(
        {
            "session_id": [f"s{start + i}" for i in rep],
            "dwell": dwell[rep] * rng.uniform(0.9, 1.1, len(rep)),
            "speed": speed[rep] + rng.normal(0, 0.1, len(rep)),
            "mobile": mobile[rep],
            "history": history[rep],
        }
    )


FEATURES = ["dwell", "speed", "mobile", "history"]


def run(ref: pd.DataFrame, cur: pd.DataFrame, **kw: object) -> DriftVerdict:
    return check(ref, cur, features=FEATURES, categorical=["mobile"], **kw)  # type: ignore[arg-type]


def test_distances_are_the_ones_evidently_reports() -> None:
    ref, cur = sessions(800, 0), sessions(150, 1, shift=0.5, start=800)
    cur.loc[cur.index[:5], "dwell"] = np.nan
    v = run(ref, cur)
    for f in v.features:
        ours = distance(finite(ref[f.name]), finite(cur[f.name]), f.name == "mobile")
        assert f.score == pytest.approx(ours, rel=1e-9, abs=1e-12), f.name


def test_thresholds_are_seeded_and_shrink_to_the_floor_as_windows_grow() -> None:
    ref = sessions(1500, 0)
    kw = {"floor": 0.1, "draws": 20, "z": 3.0, "group": "session_id"}
    small = thresholds(ref, FEATURES, ["mobile"], rows=300, seed=4, **kw)  # type: ignore[arg-type]
    again = thresholds(ref, FEATURES, ["mobile"], rows=300, seed=4, **kw)  # type: ignore[arg-type]
    large = thresholds(ref, FEATURES, ["mobile"], rows=4000, seed=4, **kw)  # type: ignore[arg-type]
    assert small == again
    assert all(small[c] > large[c] for c in ("dwell", "speed"))
    assert small["dwell"] > 0.3 and large["mobile"] == 0.1 < small["mobile"]


def test_whole_sessions_stay_on_one_side_of_a_split() -> None:
    ref = sessions(400, 0)
    mask = split(ref["session_id"].to_numpy(), 500, np.random.default_rng(0))
    inside = set(ref.loc[mask, "session_id"])
    assert inside.isdisjoint(set(ref.loc[~mask, "session_id"]))
    assert 500 <= mask.sum() < 500 + 30
    # Rows of one session are alike: splitting rows hides most of the chance variation.
    kw = {"rows": 300, "draws": 30, "seed": 0}
    by_row = null_scores(ref, ["dwell"], [], **kw)["dwell"]  # type: ignore[arg-type]
    by_session = null_scores(ref, ["dwell"], [], group="session_id", **kw)["dwell"]  # type: ignore[arg-type]
    assert by_session.mean() > 2 * by_row.mean()


def test_chance_alone_passes_and_a_real_shift_still_fails() -> None:
    ref = sessions(1000, 0)
    noise = [sessions(60, seed, start=10_000 * seed) for seed in range(1, 4)]
    history = ["history"]  # grows with time: scored, never counted
    fixed = [run(ref, cur, cfg=DriftSettings(calibrate=False)) for cur in noise]
    calibrated = [run(ref, cur, report_only=history) for cur in noise]
    assert sum(v.check("data_drift").status == "fail" for v in fixed) >= 2
    assert [v.check("data_drift").status for v in calibrated] == ["pass"] * 3
    shifted = run(ref, sessions(60, 9, shift=1.5, start=90_000), report_only=history)
    assert shifted.check("data_drift").status == "fail"
    assert {d.name for d in shifted.drifted} == {"speed", "mobile"}
    history_drift = next(f for f in shifted.features if f.name == "history")
    assert history_drift.over and not history_drift.counted and not history_drift.drifted
    assert "not counted: history" in shifted.check("data_drift").detail


def test_calibrated_verdicts_round_trip_and_old_verdicts_still_read() -> None:
    v = run(sessions(500, 0), sessions(100, 1, shift=1.5, start=500), report_only=["history"])
    data = json.loads(json.dumps(v.as_dict()))
    assert DriftVerdict.from_dict(data).as_dict() == v.as_dict()
    assert all(f["threshold"] >= 0.1 for f in data["features"])
    for f in data["features"]:
        del f["threshold"], f["counted"]
    old = DriftVerdict.from_dict(data)
    assert all(f.counted and f.threshold is None for f in old.features)


def with_copies(n_sessions: int, seed: int, shift: float = 0.0, start: int = 0) -> pd.DataFrame:
    """:func:`sessions` plus four near-copies of ``dwell`` (correlated counts move together)."""
    f = sessions(n_sessions, seed, shift=shift, start=start)
    rng = np.random.default_rng(seed + 7)
    for i in range(4):
        f[f"dwell{i}"] = f["dwell"] * rng.uniform(0.95, 1.05, len(f))
    return f


COPIES = ["dwell", "dwell0", "dwell1", "dwell2", "dwell3", "speed", "mobile"]


def test_null_counts_are_counted_on_fresh_splits_and_correlated_features_cross_together() -> None:
    ref = with_copies(1000, 0)
    kw = {"rows": 300, "group": "session_id"}
    alone = [[c] for c in COPIES]
    limits = thresholds(ref, COPIES, ["mobile"], floor=0.1, draws=40, z=2.0, seed=2, **kw)  # type: ignore[arg-type]
    counts = exceedances(ref, alone, ["mobile"], limits, draws=200, seed=3, **kw)  # type: ignore[arg-type]
    again = exceedances(ref, alone, ["mobile"], limits, draws=200, seed=3, **kw)  # type: ignore[arg-type]
    scores = null_scores(ref, COPIES, ["mobile"], draws=200, seed=3, **kw)  # type: ignore[arg-type]
    assert counts.tolist() == again.tolist()
    assert counts.tolist() == [sum(scores[c][d] >= limits[c] for c in COPIES) for d in range(200)]
    # The five dwell columns cross together: a count of 5 is common by chance alone.
    assert (counts >= 5).mean() > 0.02
    assert count_limit(counts, alpha=0.02, minimum=2) >= 5
    assert count_limit(counts, alpha=0.5, minimum=2) == 2  # never below the minimum
    # Counted as one group, they are one vote: the count never exceeds the three groups.
    grouped = [COPIES[:5], ["speed"], ["mobile"]]
    by_group = exceedances(ref, grouped, ["mobile"], limits, draws=200, seed=3, **kw)  # type: ignore[arg-type]
    dwell_over = np.any([scores[c] >= limits[c] for c in COPIES[:5]], axis=0)
    assert by_group.max() <= 3
    assert (
        by_group.tolist()
        == (counts - sum(scores[c] >= limits[c] for c in COPIES[:5]) + dwell_over).tolist()
    )


def test_the_count_needed_to_fail_is_calibrated_on_the_reference() -> None:
    ref = with_copies(1000, 0)
    kw = {"categorical": ["mobile"], "report_only": ["history"], "features": [*COPIES, "history"]}
    # Every feature votes alone here, to see the count rule by itself.
    counted = DriftSettings(
        calibration_z=2.0, calibrate_count=True, count_alpha=0.02, group_corr=None
    )
    fixed = DriftSettings(calibration_z=2.0, group_corr=None)  # the fixed count rule
    # Only the correlated dwell columns move: what chance alone often gives on this reference.
    cur = with_copies(60, 1, start=10_000)
    cur[["dwell", "dwell0", "dwell1", "dwell2", "dwell3"]] *= 2.0
    old, new = (check(ref, cur, cfg=c, **kw).check("data_drift") for c in (fixed, counted))  # type: ignore[arg-type]
    assert old.values["drifted"] == new.values["drifted"] == 5
    assert old.status == "fail" and old.values["need"] == 2  # max(2, 10 % of 7)
    assert new.status == "warn" and new.values["need"] == 6
    assert "fail at 6" in new.detail
    # A change that also moves the independent features still fails.
    wide = with_copies(60, 1, shift=1.5, start=10_000)
    wide[["dwell", "dwell0", "dwell1", "dwell2", "dwell3"]] *= 2.0
    moved = check(ref, wide, cfg=counted, **kw).check("data_drift")  # type: ignore[arg-type]
    assert moved.status == "fail" and moved.values["drifted"] == 7
    # With groups, the count is of groups: at most the three groups here.
    grouped = counted.model_copy(update={"group_corr": 0.7})
    by_group = check(ref, wide, cfg=grouped, **kw).check("data_drift")  # type: ignore[arg-type]
    assert by_group.values["groups"] == 3 and by_group.values["need"] <= 3
    assert by_group.status == "fail"
