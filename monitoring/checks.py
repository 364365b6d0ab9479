"""The checks of a drift verdict: data drift, prediction drift, data quality, performance, online.

Each check reads Evidently's figures (:class:`~monitoring.evidently_report.Measured`)
or the labelled rows, and says ``pass``, ``warn``, ``fail`` or ``no_data``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from core.settings import DriftSettings
from models.metrics import expected_calibration_error
from monitoring.calibration import performance_noise
from monitoring.evidently_report import Measured, parse_metrics, performance_report
from monitoring.groups import group_of
from monitoring.verdict import LABEL, RISK, CheckResult, DriftFormatError, FeatureDrift, Status

# --------------------------------------------------------------------------- checks


def data_drift_check(
    m: Measured,
    features: list[str],
    limits: dict[str, float],
    groups: list[list[str]],
    cfg: DriftSettings,
    need: int | None = None,
) -> tuple[CheckResult, list[FeatureDrift]]:
    """Per-feature drift, and the check on the count of drifted groups.

    ``groups`` holds the counted features; every other feature is reported only.
    """
    index = group_of(groups)
    found = []
    for name, (score, method) in m.drift.items():
        if name not in features:
            continue
        limit = limits.get(name, cfg.threshold)
        g = index.get(name)
        counted = g is not None
        found.append(
            FeatureDrift(name, score, method, counted and score >= limit, limit, counted, g)
        )
    over = [f for f in found if f.over]
    if m.drifted_count is not None and int(m.drifted_count) != len(over):
        raise DriftFormatError(
            f"Evidently counted {m.drifted_count:.0f} drifted columns, the scores give {len(over)}"
        )
    tested = [f for f in found if f.counted]
    if not tested:
        return CheckResult("data_drift", "no_data", "no feature has enough values"), found
    drifted = sorted((f for f in tested if f.drifted), key=lambda f: -f.score)
    n_groups = len({f.group for f in tested})
    moved = sorted({f.group for f in drifted if f.group is not None})
    if need is None:
        need = max(cfg.min_drifted, math.ceil(cfg.drift_share * n_groups))
    need = min(n_groups, need)
    names = ", ".join(f"{f.name} {f.score:.3f} (at {f.threshold:.3f})" for f in drifted[:8])
    if n_groups == len(tested):  # every feature votes alone
        head = f"{len(drifted)} of {len(tested)} features drifted (fail at {need})"
    else:
        head = (
            f"{len(drifted)} of {len(tested)} features drifted, in {len(moved)} of {n_groups} "
            f"groups of correlated features (fail at {need} groups)"
        )
    detail = head + (f": {names}" if names else "")
    together = [g for g in moved if len(groups[g]) > 1]
    if together:
        names_over = {f.name for f in drifted}
        detail += "; groups: " + "; ".join(
            " + ".join(c for c in groups[g] if c in names_over) + f" (of {len(groups[g])})"
            for g in together
        )
    trends = [f for f in over if not f.counted]
    if trends:
        detail += "; not counted: " + ", ".join(f"{f.name} {f.score:.3f}" for f in trends)
    status: Status = "fail" if len(moved) >= need else "warn" if drifted else "pass"
    values = {
        "drifted": float(len(drifted)),
        "share": len(drifted) / len(tested),
        "drifted_groups": float(len(moved)),
        "groups": float(n_groups),
        "need": float(need),
    }
    return CheckResult("data_drift", status, detail, values), found


def prediction_drift_check(m: Measured, limit: float) -> CheckResult:
    if RISK not in m.drift:
        return CheckResult("prediction_drift", "no_data", "no risk column to compare")
    score = m.drift[RISK][0]
    status: Status = "fail" if score >= limit else "pass"
    return CheckResult(
        "prediction_drift",
        status,
        f"risk distance {score:.3f} (fail at {limit:.3f})",
        {"score": score, "threshold": limit},
    )


def data_quality_check(
    m: Measured,
    reference: pd.DataFrame,
    features: list[str],
    cfg: DriftSettings,
    trends: list[str] | None = None,
) -> CheckResult:
    """Missing values, values outside the reference's range, categories never seen.

    ``trends`` (:data:`feature_repo.features.TREND_FEATURES`) move with the
    calendar, so their values are not judged against the reference's range or
    categories; a rise in their missing values still fails, as for every feature.
    ``values`` counts the failing features per kind (``missing_failed``,
    ``range_failed``, ``category_failed``): the gate tells broken data (missing
    values, unknown categories) from drifted data (values out of range) by them.
    """
    skip = set(trends or ())
    problems: list[str] = []
    worst = {"missing_increase": 0.0, "out_of_range": 0.0, "new_category": 0.0}
    failed = {"missing_failed": 0.0, "range_failed": 0.0, "category_failed": 0.0}
    for c in features:
        if c not in m.missing:
            raise DriftFormatError(f"Evidently returned no missing-value count for {c}")
        rise = m.missing[c] - float(reference[c].isna().mean())
        worst["missing_increase"] = max(worst["missing_increase"], rise)
        if rise > cfg.max_missing_increase:
            problems.append(f"{c}: missing {m.missing[c]:.0%} (+{rise:.0%})")
            failed["missing_failed"] += 1
    for kind, shares, limit, what in (
        ("out_of_range", m.out_of_range, cfg.max_out_of_range, "outside the reference range"),
        ("new_category", m.new_category, cfg.max_new_category, "new categories"),
    ):
        for c, share in shares.items():
            if c in skip:
                continue
            worst[kind] = max(worst[kind], share)
            if share > limit:
                problems.append(f"{c}: {share:.1%} {what}")
                failed["range_failed" if kind == "out_of_range" else "category_failed"] += 1
    values = {**worst, **failed}
    if problems:
        return CheckResult("data_quality", "fail", "; ".join(problems[:8]), values)
    return CheckResult(
        "data_quality",
        "pass",
        f"worst missing rise {worst['missing_increase']:.1%}, out of range "
        f"{worst['out_of_range']:.1%}, new categories {worst['new_category']:.1%}",
        values,
    )


def performance_limits(labelled: pd.DataFrame, cfg: DriftSettings) -> tuple[float, float]:
    """The ECE above which, and the AUC drop beyond which, ``performance`` fails.

    Without ``calibrate``: ``max_ece`` and ``max_auc_drop``. With it, each is
    raised to what chance alone gives on these predictions at this size
    (:func:`monitoring.calibration.performance_noise`, labels drawn as if the
    risk were right, one draw per session): ECE ``mean + z sd``, AUC drop
    ``auc_z`` sd. A few dozen sessions give a 10-bin ECE well above 0.1 by chance.
    """
    if not cfg.calibrate:
        return cfg.max_ece, cfg.max_auc_drop
    keys = labelled[cfg.group].to_numpy() if cfg.group and cfg.group in labelled else None
    ece, auc = performance_noise(
        labelled[RISK].to_numpy(np.float64), keys, draws=cfg.performance_draws, seed=cfg.seed + 4
    )
    floor = cfg.max_ece + (float(ece.mean()) if cfg.ece_floor_over_chance else 0.0)
    ece_limit = max(floor, float(ece.mean() + cfg.calibration_z * ece.std(ddof=1)))
    spread = float(np.nanstd(auc, ddof=1)) if np.isfinite(auc).sum() > 1 else 0.0
    return ece_limit, max(cfg.max_auc_drop, cfg.auc_z * spread)


def performance_check(
    labelled: pd.DataFrame, baseline_auc: float | None, cfg: DriftSettings
) -> tuple[CheckResult, Any]:
    """The ``performance`` check on labelled rows (``risk``, ``label``, and the session key).

    Fails when ROC AUC is more than the allowed drop below ``baseline_auc``, or
    the ECE is above its bound (:func:`performance_limits`). Returns the check
    and Evidently's snapshot (None without enough labels).
    """
    n = len(labelled)
    if n < cfg.min_labelled or labelled[LABEL].nunique() < 2:
        return CheckResult(
            "performance", "no_data", f"not enough labelled rows: {n} (need {cfg.min_labelled})"
        ), None
    snap = performance_report(labelled)
    auc = parse_metrics(snap.dict()).roc_auc
    if auc is None:
        raise DriftFormatError("Evidently returned no ROC AUC")
    ece = expected_calibration_error(
        labelled[LABEL].to_numpy(np.int64), labelled[RISK].to_numpy(np.float64)
    )
    max_ece, max_drop = performance_limits(labelled, cfg)
    problems = []
    if baseline_auc is not None and auc < baseline_auc - max_drop:
        problems.append(
            f"ROC AUC {auc:.3f} vs {baseline_auc:.3f} at hold-out (fail below "
            f"{baseline_auc - max_drop:.3f})"
        )
    if ece > max_ece:
        problems.append(f"ECE {ece:.3f} (fail above {max_ece:.3f})")
    base = f" (hold-out {baseline_auc:.3f})" if baseline_auc is not None else ""
    detail = "; ".join(problems) or (
        f"ROC AUC {auc:.3f}{base}, ECE {ece:.3f} (fail above {max_ece:.3f}) on {n} rows"
    )
    values = {"roc_auc": auc, "ece": ece, "labelled": float(n), "max_ece": max_ece}
    values["max_auc_drop"] = max_drop
    if cfg.group and cfg.group in labelled:
        values["sessions"] = float(labelled[cfg.group].nunique())
    return CheckResult("performance", "fail" if problems else "pass", detail, values), snap


def online_check(signals: int | None, scored: int) -> CheckResult:
    """The scorer's ADWIN signals in the window (``None``: nothing was served).

    >>> online_check(2, 500).status, online_check(0, 500).status, online_check(None, 0).status
    ('fail', 'pass', 'no_data')
    """
    if signals is None:
        return CheckResult("online", "no_data", "nothing was served in the window")
    status: Status = "fail" if signals else "pass"
    detail = f"{signals} ADWIN drift signals in {scored} scored requests"
    return CheckResult("online", status, detail, {"signals": float(signals)})
