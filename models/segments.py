"""Micro-segments: behaviour clusters of sessions, with ids that stay put.

The pure core of the segment work (issue: micro-segments). A
:class:`Segmenter` is fitted on behaviour vectors (one row a session):

1. each feature is standardized (scikit-learn's ``StandardScaler``);
2. the vectors are reduced with ``PCA`` to the components that keep
   ``variance`` of the variance;
3. ``KMeans`` clusters them, with ``k`` chosen by the silhouette (on a seeded
   sample of at most 5,000 rows) among ``ks``.

Everything the live assignment needs is plain arrays (means, scales,
components, centroids), so a session is assigned with a few numpy
operations and no scikit-learn on the request path (:meth:`Segmenter.assign_one`).

:func:`stable_ids` keeps a segment's id across re-clustering: the new
centroids are matched to the old ones with the Hungarian method
(``scipy.optimize.linear_sum_assignment``) on their distances, and take
their ids.

>>> rng = np.random.default_rng(0)
>>> x = np.vstack([rng.normal(m, 0.3, size=(200, 3)) for m in (0.0, 3.0, 6.0)])
>>> seg = fit_segmenter(x, ["a", "b", "c"], seed=0)
>>> seg.k, sorted(np.bincount(seg.assign(x)).tolist())
(3, [200, 200, 200])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Largest sample the silhouette is computed on (it is quadratic in the rows).
SILHOUETTE_SAMPLE = 5_000


@dataclass
class Segmenter:
    """A fitted segmentation: scaler, PCA and centroids as arrays, with its figures."""

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (n_components, n_features)
    pca_mean: np.ndarray
    centroids: np.ndarray  # (k, n_components), in PCA space
    silhouette: float
    silhouettes: dict[int, float] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # the stable id of each centroid

    @property
    def k(self) -> int:
        return len(self.centroids)

    def project(self, x: np.ndarray) -> np.ndarray:
        """Rows in the PCA space the centroids live in (NaN counted as the mean)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        z = np.where(np.isnan(z), 0.0, z)
        return np.asarray((z - self.pca_mean) @ self.components.T)

    def assign(self, x: np.ndarray) -> np.ndarray:
        """The stable segment id of each row: its nearest centroid's."""
        p = self.project(x)
        d = ((p[:, None, :] - self.centroids[None, :, :]) ** 2).sum(axis=2)
        return np.asarray(self.ids)[np.argmin(d, axis=1)]

    def assign_one(self, values: dict[str, float | None]) -> int:
        """One session's segment from its feature values (missing: the mean)."""
        row = np.array(
            [[np.nan if (v := values.get(f)) is None else float(v) for f in self.features]]
        )
        return int(self.assign(row)[0])

    def to_card(self) -> dict[str, Any]:
        """Everything the assignment needs, as JSON-able lists (the model card)."""
        return {
            "features": self.features,
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
            "components": self.components.tolist(),
            "pca_mean": self.pca_mean.tolist(),
            "centroids": self.centroids.tolist(),
            "ids": self.ids,
            "silhouette": self.silhouette,
            "silhouettes": {str(k): v for k, v in self.silhouettes.items()},
        }


def fit_segmenter(
    x: np.ndarray,
    features: Sequence[str],
    *,
    seed: int = 0,
    ks: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    variance: float = 0.9,
) -> Segmenter:
    """Scale, reduce and cluster ``x`` (rows of ``features``); k by the silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.metrics import silhouette_score
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    scaler = StandardScaler().fit(np.where(np.isnan(x), np.nanmean(x, axis=0), x))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    z = np.where(np.isnan(z), 0.0, z)
    pca = PCA(n_components=variance, svd_solver="full", random_state=seed).fit(z)
    p = pca.transform(z)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(p), size=min(len(p), SILHOUETTE_SAMPLE), replace=False)
    fits: dict[int, Any] = {}
    scores: dict[int, float] = {}
    for k in ks:
        if k >= len(p):
            continue
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(p)
        fits[k] = km
        scores[k] = float(silhouette_score(p[sample], km.labels_[sample]))
    best = max(scores, key=lambda k: (scores[k], -k))
    centroids = _ordered(fits[best].cluster_centers_)
    return Segmenter(
        features=list(features),
        mean=scaler.mean_,
        scale=scale,
        components=pca.components_,
        pca_mean=pca.mean_,
        centroids=centroids,
        silhouette=scores[best],
        silhouettes=scores,
        ids=list(range(best)),
    )


def _ordered(centroids: np.ndarray) -> np.ndarray:
    """Centroids in a fixed order (by their coordinates), whatever order KMeans found
    them in: the same data in another row order gives the same ids."""
    order = np.lexsort(np.round(centroids, 9).T[::-1])
    return np.asarray(centroids[order])


def stable_ids(old: Segmenter, new: Segmenter) -> Segmenter:
    """``new`` with its centroids' ids taken from the nearest of ``old``'s (Hungarian
    matching on the distances in ``old``'s PCA space); extra new centroids get fresh ids.
    """
    from scipy.optimize import linear_sum_assignment

    # Both sets of centroids, back in feature space, then in old's PCA space.
    back = new.centroids @ new.components + new.pca_mean
    raw = back * new.scale + new.mean
    mine = old.project(raw)
    cost = ((mine[:, None, :] - old.centroids[None, :, :]) ** 2).sum(axis=2)
    rows, cols = linear_sum_assignment(cost)
    ids = [-1] * new.k
    for r, c in zip(rows, cols, strict=True):
        ids[r] = old.ids[c]
    fresh = max(old.ids, default=-1) + 1
    for i, v in enumerate(ids):
        if v < 0:
            ids[i], fresh = fresh, fresh + 1
    new.ids = ids
    return new
