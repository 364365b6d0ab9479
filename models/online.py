"""river incremental abandonment model, with ADWIN on its error stream.

The model is ``signed log | StandardScaler | LogisticRegression`` over the
same columns as the LightGBM model, with the signed log of its linear base
(:func:`models.linear_base.signed_log_features`; counts and durations are
heavy-tailed, and the log gained 0.011 to 0.016 progressive AUC on the
benchmark data). Missing values are left out of the feature dict, which
river's scaler and linear model treat as absent. It learns by replaying
decision points in time order with progressive validation: each decision is
predicted first, and learnt only when its label arrives, i.e. when its session
ends.

ADWIN (:class:`ErrorDrift`) watches the error of those predictions, one value
per ended session: the mean absolute error of the session's decision points.
A session's decision points share one label, so their errors come in runs of
near-equal values; fed one by one, they look like far more evidence than they
are, and ADWIN finds changes by chance dozens of times more often than its
``delta`` promises. A change counts as a drift signal only when the error
rose. :data:`ADWIN_DELTA` and :data:`ADWIN_RISES_ONLY` are the one place these
settings live: training, the scorer's live learner and the benchmarks all
use them through :class:`RiverRiskModel`.

A single writer owns the model: the training flow when replaying, the
scorer's learner process when live. Its whole state pickles; a checkpoint
restores it exactly (same predictions, same future updates).
"""

from __future__ import annotations

import heapq
import math
import pickle
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from river import compose, drift, linear_model, optim, preprocessing

from core.files import atomic_write_bytes
from models.card import ModelCard
from models.linear_base import signed_log_features

#: ADWIN's significance on the per-session error stream (river's own default). It
#: bounds the chance of a false change at each of ADWIN's checks (one every 32
#: sessions): about 200 checks in 48 days of the generator's traffic, so at most
#: about 0.4 false changes, and none were seen on seed 7 (docs/drift.md).
ADWIN_DELTA = 0.002
#: Only a rise of the error is a drift signal: a falling error is the model learning.
ADWIN_RISES_ONLY = True


@dataclass
class ErrorDrift:
    """ADWIN on an error stream, signalling a change only when the error rises.

    ``rises_only`` False: every change ADWIN finds is a signal.

    The error falls from 0.4 to 0.2 (a change, no signal), then rises to 0.5:

    >>> d = ErrorDrift(delta=0.002)
    >>> rng = np.random.default_rng(0)
    >>> errors = np.r_[rng.random(3000) < 0.4, rng.random(3000) < 0.2, rng.random(3000) < 0.5]
    >>> signals = [i for i, e in enumerate(errors.astype(float)) if d.update(e)]
    >>> d.changes, signals, d.last_change > 0
    (2, [6079], True)
    """

    delta: float = ADWIN_DELTA
    rises_only: bool = ADWIN_RISES_ONLY
    adwin: Any = None
    #: ADWIN's changes in either direction, signalled or not.
    changes: int = 0
    #: Mean error of the part ADWIN keeps minus the part it drops, at the latest change.
    last_change: float = 0.0

    def __post_init__(self) -> None:
        if self.adwin is None:
            self.adwin = drift.ADWIN(delta=self.delta)

    def update(self, error: float) -> bool:
        """Add one error; True when ADWIN finds a change (and, with ``rises_only``, a rise)."""
        width, total = self.adwin.width, self.adwin.total
        self.adwin.update(error)
        if not self.adwin.drift_detected:
            return False
        self.changes += 1
        # ADWIN drops the older part of its window when it finds a change.
        dropped = width + 1 - self.adwin.width
        before = (total + error - self.adwin.total) / dropped if dropped > 0 else 0.0
        self.last_change = float(self.adwin.estimation - before)
        return not self.rises_only or self.last_change > 0


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
                compose.FuncTransformer(signed_log_features),
                preprocessing.StandardScaler(),
                linear_model.LogisticRegression(optimizer=optim.AdaGrad(0.05), l2=1e-4),
            )
        if self.adwin is None:
            self.adwin = ErrorDrift()

    def predict_one(self, x: dict[str, float]) -> float:
        return float(self.pipeline.predict_proba_one(x).get(True, 0.5))

    def learn_one(self, x: dict[str, float], y: int, predicted: float | None = None) -> float:
        """Learn one labelled decision point; returns its absolute error before learning.

        The error goes to the detector only through :meth:`session_ended`.
        """
        p = self.predict_one(x) if predicted is None else predicted
        self.pipeline.learn_one(x, bool(y))
        self.learned += 1
        return abs(y - p)

    def session_ended(self, mean_error: float) -> bool:
        """An ended session's mean absolute error into ADWIN; True on a drift signal."""
        if not isinstance(self.adwin, ErrorDrift):
            # A checkpoint from before ErrorDrift holds a bare ADWIN with other settings.
            self.adwin = ErrorDrift()
        signal = self.adwin.update(mean_error)
        self.drifts += signal
        return signal

    def learn_session(self, rows: Sequence[tuple[dict[str, float], float | None]], y: int) -> bool:
        """Learn the decision points (features, prediction) of one ended session, in order.

        Returns True when the session's mean error makes ADWIN signal a drift.
        """
        errors = [self.learn_one(x, y, p) for x, p in rows]
        return bool(errors) and self.session_ended(sum(errors) / len(errors))

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
    model: RiverRiskModel,
    x: np.ndarray,
    y: np.ndarray,
    decided: np.ndarray,
    labelled: np.ndarray,
    sessions: np.ndarray | None = None,
) -> ReplayResult:
    """Progressive validation with delayed labels.

    Rows must be in decision-time order. Row ``i`` is predicted at
    ``decided[i]`` and learnt once the replay clock passes ``labelled[i]``
    (its session's end). ADWIN sees each session's mean error once all its
    rows are learnt (``sessions``: one key a row; None: each row alone).
    Returns every row's prediction made before learning it, and the rows at
    which ADWIN signalled.
    """
    preds = np.empty(len(x))
    pending: list[tuple[float, int]] = []
    drift_at: list[int] = []
    feats = [_features(model.card.columns, r) for r in x]
    keys: list[Any] = list(range(len(x))) if sessions is None else np.asarray(sessions).tolist()
    left = Counter(keys)
    errors: dict[Any, list[float]] = {}

    def learn(j: int, at: int) -> None:
        key = keys[j]
        errors.setdefault(key, []).append(model.learn_one(feats[j], int(y[j]), preds[j]))
        left[key] -= 1
        if not left[key]:
            done = errors.pop(key)
            if model.session_ended(sum(done) / len(done)):
                drift_at.append(at)

    for i in range(len(x)):
        while pending and pending[0][0] <= decided[i]:
            learn(heapq.heappop(pending)[1], i)
        preds[i] = model.predict_one(feats[i])
        heapq.heappush(pending, (float(labelled[i]), i))
    while pending:
        learn(heapq.heappop(pending)[1], len(x))
    return ReplayResult(preds, drift_at)
