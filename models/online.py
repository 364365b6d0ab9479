"""river incremental abandonment model, with ADWIN on its error stream.

The model is ``StandardScaler | LogisticRegression`` over the same columns as
the LightGBM model (missing values are left out of the feature dict, which
river's scaler and linear model treat as absent). It learns by replaying
decision points in time order with progressive validation: each decision is
predicted first, and learnt only when its label arrives, i.e. when its session
ends. ADWIN watches the absolute error of those predictions and counts
detected changes.

A single writer owns the model: the training flow when replaying, the
scorer's learner process when live. Its whole state pickles; a checkpoint
restores it exactly (same predictions, same future updates).
"""

from __future__ import annotations

import heapq
import math
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from river import compose, drift, linear_model, optim, preprocessing

from flows.files import atomic_write_bytes
from models.card import ModelCard


def _features(columns: list[str], row: np.ndarray) -> dict[str, float]:
    return {c: float(v) for c, v in zip(columns, row, strict=True) if not math.isnan(v)}


@dataclass
class RiverRiskModel:
    """An incremental logistic model with its drift detector and counters."""

    card: ModelCard
    pipeline: Any = None
    adwin: Any = None
    learned: int = 0
    drifts: int = 0

    def __post_init__(self) -> None:
        if self.pipeline is None:
            self.pipeline = compose.Pipeline(
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.05), l2=1e-4),
            )
        if self.adwin is None:
            self.adwin = drift.ADWIN(delta=0.0002)

    def predict_one(self, x: dict[str, float]) -> float:
        return float(self.pipeline.predict_proba_one(x).get(True, 0.5))

    def learn_one(self, x: dict[str, float], y: int, predicted: float | None = None) -> bool:
        """Learn one labelled decision; returns True when ADWIN flags a change."""
        p = self.predict_one(x) if predicted is None else predicted
        self.adwin.update(abs(y - p))
        self.pipeline.learn_one(x, bool(y))
        self.learned += 1
        if self.adwin.drift_detected:
            self.drifts += 1
            return True
        return False

    def predict(self, x: np.ndarray) -> np.ndarray:
        return np.array([self.predict_one(_features(self.card.columns, r)) for r in x])

    def checkpoint(self, path: Path) -> Path:
        """Write the whole state atomically."""
        return atomic_write_bytes(path, pickle.dumps(self, protocol=pickle.HIGHEST_PROTOCOL))

    @staticmethod
    def restore(path: Path) -> RiverRiskModel:
        model = pickle.loads(path.read_bytes())
        if not isinstance(model, RiverRiskModel):
            raise TypeError(f"{path} does not hold a river checkpoint")
        return model


@dataclass
class ReplayResult:
    predictions: np.ndarray
    drift_at: list[int]


def replay(
    model: RiverRiskModel, x: np.ndarray, y: np.ndarray, decided: np.ndarray, labelled: np.ndarray
) -> ReplayResult:
    """Progressive validation with delayed labels.

    Rows must be in decision-time order. Row ``i`` is predicted at
    ``decided[i]`` and learnt once the replay clock passes ``labelled[i]``
    (its session's end). Returns every row's prediction made before learning it.
    """
    preds = np.empty(len(x))
    pending: list[tuple[float, int]] = []
    drift_at: list[int] = []
    feats = [_features(model.card.columns, r) for r in x]
    for i in range(len(x)):
        while pending and pending[0][0] <= decided[i]:
            _, j = heapq.heappop(pending)
            if model.learn_one(feats[j], int(y[j]), preds[j]):
                drift_at.append(i)
        preds[i] = model.predict_one(feats[i])
        heapq.heappush(pending, (float(labelled[i]), i))
    while pending:
        _, j = heapq.heappop(pending)
        if model.learn_one(feats[j], int(y[j]), preds[j]):
            drift_at.append(len(x))
    return ReplayResult(preds, drift_at)
