"""Experiment analysis: arms, lifts against control, guard rails and a verdict.

The input is the joined table (:func:`experiments.join.join_outcomes`, one row
per assigned session) and the experiment's configured weights. The unit is the
session, assigned at its first decision; the metric is conversion (a purchase
after the decision). ``exposed_only`` restricts every arm to sessions whose
front end confirmed the adjustment (control has none to confirm and is kept
whole), which is biased where exposure depends on the visitor; the default is
intent to treat.

The verdict, per treatment arm, uses the always-valid interval (safe to read
every day): **ship** when it is above zero and the revenue per session is not
significantly worse; **stop** when it is below zero (an alert); else **keep
running**. A sample-ratio mismatch (chi-square p < 0.001) blocks every verdict.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from experiments.stats import (
    SRM_ALPHA,
    chance_to_beat,
    cuped,
    proportion_lift,
    sequential_halfwidth,
    srm_p_value,
    welch,
)

CONTROL = "control"
#: An arm (and control) needs this many sessions before it can ship or stop.
MIN_ARM_SESSIONS = 100
#: The sample size the always-valid interval is tightest at, unless told.
PLANNED_SESSIONS = 10_000


@dataclass
class Arm:
    name: str
    sessions: int
    conversions: int
    rate: float
    revenue_per_session: float
    margin_given: float
    lift: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    relative_lift: float | None = None
    rel_ci_low: float | None = None
    rel_ci_high: float | None = None
    p_value: float | None = None
    chance_to_beat_control: float | None = None
    expected_loss: float | None = None
    cohens_h: float | None = None
    seq_ci_low: float | None = None
    seq_ci_high: float | None = None
    cuped_lift: float | None = None
    cuped_ci_low: float | None = None
    cuped_ci_high: float | None = None
    cuped_width_ratio: float | None = None
    revenue_diff: float | None = None
    revenue_p_value: float | None = None
    verdict: str | None = None
    true_lift: float | None = None


@dataclass
class Analysis:
    experiment: str
    srm_p_value: float
    verdict: str
    reason: str
    arms: list[Arm]
    exposure: str
    bands: list[dict[str, Any]] = field(default_factory=list)
    devices: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[str] = field(default_factory=list)
    segments: list[dict[str, Any]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["arms"] = [{k: _clean(v) for k, v in a.items()} for a in out["arms"]]
        return {k: _clean(v) for k, v in out.items()}


def _clean(v: Any) -> Any:
    return None if isinstance(v, float) and not math.isfinite(v) else v


def analyze(
    joined: pa.Table,
    weights: dict[str, float],
    *,
    experiment: str,
    truth: pa.Table | None = None,
    exposed_only: bool = False,
    planned_sessions: int = PLANNED_SESSIONS,
) -> Analysis:
    """Analyse one experiment's joined table against its configured ``weights``."""
    t = joined.filter(pc.equal(joined.column("experiment"), experiment))
    names = list(weights)
    cols, device_labels, segment_labels = _columns(t, truth, names)
    counts = np.bincount(cols["variant"][cols["variant"] >= 0], minlength=len(names))
    srm = srm_p_value([int(c) for c in counts], list(weights.values()))
    if exposed_only:
        keep = (cols["variant"] == _control(names)) | cols["exposed"]
        cols = {k: v[keep] for k, v in cols.items()}
    kept = np.bincount(cols["variant"][cols["variant"] >= 0], minlength=len(names))
    present = {names[i] for i in np.flatnonzero(kept)}
    arms = [_arm(name, names, cols, planned_sessions) for name in names if name in present]
    verdict, reason, alerts = _verdict(arms, srm)
    band_codes, band_labels = _risk_bands(cols["risk"])
    return Analysis(
        experiment=experiment,
        srm_p_value=srm,
        verdict=verdict,
        reason=reason,
        arms=arms,
        exposure="exposed only" if exposed_only else "intent to treat",
        bands=breakdown(cols, names, band_codes, band_labels),
        devices=breakdown(cols, names, cols["device"], device_labels),
        alerts=alerts,
        segments=breakdown(cols, names, cols["segment"], segment_labels),
    )


def _control(names: list[str]) -> int:
    """The control arm's code (-2, which no row has, without one)."""
    return names.index(CONTROL) if CONTROL in names else -2


def _columns(
    t: pa.Table, truth: pa.Table | None, names: list[str]
) -> tuple[dict[str, np.ndarray], list[str], list[str]]:
    """Numeric columns only, strings as codes (a 10M-row analysis stays in numpy), and
    the labels the ``device`` and ``segment`` codes index."""

    def col(name: str, fill: Any) -> np.ndarray:
        return pc.fill_null(t.column(name), fill).to_numpy(zero_copy_only=False)

    variant = pc.index_in(t.column("variant"), value_set=pa.array(names, pa.string()))
    device = pc.dictionary_encode(pc.fill_null(t.column("device"), "unknown")).combine_chunks()
    cols = {
        "variant": pc.fill_null(variant, -1).to_numpy(zero_copy_only=False).astype(np.int64),
        "purchased": col("purchased", False).astype(bool),
        "revenue": col("revenue", 0.0).astype(float),
        "exposed": col("exposed", False).astype(bool),
        "risk": col("risk", math.nan).astype(float),
        "device": device.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        if t.num_rows
        else np.zeros(0, dtype=np.int64),
        "discount": col("discount_percent", 0.0).astype(float),
        "day": pc.floor_temporal(t.column("decided_at"), unit="day")
        .cast(pa.int64())
        .to_numpy(zero_copy_only=False),
    }
    cols["true_effect"] = np.full(t.num_rows, math.nan)
    if truth is not None:
        idx = pc.index_in(t.column("session_id"), value_set=truth.column("session_id"))
        found = pc.is_valid(idx).to_numpy(zero_copy_only=False)
        rows = pc.fill_null(idx, 0).to_numpy(zero_copy_only=False)
        effect = pc.subtract(truth.column("p_purchase"), truth.column("p_purchase_none"))
        cols["true_effect"] = np.where(found, effect.to_numpy()[rows], math.nan)
    labels = [str(d) for d in device.dictionary.to_pylist()] if t.num_rows else []
    cols["segment"], segments = _codes(t, "segment")
    return cols, labels, segments


def _codes(t: pa.Table, name: str) -> tuple[np.ndarray, list[str]]:
    """A column as codes into its sorted distinct values (null: ``none``), and the labels."""
    if name not in t.column_names or t.num_rows == 0:
        return np.zeros(t.num_rows, dtype=np.int64), ["none"] if t.num_rows else []
    values = pc.fill_null(pc.cast(t.column(name), pa.string()), "none")
    labels = sorted(set(values.to_pylist()), key=lambda v: (v == "none", len(v), v))
    codes = pc.index_in(values, value_set=pa.array(labels, pa.string()))
    return codes.to_numpy(zero_copy_only=False).astype(np.int64), labels


def _arm(name: str, names: list[str], cols: dict[str, np.ndarray], planned: int) -> Arm:
    m = cols["variant"] == names.index(name)
    n, x = int(m.sum()), int(cols["purchased"][m].sum())
    revenue = cols["revenue"][m]
    pct = cols["discount"][m]
    bought = cols["purchased"][m] & (pct > 0)
    margin = float(np.sum(revenue[bought] * pct[bought] / (100.0 - pct[bought])))
    arm = Arm(name, n, x, x / n if n else math.nan, float(revenue.mean()) if n else 0.0, margin)
    true = cols["true_effect"][m]
    if not np.all(np.isnan(true)):
        arm.true_lift = float(np.nanmean(true)) if name != CONTROL else 0.0
    c = cols["variant"] == _control(names)
    if name == CONTROL or not c.any() or n == 0:
        return arm
    n_c, x_c = int(c.sum()), int(cols["purchased"][c].sum())
    d = proportion_lift(x, n, x_c, n_c)
    arm.lift, arm.ci_low, arm.ci_high, arm.p_value = d.lift, d.ci_low, d.ci_high, d.p_value
    arm.relative_lift, arm.rel_ci_low, arm.rel_ci_high = d.relative, d.rel_low, d.rel_high
    arm.cohens_h = d.cohens_h
    arm.chance_to_beat_control, arm.expected_loss = chance_to_beat(x, n, x_c, n_c)
    half = sequential_halfwidth(d.se, n + n_c, planned)
    arm.seq_ci_low, arm.seq_ci_high = d.lift - half, d.lift + half
    both = m | c
    covariate = cols["risk"][both]
    finite = np.isfinite(covariate)
    if finite.any():  # a session without a risk (degraded) is not adjusted
        covariate = np.where(finite, covariate, covariate[finite].mean())
    if finite.any() and np.std(covariate) > 0:
        a = cuped(cols["purchased"][both].astype(float), m[both], covariate)
        arm.cuped_lift = a.cuped_effect
        arm.cuped_ci_low = a.cuped_effect - 1.96 * a.cuped_se
        arm.cuped_ci_high = a.cuped_effect + 1.96 * a.cuped_se
        arm.cuped_width_ratio = a.width_ratio
    arm.revenue_diff, arm.revenue_p_value = welch(revenue, cols["revenue"][c])
    return arm


def _verdict(arms: list[Arm], srm: float) -> tuple[str, str, list[str]]:
    if srm < SRM_ALPHA:
        return (
            "invalid",
            f"sample-ratio mismatch (chi-square p = {srm:.2g} < {SRM_ALPHA}): the arms' sizes "
            "do not match their weights; find the assignment or logging fault before reading it",
            [f"sample-ratio mismatch, p = {srm:.2g}"],
        )
    alerts, ship = [], []
    control = next((a for a in arms if a.name == CONTROL), None)
    for a in arms:
        if a.seq_ci_low is None or a.seq_ci_high is None:
            continue
        if control is None or min(a.sessions, control.sessions) < MIN_ARM_SESSIONS:
            a.verdict = "keep running"  # intervals of a handful of sessions mean little
            continue
        revenue_worse = (a.revenue_diff or 0.0) < 0 and (a.revenue_p_value or 1.0) < 0.05
        if a.seq_ci_high < 0:
            a.verdict = "stop"
            alerts.append(f"{a.name} converts significantly worse than control ({a.lift:+.4f})")
        elif a.seq_ci_low > 0 and not revenue_worse:
            a.verdict = "ship"
            ship.append(a)
        else:
            a.verdict = "keep running"
    if ship:
        best = max(ship, key=lambda a: a.lift or 0.0)
        return "ship", f"{best.name} beats control (always-valid interval above 0)", alerts
    treated = [a for a in arms if a.verdict is not None]
    if treated and all(a.verdict == "stop" for a in treated):
        return "stop", "every arm converts significantly worse than control", alerts
    return "keep running", "no arm is significantly better than control yet", alerts


def _risk_bands(risk: np.ndarray, bands: int = 10) -> tuple[np.ndarray, list[str]]:
    """Each row's risk decile as a code (the last label, ``unknown``, for no risk)."""
    finite = np.isfinite(risk)
    if not finite.any():
        return np.zeros(len(risk), dtype=np.int64), ["unknown"]
    edges = np.unique(np.quantile(risk[finite], np.linspace(0, 1, bands + 1)[1:-1]))
    labels = [f"decile {b + 1}" for b in range(len(edges) + 1)]
    codes = np.where(finite, np.searchsorted(edges, risk, side="right"), len(labels))
    return codes, [*labels, "unknown"]


def _grid(
    cols: dict[str, np.ndarray],
    groups: np.ndarray,
    shape: tuple[int, int],
    values: np.ndarray | None = None,
) -> np.ndarray:
    """Sums of ``values`` (or counts of rows) per (group, arm), rows of known arms only."""
    ok = cols["variant"] >= 0
    key = groups[ok] * shape[1] + cols["variant"][ok]
    w = None if values is None else values[ok].astype(float)
    return np.bincount(key, weights=w, minlength=shape[0] * shape[1]).reshape(shape)


def breakdown(
    cols: dict[str, np.ndarray], names: list[str], groups: np.ndarray, labels: list[str]
) -> list[dict[str, Any]]:
    """Per group (a risk decile, a device), each treatment's lift against control."""
    shape = (len(labels), len(names))
    n = _grid(cols, groups, shape)
    x = _grid(cols, groups, shape, cols["purchased"])
    known = np.isfinite(cols["true_effect"])
    t_sum = _grid(cols, groups, shape, np.where(known, cols["true_effect"], 0.0))
    t_n = _grid(cols, groups, shape, known)
    c = _control(names)
    out = []
    for gi, label in enumerate(labels):
        for ai, arm in enumerate(names):
            if ai == c or c < 0 or n[gi, ai] < 2 or n[gi, c] < 2:
                continue
            d = proportion_lift(int(x[gi, ai]), int(n[gi, ai]), int(x[gi, c]), int(n[gi, c]))
            out.append(
                {
                    "group": label,
                    "arm": arm,
                    "sessions": int(n[gi, ai]),
                    "control_sessions": int(n[gi, c]),
                    "lift": d.lift,
                    "ci_low": d.ci_low,
                    "ci_high": d.ci_high,
                    "true_lift": float(t_sum[gi, ai] / t_n[gi, ai]) if t_n[gi, ai] else None,
                }
            )
    return out


def cumulative(table: pa.Table, weights: dict[str, float], planned: int) -> list[dict]:
    """Each day's cumulative lift per arm, with its always-valid interval."""
    names = list(weights)
    cols, _, _ = _columns(table, None, names)
    c = _control(names)
    days = np.unique(cols["day"])
    d_code = np.searchsorted(days, cols["day"])
    shape = (len(days), len(names))
    n = _grid(cols, d_code, shape).cumsum(axis=0)
    x = _grid(cols, d_code, shape, cols["purchased"]).cumsum(axis=0)
    out = []
    for di, day in enumerate(days):
        for ai, arm in enumerate(names):
            if ai == c or c < 0 or n[di, ai] < 2 or n[di, c] < 2:
                continue
            d = proportion_lift(int(x[di, ai]), int(n[di, ai]), int(x[di, c]), int(n[di, c]))
            half = sequential_halfwidth(d.se, int(n[di, ai] + n[di, c]), planned)
            out.append({"day": int(day), "arm": arm, "lift": d.lift, "half": half})
    return out
