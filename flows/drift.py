"""Drift and data-quality checks: the one module that talks to Evidently.

:func:`check` compares a *current* window of feature rows with a *reference*
window (the champion's training window) and returns the project's own
:class:`DriftVerdict`. Evidently computes every figure; this module decides
what the figures mean, and :func:`parse_metrics` is the only place that reads
Evidently's output format.

Checks (each ``pass``, ``warn``, ``fail`` or ``no_data``):

* ``data_drift``: per feature, the normed Wasserstein distance (numerical) or
  the Jensen-Shannon distance (categorical) between the windows; a feature
  drifts at a score >= its threshold. The threshold is calibrated on the
  reference alone (:mod:`flows.drift_calibration`): the larger of
  ``threshold`` and the distance that random splits of the reference reach by
  chance at the current window's size (mean + ``calibration_z`` sd). Counted
  features that correlate on the reference (average ``|Spearman|`` >=
  ``group_corr``, :mod:`flows.drift_groups`) form one group, and a group
  drifts when any of its features does. The check fails when at least
  ``drift_share`` of the groups drift, and at least ``min_drifted`` of them
  (or all, when there are fewer). With ``calibrate_count``, it fails instead
  at the group count that at most ``count_alpha`` of ``count_draws`` fresh
  reference splits reach by chance (never below ``min_drifted``). It warns on
  any drifted feature.
  ``report_only`` features (trends such as the user's history, which grows as
  the log ages) are scored and reported, never counted.
* ``prediction_drift``: the same distance on the risk the model gives each row,
  with a threshold calibrated the same way.
* ``data_quality``: the share of missing values rises by more than
  ``max_missing_increase`` over the reference, more than ``max_out_of_range``
  of the values fall outside the reference's range, or more than
  ``max_new_category`` of a categorical feature's values were never seen in
  the reference.
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

import math
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from flows.drift_calibration import count_limit, exceedances, performance_noise, thresholds
from flows.drift_groups import correlation_groups, group_of
from flows.errors import MicrotuneError
from models.metrics import expected_calibration_error

Status = Literal["pass", "warn", "fail", "no_data"]
RISK, LABEL = "risk", "label"
NUM_METHOD, CAT_METHOD = "wasserstein", "jensenshannon"
#: Checks whose failure means the model should be retrained (not data quality:
#: retraining on broken data would teach the model the breakage).
RETRAIN_CHECKS = ("data_drift", "prediction_drift", "performance", "online")


class DriftFormatError(MicrotuneError):
    """Evidently's output did not have the shape this module reads."""


@dataclass(frozen=True)
class DriftConfig:
    """Thresholds and the sampling rule of a drift check."""

    threshold: float = 0.1
    drift_share: float = 0.1
    min_drifted: int = 2
    prediction_threshold: float = 0.1
    max_missing_increase: float = 0.1
    max_out_of_range: float = 0.05
    max_new_category: float = 0.01
    max_auc_drop: float = 0.05
    max_ece: float = 0.1
    #: With ``calibrate``: the performance bounds are raised to what chance gives at the
    #: window's size (``performance_draws`` label draws; ECE at mean + ``calibration_z``
    #: sd, the AUC drop at ``auc_z`` sd).
    performance_draws: int = 200
    auc_z: float = 3.0
    #: With ``calibrate``: ``max_ece`` is the miscalibration allowed *beyond* chance, so
    #: the ECE bound is at least ``max_ece`` plus the chance ECE's mean (False: at least
    #: ``max_ece`` itself). Measured ECE is chance noise on top of any real miscalibration.
    ece_floor_over_chance: bool = True
    min_rows: int = 200
    min_labelled: int = 200
    min_values: int = 30
    sample_rows: int | None = 20_000
    seed: int = 0
    #: Calibrate thresholds on random splits of the reference (False: ``threshold`` for all).
    calibrate: bool = True
    calibration_draws: int = 40
    calibration_z: float = 3.0
    #: Rows sharing this key (a session's decision points) stay on one side of a split.
    group: str | None = "session_id"
    #: Counted features whose average |Spearman| on the reference reaches this form one
    #: group that votes once (None: every feature votes alone). See flows/drift_groups.py.
    group_corr: float | None = 0.4
    #: True (with ``calibrate``): data_drift fails at the drifted-group count that at
    #: most ``count_alpha`` of ``count_draws`` fresh reference splits reach (never below
    #: ``min_drifted``). False (the default; see docs/drift.md): at ``drift_share`` of the
    #: groups and ``min_drifted``.
    calibrate_count: bool = False
    count_draws: int = 100
    count_alpha: float = 0.12


@dataclass(frozen=True)
class FeatureDrift:
    """One feature's distance; ``drifted`` only when it counts and reaches its threshold.

    ``group`` numbers the counted feature's group of correlated features (features of
    one group vote once); ``None`` for a feature that is not counted.
    """

    name: str
    score: float
    method: str
    drifted: bool
    threshold: float | None = None
    counted: bool = True
    group: int | None = None

    @property
    def over(self) -> bool:
        """The score reached the threshold (counted or not)."""
        return self.threshold is not None and self.score >= self.threshold


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: Status
    detail: str
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class DriftVerdict:
    """The machine-readable outcome of one drift check."""

    status: Status
    checks: list[CheckResult]
    features: list[FeatureDrift] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)
    windows: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> list[FeatureDrift]:
        return sorted((f for f in self.features if f.drifted), key=lambda f: -f.score)

    def check(self, name: str) -> CheckResult:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def retrain(self) -> bool:
        """True when a drift, prediction, performance or online check failed."""
        return any(c.status == "fail" and c.name in RETRAIN_CHECKS for c in self.checks)

    @property
    def summary(self) -> str:
        bad = [f"{c.name} {c.status}: {c.detail}" for c in self.checks if c.status == "fail"]
        if bad:
            return "; ".join(bad)
        if self.status == "no_data":
            return next(c.detail for c in self.checks if c.status == "no_data")
        warn = [f"{c.name} warn: {c.detail}" for c in self.checks if c.status == "warn"]
        return "; ".join(warn) or "every check passed"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "summary": self.summary,
            "retrain": self.retrain,
            "checks": [asdict(c) for c in self.checks],
            "drifted_features": [asdict(f) for f in self.drifted],
            "features": [asdict(f) for f in self.features],
            "rows": self.rows,
            "windows": self.windows,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DriftVerdict:
        return cls(
            status=d["status"],
            checks=[CheckResult(**c) for c in d["checks"]],
            features=[FeatureDrift(**f) for f in d.get("features", [])],
            rows=dict(d.get("rows", {})),
            windows=dict(d.get("windows", {})),
        )


def overall(checks: list[CheckResult]) -> Status:
    """Worst status of the checks that ran (``no_data`` only when none ran)."""
    ran = [c.status for c in checks if c.status != "no_data"]
    for status in ("fail", "warn", "pass"):
        if status in ran:
            return status
    return "no_data"


def sample(frame: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """At most ``n`` rows, uniformly without replacement, seeded (the sampling rule).

    >>> sample(pd.DataFrame({"a": range(10)}), 3, seed=0)["a"].tolist()
    [5, 6, 9]
    """
    if n is None or len(frame) <= n:
        return frame
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(frame), size=n, replace=False))
    return frame.iloc[idx]


# --------------------------------------------------------------------------- Evidently


@dataclass(frozen=True)
class Measured:
    """What Evidently measured, in the project's terms (see :func:`parse_metrics`)."""

    drift: dict[str, tuple[float, str]]
    drifted_count: float | None
    missing: dict[str, float]
    out_of_range: dict[str, float]
    new_category: dict[str, float]
    roc_auc: float | None = None


def _value(metric: dict[str, Any]) -> Any:
    if "value" not in metric:
        raise DriftFormatError(f"Evidently metric without a value: {metric.get('metric_name')}")
    return metric["value"]


def _share(metric: dict[str, Any]) -> float:
    v = _value(metric)
    if not isinstance(v, dict) or "share" not in v:
        raise DriftFormatError(f"expected {{count, share}} from {metric.get('metric_name')}: {v}")
    return float(v["share"])


def _number(metric: dict[str, Any]) -> float:
    v = _value(metric)
    if isinstance(v, dict) or v is None:
        raise DriftFormatError(f"expected a number from {metric.get('metric_name')}: {v}")
    return float(v)


def parse_metrics(snapshot: dict[str, Any]) -> Measured:
    """Read Evidently's ``snapshot.dict()`` into :class:`Measured`.

    Metrics are found by their declared type and column, never by position.
    Any other shape raises :class:`DriftFormatError`.

    >>> parse_metrics({"metrics": [{"config": {"type": "evidently:metric_v2:ValueDrift",
    ...     "column": "x", "method": "Wasserstein distance (normed)"}, "value": 0.3}]}).drift
    {'x': (0.3, 'Wasserstein distance (normed)')}
    """
    metrics = snapshot.get("metrics") if isinstance(snapshot, dict) else None
    if not isinstance(metrics, list):
        raise DriftFormatError("Evidently snapshot has no list of metrics")
    drift: dict[str, tuple[float, str]] = {}
    missing: dict[str, float] = {}
    out_range: dict[str, float] = {}
    new_cat: dict[str, float] = {}
    count: float | None = None
    auc: float | None = None
    for m in metrics:
        config = m.get("config") if isinstance(m, dict) else None
        if not isinstance(config, dict) or "type" not in config:
            raise DriftFormatError(f"Evidently metric without a config type: {m}")
        kind = str(config["type"]).rsplit(":", 1)[-1]
        column = config.get("column")
        if kind == "ValueDrift":
            drift[str(column)] = (_number(m), str(config.get("method", "")))
        elif kind == "DriftedColumnsCount":
            v = _value(m)
            if not isinstance(v, dict) or "count" not in v:
                raise DriftFormatError(f"expected {{count, share}} of drifted columns: {v}")
            count = float(v["count"])
        elif kind == "MissingValueCount":
            missing[str(column)] = _share(m)
        elif kind == "OutRangeValueCount":
            out_range[str(column)] = _share(m)
        elif kind == "OutListValueCount":
            new_cat[str(column)] = _share(m)
        elif kind == "RocAuc":
            auc = _number(m)
    return Measured(drift, count, missing, out_range, new_cat, auc)


def drift_columns(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], cfg: DriftConfig
) -> list[str]:
    """Features with at least ``min_values`` values in both windows (the others are skipped)."""
    return [
        c
        for c in features
        if reference[c].notna().sum() >= cfg.min_values
        and current[c].notna().sum() >= cfg.min_values
    ]


def calibrated_thresholds(
    reference: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    rows: int,
    cfg: DriftConfig,
) -> dict[str, float]:
    """Per-column thresholds for a current window of ``rows`` rows (see the module docstring).

    ``risk`` gets the same rule with ``prediction_threshold`` as its floor.
    """
    floors = {c: cfg.prediction_threshold if c == RISK else cfg.threshold for c in columns}
    if not cfg.calibrate:
        return floors
    noise = thresholds(
        reference,
        columns,
        categorical,
        rows=rows,
        floor=0.0,
        draws=cfg.calibration_draws,
        z=cfg.calibration_z,
        seed=cfg.seed + 2,
        group=cfg.group,
    )
    return {c: max(floors[c], noise[c]) for c in columns}


def feature_groups(
    reference: pd.DataFrame, counted: list[str], categorical: list[str], cfg: DriftConfig
) -> list[list[str]]:
    """The counted features in groups of correlated features (each alone without ``group_corr``)."""
    if cfg.group_corr is None:
        return [[c] for c in counted]
    return correlation_groups(reference, counted, categorical, min_corr=cfg.group_corr)


def calibrated_need(
    reference: pd.DataFrame,
    groups: list[list[str]],
    categorical: list[str],
    limits: dict[str, float],
    rows: int,
    cfg: DriftConfig,
) -> int | None:
    """How many groups must drift to fail ``data_drift`` (``None``: the fixed rule).

    Fresh splits of the reference (a seed the thresholds were not fitted on)
    give the count of groups with a feature over its threshold by chance
    alone; the check fails at the count that at most ``count_alpha`` of them
    reach.
    """
    if not (cfg.calibrate and cfg.calibrate_count) or not groups:
        return None
    counts = exceedances(
        reference,
        groups,
        categorical,
        limits,
        rows=rows,
        draws=cfg.count_draws,
        seed=cfg.seed + 3,
        group=cfg.group,
    )
    return count_limit(counts, cfg.count_alpha, cfg.min_drifted)


def _report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    limits: dict[str, float],
    cfg: DriftConfig,
) -> Any:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import (
        MissingValueCount,
        OutListValueCount,
        OutRangeValueCount,
        ValueDrift,
    )
    from evidently.presets import DataDriftPreset

    numerical = [c for c in features if c not in categorical]
    drift_cols = [c for c in features if c in limits]
    metrics: list[Any] = []
    if drift_cols:
        metrics.append(
            DataDriftPreset(
                columns=drift_cols,
                num_method=NUM_METHOD,
                cat_method=CAT_METHOD,
                threshold=cfg.threshold,
                per_column_threshold={c: limits[c] for c in drift_cols},
                drift_share=cfg.drift_share,
            )
        )
    if RISK in current and RISK in reference:
        metrics.append(
            ValueDrift(
                column=RISK,
                method=NUM_METHOD,
                threshold=limits.get(RISK, cfg.prediction_threshold),
            )
        )
    for c in features:
        metrics.append(MissingValueCount(column=c))
        ref = reference[c].dropna()
        if ref.empty:
            continue
        if c in categorical:
            metrics.append(OutListValueCount(column=c, values=sorted(ref.unique().tolist())))
        else:
            metrics.append(
                OutRangeValueCount(column=c, left=float(ref.min()), right=float(ref.max()))
            )
    cols = [*features, *([RISK] if RISK in current and RISK in reference else [])]
    definition = DataDefinition(
        numerical_columns=[*numerical, *([RISK] if RISK in cols else [])],
        categorical_columns=categorical,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return Report(metrics).run(
            Dataset.from_pandas(current[cols].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[cols].reset_index(drop=True), data_definition=definition),
        )


def _performance_report(labelled: pd.DataFrame) -> Any:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import RocAuc

    definition = DataDefinition(
        numerical_columns=[RISK],
        classification=[BinaryClassification(target=LABEL, prediction_probas=RISK)],
    )
    data = labelled[[RISK, LABEL]].reset_index(drop=True).astype({LABEL: int})
    return Report([RocAuc()]).run(Dataset.from_pandas(data, data_definition=definition), None)


# --------------------------------------------------------------------------- checks


def _data_drift(
    m: Measured,
    features: list[str],
    limits: dict[str, float],
    groups: list[list[str]],
    cfg: DriftConfig,
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


def _prediction_drift(m: Measured, limit: float) -> CheckResult:
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


def _data_quality(
    m: Measured, reference: pd.DataFrame, features: list[str], cfg: DriftConfig
) -> CheckResult:
    problems: list[str] = []
    worst = {"missing_increase": 0.0, "out_of_range": 0.0, "new_category": 0.0}
    for c in features:
        if c not in m.missing:
            raise DriftFormatError(f"Evidently returned no missing-value count for {c}")
        rise = m.missing[c] - float(reference[c].isna().mean())
        worst["missing_increase"] = max(worst["missing_increase"], rise)
        if rise > cfg.max_missing_increase:
            problems.append(f"{c}: missing {m.missing[c]:.0%} (+{rise:.0%})")
    for c, share in m.out_of_range.items():
        worst["out_of_range"] = max(worst["out_of_range"], share)
        if share > cfg.max_out_of_range:
            problems.append(f"{c}: {share:.1%} outside the reference range")
    for c, share in m.new_category.items():
        worst["new_category"] = max(worst["new_category"], share)
        if share > cfg.max_new_category:
            problems.append(f"{c}: {share:.1%} new categories")
    if problems:
        return CheckResult("data_quality", "fail", "; ".join(problems[:8]), worst)
    return CheckResult(
        "data_quality",
        "pass",
        f"worst missing rise {worst['missing_increase']:.1%}, out of range "
        f"{worst['out_of_range']:.1%}, new categories {worst['new_category']:.1%}",
        worst,
    )


def performance_limits(labelled: pd.DataFrame, cfg: DriftConfig) -> tuple[float, float]:
    """The ECE above which, and the AUC drop beyond which, ``performance`` fails.

    Without ``calibrate``: ``max_ece`` and ``max_auc_drop``. With it, each is
    raised to what chance alone gives on these predictions at this size
    (:func:`flows.drift_calibration.performance_noise`, labels drawn as if the
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
    labelled: pd.DataFrame, baseline_auc: float | None, cfg: DriftConfig
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
    snap = _performance_report(labelled)
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
    cfg: DriftConfig | None = None,
) -> DriftRun:
    """Every check on two windows of feature rows; see the module docstring.

    ``current`` may carry ``risk`` (the model's prediction) and ``label``
    (NaN while the session has not ended). ``report_only`` features are
    scored and reported but do not count towards ``data_drift``.
    """
    cfg = cfg or DriftConfig()
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
    snapshot = _report(ref, cur, features, categorical, limits, cfg)
    measured = parse_metrics(snapshot.dict())
    drift, found = _data_drift(measured, features, limits, groups, cfg, need)
    prediction = _prediction_drift(measured, limits.get(RISK, cfg.prediction_threshold))
    checks = [drift, prediction, _data_quality(measured, ref, features, cfg)]
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
