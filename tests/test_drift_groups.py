"""Correlated features vote once (monitoring/groups.py and the data_drift count)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from test_drift_calibration import COPIES, with_copies

from core.settings import DriftSettings
from monitoring import DriftVerdict, check
from monitoring.groups import correlation_groups

DWELL = ["dwell", "dwell0", "dwell1", "dwell2", "dwell3"]


def test_near_copies_group_together_and_independent_features_stand_alone() -> None:
    ref = with_copies(1000, 0)
    groups = correlation_groups(ref, COPIES, ["mobile"], min_corr=0.7)
    assert groups == [DWELL, ["speed"], ["mobile"]]
    # Nothing reaches a correlation of 1 but identical ranks: every feature alone.
    assert correlation_groups(ref, COPIES, ["mobile"], min_corr=1.0) == [[c] for c in COPIES]
    # Everything is correlated at least 0: one group.
    assert correlation_groups(ref, COPIES, ["mobile"], min_corr=0.0) == [COPIES]


def test_groups_come_from_the_reference_not_from_a_feature_list() -> None:
    ref = with_copies(1000, 0)
    rng = np.random.default_rng(3)
    # A feature added later joins the features it follows, or stands alone.
    ref["dwell_log"] = np.log(ref["dwell"]) + rng.normal(0, 0.01, len(ref))
    ref["noise"] = rng.normal(size=len(ref))
    columns = ["noise", *COPIES, "dwell_log"]
    groups = correlation_groups(ref, columns, ["mobile"], min_corr=0.7)
    assert groups == [["noise"], [*DWELL, "dwell_log"], ["speed"], ["mobile"]]


def test_an_unordered_category_stands_alone_and_a_binary_one_is_ranked() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=2000)
    frame = pd.DataFrame(
        {
            "x": x,
            "flag": (x > 0).astype(float),  # binary: follows x
            "code": np.digitize(x, [-0.5, 0.5]).astype(float),  # three codes, ordered by x
        }
    )
    groups = correlation_groups(frame, ["x", "flag", "code"], ["flag", "code"], min_corr=0.7)
    # The codes happen to follow x here, but a category's codes have no order in general.
    assert groups == [["x", "flag"], ["code"]]


def moved_dwell(seed: int, start: int) -> pd.DataFrame:
    """A small window where only the five correlated dwell columns moved (as a few very
    long sessions move every session-length count)."""
    cur = with_copies(60, seed, start=start)
    cur[DWELL] *= 2.0
    return cur


KW = {"categorical": ["mobile"], "report_only": ["history"], "features": [*COPIES, "history"]}


def test_five_correlated_features_crossing_together_are_one_vote() -> None:
    ref = with_copies(1000, 0)
    cur = moved_dwell(1, 10_000)
    alone = check(ref, cur, cfg=DriftSettings(group_corr=None), **KW).check("data_drift")  # type: ignore[arg-type]
    verdict = check(ref, cur, **KW)  # type: ignore[arg-type]
    grouped = verdict.check("data_drift")
    assert alone.status == "fail" and alone.values["drifted"] == 5
    assert grouped.status == "warn"
    assert grouped.values["drifted"] == 5 and grouped.values["drifted_groups"] == 1
    assert grouped.values["groups"] == 3 and grouped.values["need"] == 2
    assert "5 of 7 features drifted, in 1 of 3 groups" in grouped.detail
    assert "dwell + dwell0 + dwell1 + dwell2 + dwell3 (of 5)" in grouped.detail
    # Every feature keeps its own score, threshold and group.
    dwell = [f for f in verdict.features if f.name in DWELL]
    assert all(f.drifted and f.counted for f in dwell)
    assert len({f.group for f in dwell}) == 1
    history = next(f for f in verdict.features if f.name == "history")
    assert history.group is None and not history.counted


def test_a_change_of_two_independent_behaviours_still_fails() -> None:
    ref = with_copies(1000, 0)
    cur = with_copies(60, 1, shift=1.5, start=10_000)  # speed and the mobile share move
    v = check(ref, cur, **KW).check("data_drift")  # type: ignore[arg-type]
    assert v.status == "fail" and v.values["drifted_groups"] >= 2
    cur[DWELL] *= 2.0
    v = check(ref, cur, **KW).check("data_drift")  # type: ignore[arg-type]
    assert v.status == "fail" and v.values["drifted_groups"] == 3


def test_grouped_verdicts_round_trip_and_old_verdicts_still_read() -> None:
    v = check(with_copies(1000, 0), moved_dwell(1, 10_000), **KW)  # type: ignore[arg-type]
    data = json.loads(json.dumps(v.as_dict()))
    assert DriftVerdict.from_dict(data).as_dict() == v.as_dict()
    assert {f["group"] for f in data["features"] if f["name"] in DWELL} == {0}
    for f in data["features"]:
        del f["group"]
    assert all(f.group is None for f in DriftVerdict.from_dict(data).features)
