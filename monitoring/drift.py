"""Drift and data-quality checks: a current window against a reference, to a verdict.

:func:`check` compares a *current* window of feature rows with a *reference*
window (the champion's training window) and returns the project's own
:class:`~monitoring.verdict.DriftVerdict`. Evidently computes every figure
(:mod:`monitoring.evidently_report` is the only module that reads its output);
:mod:`monitoring.checks` decides what the figures mean.

Checks (each ``pass``, ``warn``, ``fail`` or ``no_data``):

* ``data_drift``: per feature, the normed Wasserstein distance (numerical) or
  the Jensen-Shannon distance (categorical) between the windows; a feature
  drifts at a score >= its threshold. The threshold is calibrated on the
  reference alone (:mod:`monitoring.calibration`): the larger of
  ``threshold`` and the distance that random splits of the reference reach by
  chance at the current window's size (mean + ``calibration_z`` sd). Counted
  features that correlate on the reference (average ``|Spearman|`` >=
  ``group_corr``, :mod:`monitoring.groups`) form one group, and a group
  drifts when any of its features does. The check fails when at least
  ``drift_share`` of the groups drift, and at least ``min_drifted`` of them
  (or all, when there are fewer). With ``calibrate_count``, it fails instead
  at the group count that at most ``count_alpha`` of ``count_draws`` fresh
  reference splits reach by chance (never below ``min_drifted``). It warns on
  any drifted feature.
  ``report_only`` features (the trends of
  :data:`feature_repo.features.TREND_FEATURES`, such as the user's history,
  which grows as the log ages) are scored and reported, never counted.
* ``prediction_drift``: the same distance on the risk the model gives each row,
  with a threshold calibrated the same way.
* ``data_quality``: the share of missing values rises by more than
  ``max_missing_increase`` over the reference, more than ``max_out_of_range``
  of the values fall outside the reference's range, or more than
  ``max_new_category`` of a categorical feature's values were never seen in
  the reference. ``report_only`` (trend) features are judged on missing
  values only: their range moves with the calendar by design.
* ``performance``: on the labelled part of the current window, ROC AUC lost
  more than ``max_auc_drop`` against the model's hold-out AUC, or the
  expected calibration error exceeds ``max_ece``; with ``calibrate``, each
  bound is raised to what chance gives at the window's size
  (:func:`performance_limits`).
* ``online``: the scorer's ADWIN raised a drift signal in the window (one
  mean error per ended session, rises only: :class:`models.online.ErrorDrift`).

Distances, not p-values: a p-value test flags ever smaller differences as the
sample grows, so its verdict would depend on the sampling rule. A distance
estimates a fixed property of the two distributions, so a 20,000-row sample
and the full window agree (see ``docs/drift.md`` for the figures).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> ref = pd.DataFrame({"x": rng.normal(size=500), "risk": rng.random(500)})
>>> cur = pd.DataFrame({"x": rng.normal(2.0, size=500), "risk": rng.random(500)})
>>> verdict = check(ref, cur, features=["x"])
>>> verdict.status, verdict.check("data_drift").status, [d.name for d in verdict.drifted]
('fail', 'fail', ['x'])
>>> check(ref, cur.head(3), features=["x"]).status
'no_data'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from core.settings import DriftSettings
from monitoring.checks import (
    data_drift_check,
    data_quality_check,
    performance_check,
    prediction_drift_check,
)
from monitoring.evidently_report import drift_report, parse_metrics
from monitoring.limits import calibrated_need, calibrated_thresholds, drift_columns, feature_groups
from monitoring.verdict import LABEL, RISK, CheckResult, DriftVerdict, overall, sample


@dataclass
class DriftRun:
    """A verdict and the Evidently snapshots behind it (for the HTML reports)."""

    verdict: DriftVerdict
    snapshots: dict[str, Any] = field(default_factory=dict)

    def save_html(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, snap in self.snapshots.items():
            path = folder / f"{name}.html"
            snap.save_html(str(path))
            paths.append(path)
        return paths


def run_check(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    features: list[str],
    categorical: list[str] | None = None,
    report_only: list[str] | None = None,
    baseline_auc: float | None = None,
    online: CheckResult | None = None,
    cfg: DriftSettings | None = None,
) -> DriftRun:
    """Every check on two windows of feature rows; see the module docstring.

    ``current`` may carry ``risk`` (the model's prediction) and ``label``
    (NaN while the session has not ended). ``report_only`` features are
    scored and reported but do not count towards ``data_drift``, and
    ``data_quality`` judges only their missing values.
    """
    cfg = cfg or DriftSettings()
    categorical = [c for c in (categorical or []) if c in features]
    report_only = [c for c in (report_only or []) if c in features]
    rows = {"reference": len(reference), "current": len(current)}
    extra = [online] if online is not None else []
    if len(reference) < cfg.min_rows or len(current) < cfg.min_rows:
        reason = (
            f"not enough data: {len(current)} current and {len(reference)} reference rows "
            f"(need {cfg.min_rows} each)"
        )
        names = ("data_drift", "prediction_drift", "data_quality", "performance")
        checks = [CheckResult(n, "no_data", reason) for n in names] + extra
        return DriftRun(DriftVerdict(overall(checks), checks, rows=rows))
    ref = sample(reference, cfg.sample_rows, cfg.seed)
    cur = sample(current, cfg.sample_rows, cfg.seed + 1)
    rows.update(sampled_reference=len(ref), sampled_current=len(cur))
    columns = drift_columns(ref, cur, features, cfg)
    if RISK in cur and RISK in ref:
        columns.append(RISK)
    limits = calibrated_thresholds(ref, columns, categorical, len(cur), cfg)
    counted = [c for c in columns if c != RISK and c not in report_only]
    groups = feature_groups(ref, counted, categorical, cfg)
    need = calibrated_need(ref, groups, categorical, limits, len(cur), cfg)
    snapshot = drift_report(ref, cur, features, categorical, limits, cfg)
    measured = parse_metrics(snapshot.dict())
    drift, found = data_drift_check(measured, features, limits, groups, cfg, need)
    prediction = prediction_drift_check(measured, limits.get(RISK, cfg.prediction_threshold))
    checks = [drift, prediction, data_quality_check(measured, ref, features, cfg, report_only)]
    snapshots = {"drift": snapshot}
    if LABEL in cur:
        labelled = cur[cur[LABEL].notna() & cur[RISK].notna()] if RISK in cur else cur.iloc[:0]
        perf, perf_snap = performance_check(labelled, baseline_auc, cfg)
        checks.append(perf)
        if perf_snap is not None:
            snapshots["performance"] = perf_snap
    else:
        checks.append(CheckResult("performance", "no_data", "no labels yet"))
    checks += extra
    return DriftRun(DriftVerdict(overall(checks), checks, found, rows), snapshots)


def check(
    reference: pd.DataFrame, current: pd.DataFrame, *, features: list[str], **kw: Any
) -> DriftVerdict:
    """:func:`run_check` without the snapshots."""
    return run_check(reference, current, features=features, **kw).verdict
