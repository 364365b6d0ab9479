"""The verdict types of a drift check: features, checks, the verdict, and the sampling rule.

These are the project's own types: Evidently's output is read in
:mod:`monitoring.evidently_report` and never leaves it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from core.errors import MicrotuneError

Status = Literal["pass", "warn", "fail", "no_data"]
RISK, LABEL = "risk", "label"
NUM_METHOD, CAT_METHOD = "wasserstein", "jensenshannon"
#: Checks whose failure means the model should be retrained (not data quality:
#: retraining on broken data would teach the model the breakage).
RETRAIN_CHECKS = ("data_drift", "prediction_drift", "performance", "online")


class DriftFormatError(MicrotuneError):
    """Evidently's output did not have the shape this module reads."""


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


def read_latest(drift_reports: Path) -> dict[str, Any] | None:
    """The newest verdict (``latest.json``, written beside every drift report), or None."""
    try:
        verdict = json.loads((drift_reports / "latest.json").read_text())
    except (OSError, ValueError):
        return None
    return verdict if isinstance(verdict, dict) else None


def latest_status(drift_reports: Path) -> tuple[Status, float] | None:
    """The newest verdict's status and when it was written (epoch seconds), or None."""
    verdict = read_latest(drift_reports)
    if verdict is None or "status" not in verdict:
        return None
    try:
        written = (drift_reports / "latest.json").stat().st_mtime
    except OSError:
        return None
    return verdict["status"], written
