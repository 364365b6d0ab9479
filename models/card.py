"""What a registered model carries about itself, and the protocol scorers use.

A model is self-describing: its card names the feature service it reads, the
exact column order of its input, the training window, its metrics and its
decision thresholds. Loading a model needs nothing else.

Scoring is numpy and dicts only (no pandas on the request path).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np


@dataclass
class ModelCard:
    """Metadata stored with every registered model version."""

    kind: str
    feature_service: str
    columns: list[str]
    training_window: dict[str, Any]
    metrics: dict[str, float] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelCard:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def vector(self, features: dict[str, Any]) -> np.ndarray:
        """Features by name to one input row in the model's column order (NaN if missing)."""
        return np.array([_num(features.get(c)) for c in self.columns], dtype=np.float64).reshape(
            1, -1
        )


def _num(v: Any) -> float:
    if v is None:
        return float("nan")
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


class RiskModel(Protocol):
    """What the scorer and the gate need from any abandonment model."""

    card: ModelCard

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Calibrated abandonment probability of each row of ``x``."""
        ...
