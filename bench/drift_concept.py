"""Drift benchmark parts ``concept`` and ``adwin``: the performance check and river's ADWIN."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from drift_setup import DAYS, DRIFT_DAY, REF_DAYS, decision_frame, fit, holdout_auc, windows

STEPS = (25, 50, 75, 100, 150, 200, 300, 400, 600, 800, 1200, 1600)
#: Candidate ``auc_z`` values, chosen among on seed 7 (docs/drift.md).
AUC_Z_GRID = (0.0, 1.0, 2.0, 3.0)


def perf_setups(grid: bool) -> dict[str, tuple[Any, bool]]:
    """Performance rules compared: (config, minimum lowered to the window's rows)."""
    from core.settings import DriftSettings

    old = DriftSettings(calibrate=False)
    setups: dict[str, tuple[Any, bool]] = {
        "old rule (ECE 0.1, AUC drop 0.05), minimum lowered to the window": (old, True),
        "old rule, 200 labelled rows at least": (old, False),
    }
    default = DriftSettings()
    floor = "ECE floor over chance" if default.ece_floor_over_chance else "ECE floor 0.1"
    setups[f"bounds from chance, auc_z {default.auc_z:g}, ECE floor 0.1"] = (
        default.model_copy(update={"ece_floor_over_chance": False}),
        False,
    )
    for z in AUC_Z_GRID if grid else (default.auc_z,):
        mark = " (default)" if z == default.auc_z else ""
        setups[f"bounds from chance, auc_z {z:g}, {floor}{mark}"] = (
            default.model_copy(update={"auc_z": z}),
            False,
        )
    return setups


def first_sessions(rows: pd.DataFrame, n: int) -> pd.DataFrame | None:
    """The rows of the first ``n`` sessions of ``rows`` to end (None when fewer ended)."""
    ends = rows.drop_duplicates("session_id").sort_values("session_end")["session_id"]
    if len(ends) < n:
        return None
    return rows[rows["session_id"].isin(set(ends.iloc[:n]))]


def perf_runs(
    scored: pd.DataFrame, starts: list[Any], stop: Any, base: float, grid: bool
) -> dict[str, list[dict[int, tuple[bool, bool, bool]]]]:
    """Per setup, per start, per step: (check fails, AUC part fails, ECE part fails).

    From each start, labels arrive as sessions end: the first ``n`` sessions
    (of :data:`STEPS`) to end before ``stop`` are checked. Steps that more
    sessions than there are would need are left out.
    """
    from monitoring import performance_check

    t = scored["event_timestamp"]
    setups = perf_setups(grid)
    out: dict[str, list[dict[int, tuple[bool, bool, bool]]]] = {k: [] for k in setups}
    for lo in starts:
        rows = scored[(t >= lo) & (t < stop)]
        runs: dict[str, dict[int, tuple[bool, bool, bool]]] = {k: {} for k in setups}
        for n in STEPS:
            cur = first_sessions(rows, n)
            if cur is None:
                break
            for name, (cfg, lowered) in setups.items():
                if lowered:
                    cfg = cfg.model_copy(update={"min_labelled": min(cfg.min_labelled, len(cur))})
                perf = performance_check(cur, base, cfg)[0]
                v, ran = perf.values, perf.status != "no_data"
                auc = ran and v["roc_auc"] < base - v["max_auc_drop"]
                ece = ran and v["ece"] > v["max_ece"]
                runs[name][n] = (perf.status == "fail", auc, ece)
        for name in setups:
            out[name].append(runs[name])
    return out


def rate(runs: list[dict[int, tuple[bool, bool, bool]]], n: int) -> str:
    """``fail (AUC part, ECE part) / starts`` at step ``n``."""
    at = [r[n] for r in runs if n in r]
    fail, auc, ece = (sum(x[i] for x in at) for i in range(3))
    return f"{fail:>2} ({auc:>2}, {ece:>2}) / {len(at):<2}"


def concept_part(sessions: int, seed: int, cache: Path | None, grid: bool = False) -> None:
    from models.card import ModelCard
    from models.online import ADWIN_DELTA, ADWIN_RISES_ONLY, RiverRiskModel, replay
    from monitoring import RISK

    frame, cols = decision_frame(sessions, seed, "concept", cache)
    ref, _, start = windows(frame)
    model = fit(ref, cols)
    base = holdout_auc(ref, cols, model)
    drift_at = start + pd.Timedelta(days=DRIFT_DAY)
    scored = frame.assign(**{RISK: model.predict(frame[cols].to_numpy(float))})
    end = scored["event_timestamp"].max()
    print(
        f"concept: {sessions:,} sessions over {DAYS} days, seed {seed}, only the link drifts "
        f"from day {DRIFT_DAY}; LightGBM trained on days 0-{REF_DAYS - 1}, hold-out AUC {base:.3f}"
    )
    # No drift: starts on every other day between the reference and the drift day, each
    # running up to the drift day. After: the drift day itself, and every other day after.
    calm = [start + pd.Timedelta(days=d) for d in range(REF_DAYS, DRIFT_DAY, 2)]
    drifted = [start + pd.Timedelta(days=d) for d in range(DRIFT_DAY, DAYS - 4, 2)]
    t0 = time.perf_counter()
    no = perf_runs(scored, calm, drift_at, base, grid)
    yes = perf_runs(scored, drifted, end + pd.Timedelta(seconds=1), base, grid)
    print(
        f"  performance check, {len(calm)} no-drift starts (days {REF_DAYS}-{DRIFT_DAY - 2}) and "
        f"{len(drifted)} post-drift starts (days {DRIFT_DAY}-{DRIFT_DAY + 2 * len(drifted) - 2}), "
        f"every other day; {time.perf_counter() - t0:.0f} s"
    )
    for name in perf_setups(grid):
        at_drift = yes[name][0]
        first = {
            part: next((n for n in STEPS if at_drift.get(n, (False,) * 3)[i]), None)
            for part, i in (("check", 0), ("AUC part", 1), ("ECE part", 2))
        }
        print(f"  [{name}] from the drift day, first fails after (labelled sessions): {first}")
        print("      sessions  no drift: fail (AUC, ECE) / starts  after: fail (AUC, ECE) / starts")
        for n in STEPS:
            print(f"      {n:>8}   {rate(no[name], n)}                   {rate(yes[name], n)}")

    # ADWIN on river's error stream: the real replay with the model's own detector
    # (training and the scorer's live learner use the same class), and the old
    # setting (one error a decision point, delta 2e-4, any change) on the same
    # replay's errors: the detector does not change what river learns.
    river = RiverRiskModel(ModelCard("river", "abandonment_v1", cols, {}))
    whole = frame.sort_values("event_timestamp").reset_index(drop=True)
    rep = replay(
        river,
        whole[cols].to_numpy(float),
        whole["label"].to_numpy(int),
        whole["event_timestamp"].astype("int64").to_numpy() / 1e9,
        whole["session_end"].astype("int64").to_numpy() / 1e9,
        whole["session_id"].to_numpy(),
    )
    days_before = (drift_at - whole["event_timestamp"].min()).total_seconds() / 86400
    for name, per_session, delta, rises in (
        ("old: one error a decision point, any change", False, 2e-4, False),
        ("default: one mean error a session", True, ADWIN_DELTA, ADWIN_RISES_ONLY),
    ):
        errors, times, _ = error_stream(frame, cols, per_session)
        d, signals, before, delays = adwin_run(errors, whole, times, drift_at, delta, rises)
        print(
            f"  ADWIN [{name}, delta {delta:g}, rises only {rises}]: {d.changes} changes, "
            f"{len(signals)} signals; {before} in the {days_before:.0f} days before the drift "
            f"day; first signals after it with {delays or 'none'} labelled post-drift sessions in"
        )
    pos = int((whole["event_timestamp"] < drift_at).sum())
    print(
        f"  the replay with RiverRiskModel's own detector: {river.drifts} signals, "
        f"{sum(i < pos for i in rep.drift_at)} before the drift day"
    )


#: Candidate ADWIN settings (delta, rises only), chosen among on seed 7 (docs/drift.md).
ADWIN_GRID: tuple[tuple[float, bool], ...] = tuple(
    (delta, rises) for delta in (2e-2, 2e-3, 2e-4, 1e-5) for rises in (False, True)
)


def error_stream(
    frame: pd.DataFrame, cols: list[str], per_session: bool = True
) -> tuple[np.ndarray, pd.Series, pd.DataFrame]:
    """What ADWIN sees on river's replay: the errors in order, and when each arrived.

    The replay is the one the training flow runs (progressive validation,
    labels at session end); the detector only records. ``per_session``: one
    mean error per ended session (what the model's detector sees); False:
    one error per decision point (the old stream). Returns the errors, their
    label times, and the replayed frame in decision order.
    """
    from models.card import ModelCard
    from models.online import ErrorDrift, RiverRiskModel, replay
    from monitoring import LABEL

    class Recorder(ErrorDrift):
        def update(self, error: float) -> bool:
            seen.append(error)
            return False

    seen: list[float] = []
    whole = frame.sort_values("event_timestamp").reset_index(drop=True)
    river = RiverRiskModel(ModelCard("river", "abandonment_v1", cols, {}), adwin=Recorder())
    ends = whole["session_end"].astype("int64").to_numpy() / 1e9
    replay(
        river,
        whole[cols].to_numpy(float),
        whole[LABEL].to_numpy(int),
        whole["event_timestamp"].astype("int64").to_numpy() / 1e9,
        ends,
        whole["session_id"].to_numpy() if per_session else None,
    )
    # Labels are learnt in (label time, decision order): the heap's order. A session
    # is done at its last row.
    keys = whole["session_id"] if per_session else pd.Series(whole.index)
    done = (
        pd.DataFrame({"key": keys, "end": whole["session_end"], "row": whole.index})
        .groupby("key")
        .agg(end=("end", "first"), row=("row", "max"))
        .sort_values(["end", "row"])
    )
    assert len(done) == len(seen)
    return np.asarray(seen), done["end"].reset_index(drop=True), whole


def adwin_run(
    errors: np.ndarray,
    whole: pd.DataFrame,
    times: pd.Series,
    drift_at: Any,
    delta: float,
    rises: bool,
) -> tuple[Any, list[int], int, list[int]]:
    """ADWIN on an error stream: the detector, its signals, and :func:`adwin_delays`."""
    from models.online import ErrorDrift

    d = ErrorDrift(delta=delta, rises_only=rises)
    signals = [i for i, e in enumerate(errors) if d.update(float(e))]
    return (d, signals, *adwin_delays(whole, times, signals, drift_at))


def adwin_delays(
    whole: pd.DataFrame, times: pd.Series, signals: list[int], drift_at: Any
) -> tuple[int, list[int]]:
    """Signals before the drift day; labelled post-drift sessions at the first three after it."""
    before = sum(times.iloc[i] < drift_at for i in signals)
    post = whole[whole["event_timestamp"] >= drift_at]
    delays = []
    for i in signals:
        t = times.iloc[i]
        if t >= drift_at and len(delays) < 3:
            delays.append(int(post.loc[post["session_end"] <= t, "session_id"].nunique()))
    return before, delays


def adwin_part(sessions: int, seed: int, cache: Path | None, kind: str) -> None:
    """ADWIN settings on river's error stream: signals before the drift day, delay after it."""
    frame, cols = decision_frame(sessions, seed, kind, cache)
    print(
        f"adwin: seed {seed}, {kind} drift from day {DRIFT_DAY}; signals in the days before "
        "the drift day, and the labelled post-drift sessions at the first three signals after"
    )
    print("  stream               delta    rises only  changes  signals before  after (sessions)")
    for per_session in (False, True):
        errors, times, whole = error_stream(frame, cols, per_session)
        drift_at = whole["event_timestamp"].min().floor("D") + pd.Timedelta(days=DRIFT_DAY)
        name = "one a session" if per_session else "one a decision"
        for delta, rises in ADWIN_GRID:
            d, _, before, delays = adwin_run(errors, whole, times, drift_at, delta, rises)
            print(
                f"  {name:<20} {delta:<8.0e} {rises!s:<11} {d.changes:>7}  {before:>14}  "
                f"{delays if delays else 'none'}"
            )


#: UCI features that follow the calendar, not behaviour: scored and reported, never counted
#: (as ``hour_of_day`` on the generator data). ``special_day`` is the closeness of the
#: visit to Valentine's or Mother's Day: non-zero in February and May only.
