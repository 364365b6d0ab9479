"""Classification metrics of a probability model, in numpy.

>>> import numpy as np
>>> y = np.array([0, 0, 1, 1]); p = np.array([0.1, 0.4, 0.35, 0.8])
>>> roc_auc(y, p)
0.75
>>> round(expected_calibration_error(np.array([0, 1]), np.array([0.0, 1.0])), 3)
0.0
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

EPS = 1e-7


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (0.5 when only one class is present)."""
    if len(np.unique(y)) < 2:
        return 0.5
    return float(roc_auc_score(y, p))


def log_loss(y: np.ndarray, p: np.ndarray) -> float:
    p = np.clip(p, EPS, 1 - EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    return float(np.mean((p - y) ** 2))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-width bins."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        m = idx == b
        if m.any():
            total += m.sum() * abs(y[m].mean() - p[m].mean())
    return float(total / max(len(y), 1))


def calibration_curve(
    y: np.ndarray, p: np.ndarray, bins: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Mean prediction and observed rate of each non-empty bin."""
    idx = np.minimum((p * bins).astype(int), bins - 1)
    pred, obs = [], []
    for b in range(bins):
        m = idx == b
        if m.any():
            pred.append(p[m].mean())
            obs.append(y[m].mean())
    return np.array(pred), np.array(obs)


@dataclass(frozen=True)
class Scores:
    """The metrics every model is judged on."""

    rows: int
    positive_rate: float
    roc_auc: float
    pr_auc: float
    log_loss: float
    brier: float
    ece: float

    def as_dict(self, prefix: str = "") -> dict[str, float]:
        return {f"{prefix}{k}": float(v) for k, v in asdict(self).items()}


def score(y: np.ndarray, p: np.ndarray) -> Scores:
    """All metrics of predictions ``p`` against labels ``y``."""
    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    pr = float(average_precision_score(y, p)) if len(np.unique(y)) > 1 else float(y.mean())
    return Scores(
        rows=len(y),
        positive_rate=float(y.mean()) if len(y) else 0.0,
        roc_auc=roc_auc(y, p),
        pr_auc=pr,
        log_loss=log_loss(y, p),
        brier=brier(y, p),
        ece=expected_calibration_error(y, p),
    )
