"""Monitoring: is the data the champion sees still the data it learnt from?

:func:`check` (and :func:`run_check`, which keeps the Evidently reports)
compares a current window with a reference and returns a
:class:`DriftVerdict`. See :mod:`monitoring.drift` for the checks and
``docs/drift.md`` for how their thresholds were chosen.
"""

from monitoring.checks import online_check, performance_check, performance_limits
from monitoring.drift import DriftRun, check, run_check
from monitoring.evidently_report import parse_metrics
from monitoring.verdict import (
    LABEL,
    RISK,
    CheckResult,
    DriftFormatError,
    DriftVerdict,
    FeatureDrift,
    Status,
    overall,
    sample,
)

__all__ = [
    "LABEL",
    "RISK",
    "CheckResult",
    "DriftFormatError",
    "DriftRun",
    "DriftVerdict",
    "FeatureDrift",
    "Status",
    "check",
    "online_check",
    "overall",
    "parse_metrics",
    "performance_check",
    "performance_limits",
    "run_check",
    "sample",
]
