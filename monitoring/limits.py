"""Thresholds calibrated on the reference: per-feature distances, groups, and the drifted count.

Thin wrappers that apply :mod:`monitoring.calibration` and
:mod:`monitoring.groups` with a check's :class:`~core.settings.DriftSettings`.
"""

from __future__ import annotations

import pandas as pd

from core.settings import DriftSettings
from monitoring.calibration import count_limit, exceedances, thresholds
from monitoring.groups import correlation_groups
from monitoring.verdict import RISK


def drift_columns(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], cfg: DriftSettings
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
    cfg: DriftSettings,
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
    reference: pd.DataFrame, counted: list[str], categorical: list[str], cfg: DriftSettings
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
    cfg: DriftSettings,
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
