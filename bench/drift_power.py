"""Drift benchmark parts ``power`` and ``groups``: detection and false alarms on generated logs."""

from __future__ import annotations

import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from drift_setup import (
    DAYS,
    DRIFT_DAY,
    REF_DAYS,
    WINDOW_H,
    decision_frame,
    fit,
    side,
    true_drift,
    windows,
)


def power_part(sessions: int, seed: int, cache: Path | None, only: str = "") -> None:
    from core.settings import DriftSettings
    from monitoring import RISK
    from monitoring.windows import categorical_features, report_only_features

    t0 = time.perf_counter()
    frame, cols = decision_frame(sessions, seed, "full", cache)
    prep = time.perf_counter() - t0
    ref, wins, start = windows(frame)
    model = fit(ref, cols)
    ref = ref.assign(**{RISK: model.predict(ref[cols].to_numpy(float))})
    cats, trend = categorical_features(cols), report_only_features(cols)
    drift_at = start + pd.Timedelta(days=DRIFT_DAY)
    pre = frame[
        (frame["event_timestamp"] < drift_at)
        & (frame["event_timestamp"] >= ref["event_timestamp"].max())
    ]
    moved = true_drift(pre, frame[frame["event_timestamp"] >= drift_at], cols, cats) - set(trend)
    print(
        f"power: {sessions:,} sessions over {DAYS} days (drift from day {DRIFT_DAY}), seed {seed}, "
        f"{len(frame):,} decision points, reference days 0-{REF_DAYS - 1} ({len(ref):,} rows), "
        f"{WINDOW_H} h windows of about {int(np.median([len(p) for _, p in wins])):,} rows "
        f"(data prep {prep:.0f} s)"
    )
    print(f"  features that drift (distance >= 0.1, all rows before vs after): {sorted(moved)}")
    print(
        f"  windows: {sum(side(h) == 'before' for h, _ in wins)} before the drift day (ending by "
        f"it), {sum(side(h) == 'after' for h, _ in wins)} after it (starting on or after it), "
        f"{sum(side(h) is None for h, _ in wins)} across it"
    )
    setups: dict[str, dict[str, Any]] = {
        "baseline: fixed 0.1, every feature votes": {
            "cfg": DriftSettings(calibrate=False, group_corr=None)
        },
        "no trend declaration: calibrated, groups, trends judged like any feature": {},
        "previous default: calibrated, trends reported only, every feature votes": {
            "report_only": trend,
            "cfg": DriftSettings(group_corr=None),
        },
        "default: calibrated, trends reported only, correlated groups vote once": {
            "report_only": trend,
        },
        "groups vote once, count calibrated": {
            "report_only": trend,
            "cfg": DriftSettings(calibrate_count=True),
        },
    }
    for name, kw in setups.items():
        if only in name:
            power_setup(name, kw, ref, wins, model, cols, cats, trend, moved)


def power_setup(
    name: str,
    kw: dict[str, Any],
    ref: pd.DataFrame,
    wins: list[tuple[int, pd.DataFrame]],
    model: Any,
    cols: list[str],
    cats: list[str],
    trend: list[str],
    moved: set[str],
) -> None:
    """One setup of the power part: every window checked, its figures printed."""
    from core.settings import DriftSettings
    from monitoring import RISK, check

    cfg = kw.get("cfg", DriftSettings())
    if cfg.group_corr is not None:
        from monitoring.groups import correlation_groups

        counted = [c for c in cols if c not in trend]
        groups = correlation_groups(ref, counted, cats, min_corr=cfg.group_corr)
        shown = "; ".join(" + ".join(g) for g in groups if len(g) > 1)
        print(f"  [{name}] {len(groups)} groups on the reference; of more than one: {shown}")
    before: list[bool] = []
    after: list[bool] = []
    pred: dict[str, int] = {"before": 0, "after": 0}
    flagged: dict[tuple[str, str], int] = {}
    needs: list[int] = []
    alarms: list[str] = []
    whole: Counter[str] = Counter()  # failing checks of the verdicts before the drift day
    verdict_alarms = 0
    wrong, t1 = 0, time.perf_counter()
    for h, part in wins:
        where = side(h)
        if where is None:
            continue
        cur = part.assign(**{RISK: model.predict(part[cols].to_numpy(float))})
        v = check(ref, cur, features=cols, categorical=cats, **kw)
        drift = v.check("data_drift")
        failed = drift.status == "fail"
        (after if where == "after" else before).append(failed)
        if failed and where == "before":
            alarms.append(f"hour {h}: {drift.detail}")
        if where == "before":
            bad = [c.name for c in v.checks if c.status == "fail"]
            verdict_alarms += bool(bad)
            whole.update(bad)
        needs.append(int(drift.values.get("need", 0)))
        pred[where] += v.check("prediction_drift").status == "fail"
        names = {d.name for d in v.drifted}
        for n in names:
            flagged[where, n] = flagged.get((where, n), 0) + 1
        if where == "after":
            wrong += bool(names - moved)
    per = (time.perf_counter() - t1) / (len(before) + len(after))
    print(
        f"  [{name}] power {sum(after)}/{len(after)} = {np.mean(after):.3f} (bar 1.0); "
        f"false alarms {sum(before)}/{len(before)} = {np.mean(before):.3f} (bar <= 0.05); "
        f"prediction_drift fails {pred['after']}/{len(after)} after, "
        f"{pred['before']}/{len(before)} before; post-drift windows flagging a feature that "
        f"does not drift: {wrong}; {per:.2f} s per check; fail at "
        f"{dict(sorted(Counter(needs).items()))} (drifted features or groups: windows)"
    )
    print(
        f"    whole verdict failing before the drift day: {verdict_alarms}/{len(before)} "
        f"(bar <= 0.05), by check: {dict(whole) or 'none'}"
    )
    for alarm in alarms:
        print(f"    false alarm, {alarm}")
    for where in ("before", "after"):
        top = sorted(((n, c) for (s, n), c in flagged.items() if s == where), key=lambda x: -x[1])
        print(f"    counted features flagged {where} the drift day (windows): {top[:10]}")


#: Candidate ``group_corr`` values (None: every feature votes alone), chosen among on seed 7.
GROUP_GRID: tuple[float | None, ...] = (None, 0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3)


def groups_part(sessions: int, seed: int, cache: Path | None) -> None:
    """``group_corr`` candidates on one log: power, false alarms and the chance rate of failing.

    Per-feature verdicts do not depend on the grouping, so each window is
    checked once and every candidate is applied to its drifted features. The
    chance rate is the share of fresh reference splits at the window's size
    (100 per window, before the drift day) that would fail: a finer measure of
    false alarms than 20 windows.
    """
    from core.settings import DriftSettings
    from monitoring import RISK, check
    from monitoring.calibration import count_limit, null_scores
    from monitoring.groups import correlation_groups
    from monitoring.windows import categorical_features, report_only_features

    frame, cols = decision_frame(sessions, seed, "full", cache)
    ref, wins, _ = windows(frame)
    model = fit(ref, cols)
    ref = ref.assign(**{RISK: model.predict(ref[cols].to_numpy(float))})
    cats, trend = categorical_features(cols), report_only_features(cols)
    cfg = DriftSettings(group_corr=None)
    seen: list[tuple[str | None, set[str], list[str], dict[str, np.ndarray]]] = []
    for h, part in wins:
        cur = part.assign(**{RISK: model.predict(part[cols].to_numpy(float))})
        v = check(ref, cur, features=cols, categorical=cats, report_only=trend, cfg=cfg)
        counted = [f.name for f in v.features if f.counted]
        limits = {f.name: float(f.threshold or 0.0) for f in v.features}
        null = null_scores(
            ref, counted, cats, rows=len(cur), draws=100, seed=cfg.seed + 3, group=cfg.group
        )
        over = {c: null[c] >= limits[c] for c in counted}
        seen.append((side(h), {d.name for d in v.drifted}, counted, over))
    print(
        f"groups: seed {seed}, {len(seen)} windows "
        f"({sum(s == 'before' for s, *_ in seen)} before, "
        f"{sum(s == 'after' for s, *_ in seen)} after the drift day)"
    )
    print(
        "  group_corr  groups  power   false alarms  chance rate of failing before  "
        "count calibrated (0.12): power, false alarms"
    )
    for corr in GROUP_GRID:
        stats: dict[str, list[float]] = {k: [] for k in ("pow", "fa", "null", "cpow", "cfa")}
        shown = ""
        found: dict[tuple[str, ...], list[list[str]]] = {}
        for where, drifted, counted, over in seen:
            if tuple(counted) not in found:
                found[tuple(counted)] = (
                    [[c] for c in counted]
                    if corr is None
                    else correlation_groups(ref, counted, cats, min_corr=corr)
                )
            groups = found[tuple(counted)]
            need = max(cfg.min_drifted, int(np.ceil(cfg.drift_share * len(groups))))
            hit = sum(bool(set(g) & drifted) for g in groups)
            null_count = np.sum([np.any([over[c] for c in g], axis=0) for g in groups], axis=0)
            c_need = count_limit(null_count, 0.12, cfg.min_drifted)
            key = "pow" if where == "after" else "fa"
            stats[key].append(hit >= need)
            stats["c" + key].append(hit >= c_need)
            if where == "before":
                stats["null"].append(float(np.mean(null_count >= need)))
            shown = "; ".join(" + ".join(g) for g in groups if len(g) > 1)
        print(
            f"  {corr!s:>10}  {len(groups):>6}  {sum(stats['pow']):>2}/{len(stats['pow'])}  "
            f"{sum(stats['fa']):>5}/{len(stats['fa'])}       {np.mean(stats['null']):.4f}"
            f"                         {sum(stats['cpow'])}/{len(stats['cpow'])}, "
            f"{sum(stats['cfa'])}/{len(stats['cfa'])}"
        )
        if shown:
            print(f"              groups of more than one: {shown}")
