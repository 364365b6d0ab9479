"""Streaming centroids: river's online ``KMeans`` following the segments as they move.

The scorer's single learning process (``serving/runtime.py``) feeds it each
ended session's behaviour vector, in the champion segmenter's whitened PCA
space. Its centres start at the batch centroids, and each vector moves its
nearest centre by :data:`HALFLIFE` of the way. They assign nothing (the
registered segmenter does); they feed the drift check, which compares them
with the batch centroids (:func:`centroid_shift`).

Why river's ``KMeans`` and not ``STREAMKMeans``: ``STREAMKMeans`` clusters each
chunk with a fresh ``KMeans`` that starts from random centres, and those
centres flow into its own. On generated sessions its centres moved as far on
an unchanged world as on a drifted one (0.95 and 0.91 whitened units after
5,400 sessions), so the shift told nothing. Seeded with the batch centroids,
``KMeans`` moved 0.23 on the unchanged world and 0.78 on the drifted one
(docs/segments.md).

>>> import numpy as np
>>> s = StreamingCentroids.start("1", np.array([[0.0, 0.0], [4.0, 4.0]]), seed=0)
>>> rng = np.random.default_rng(0)
>>> for _ in range(400):
...     s.learn(rng.normal([4.0, 0.0], 0.3))  # all traffic now around (4, 0)
>>> round(centroid_shift(np.array([[0.0, 0.0], [4.0, 4.0]]), s.centers())["max"], 1) > 1
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: How far a centre moves towards each vector it is nearest to.
HALFLIFE = 0.02


@dataclass
class StreamingCentroids:
    """river's online KMeans, seeded with one segmenter version's centroids."""

    version: str
    model: Any
    learned: int = 0

    @classmethod
    def start(cls, version: str, centroids: np.ndarray, *, seed: int = 0) -> StreamingCentroids:
        from river import cluster

        model = cluster.KMeans(n_clusters=len(centroids), halflife=HALFLIFE, sigma=1.0, seed=seed)
        # Start from the batch centroids, not from river's random centres.
        for i, c in enumerate(centroids):
            model.centers[i].update({j: float(v) for j, v in enumerate(c)})
        return cls(version, model)

    def learn(self, point: Any) -> None:
        self.model.learn_one({j: float(v) for j, v in enumerate(point)})
        self.learned += 1

    def centers(self) -> np.ndarray:
        c = self.model.centers
        return np.array([[c[i][j] for j in sorted(c[i])] for i in sorted(c)])

    def save(self, path: Path) -> Path:
        """The centres as JSON (what the drift check reads), and the model beside them."""
        import pickle

        from core.files import atomic_write_bytes

        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path.with_suffix(".pkl"), pickle.dumps(self))
        record = {
            "version": self.version,
            "learned": self.learned,
            "centers": self.centers().tolist(),
        }
        atomic_write_bytes(path, json.dumps(record).encode())
        return path

    @staticmethod
    def load(path: Path) -> StreamingCentroids:
        import pickle

        loaded: StreamingCentroids = pickle.loads(path.with_suffix(".pkl").read_bytes())
        return loaded


def read_centers(path: Path) -> dict[str, Any] | None:
    """The saved centres (version, learned, centers), or None when there are none."""
    try:
        return dict(json.loads(path.read_text()))
    except (OSError, ValueError):
        return None


def centroid_shift(batch: np.ndarray, stream: np.ndarray) -> dict[str, float]:
    """How far the streaming centres moved from the batch centroids: each batch centroid
    is matched to one centre (Hungarian method, scipy), and the distances of the pairs
    (whitened PCA units) are summarized."""
    from scipy.optimize import linear_sum_assignment

    cost = np.sqrt(((batch[:, None, :] - stream[None, :, :]) ** 2).sum(axis=2))
    rows, cols = linear_sum_assignment(cost)
    d = cost[rows, cols]
    return {"max": float(d.max()), "mean": float(d.mean())}
