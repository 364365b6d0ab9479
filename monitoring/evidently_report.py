"""The one module that talks to Evidently: reports built, their output read.

:func:`parse_metrics` is the only place that reads Evidently's output format;
everything past it is microtune's own :class:`Measured` figures.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import pandas as pd

from core.settings import DriftSettings
from monitoring.verdict import CAT_METHOD, LABEL, NUM_METHOD, RISK, DriftFormatError

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


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    categorical: list[str],
    limits: dict[str, float],
    cfg: DriftSettings,
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


def performance_report(labelled: pd.DataFrame) -> Any:
    from evidently import BinaryClassification, DataDefinition, Dataset, Report
    from evidently.metrics import RocAuc

    definition = DataDefinition(
        numerical_columns=[RISK],
        classification=[BinaryClassification(target=LABEL, prediction_probas=RISK)],
    )
    data = labelled[[RISK, LABEL]].reset_index(drop=True).astype({LABEL: int})
    return Report([RocAuc()]).run(Dataset.from_pandas(data, data_definition=definition), None)
