"""Micro-segments: behaviour clusters of sessions, with ids that stay put.

The pure core of the segment work (issue: micro-segments). A
:class:`Segmenter` is fitted on behaviour vectors (one row a session):

1. each feature is standardized (scikit-learn's ``StandardScaler``);
2. the vectors are reduced with ``PCA`` (the components above unit variance,
   whitened);
3. ``KMeans`` clusters them, with ``k`` chosen by the silhouette (on a seeded
   sample of at most 5,000 rows) among ``ks``; or ``HDBSCAN`` finds dense
   clusters, whose means become the centroids.

Everything the live assignment needs is plain arrays (means, scales,
components, centroids), so a session is assigned in plain Python, with no numpy
call or scikit-learn on the request path (:meth:`Segmenter.assign_row`).

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

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

#: Largest sample the silhouette is computed on (it is quadratic in the rows).
SILHOUETTE_SAMPLE = 5_000
#: Largest sample HDBSCAN is fitted on (its memory grows with the rows squared).
DENSITY_SAMPLE = 10_000


_ARRAYS = ("mean", "scale", "components", "pca_mean", "centroids")


@dataclass
class Segmenter:
    """A fitted segmentation: scaler, PCA and centroids as arrays, with its figures."""

    features: list[str]
    mean: np.ndarray
    scale: np.ndarray
    components: np.ndarray  # (n_components, n_features), whitened
    pca_mean: np.ndarray
    centroids: np.ndarray  # (k, n_components), in PCA space
    silhouette: float
    silhouettes: dict[int, float] = field(default_factory=dict)
    ids: list[int] = field(default_factory=list)  # the stable id of each centroid
    method: str = "kmeans"
    #: Each segment's name, by its profile (set by the segment flow).
    names: dict[int, str] = field(default_factory=dict)

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

    def assign_row(self, row: Sequence[float]) -> tuple[int, list[float]]:
        """One vector's segment id and its point in the PCA space, in plain Python (the
        scorer's path: a few microseconds for a handful of terms and centroids, where
        numpy's per-call overhead would cost tens). The same numbers as :meth:`assign`.
        """
        mean, scale, components, pca_mean, centroids = self._lists
        z = [
            (0.0 if x != x else (x - m) / s) - c
            for x, m, s, c in zip(row, mean, scale, pca_mean, strict=True)
        ]
        point: list[float] = [sum(a * b for a, b in zip(z, w, strict=True)) for w in components]
        best, nearest = math.inf, 0
        for i, c in enumerate(centroids):
            d = sum((a - b) * (a - b) for a, b in zip(point, c, strict=True))
            if d < best:
                best, nearest = d, i
        return self.ids[nearest], point

    @cached_property
    def _lists(self) -> tuple[Any, ...]:
        arrays = (self.mean, self.scale, self.components, self.pca_mean, self.centroids)
        return tuple(np.asarray(a, dtype=np.float64).tolist() for a in arrays)

    def assign_one(self, values: dict[str, float | None]) -> int:
        """One session's segment from its feature values (missing: the mean)."""
        return self.assign_row(
            [math.nan if (v := values.get(f)) is None else float(v) for f in self.features]
        )[0]

    @classmethod
    def from_card(cls, card: dict[str, Any]) -> Segmenter:
        """The segmenter a :meth:`to_card` describes."""
        arrays = {k: np.asarray(card[k], dtype=np.float64) for k in _ARRAYS}
        return cls(
            features=list(card["features"]),
            silhouette=float(card["silhouette"]),
            silhouettes={int(k): float(v) for k, v in card.get("silhouettes", {}).items()},
            ids=[int(i) for i in card["ids"]],
            method=str(card.get("method", "kmeans")),
            names={int(k): str(v) for k, v in card.get("names", {}).items()},
            **arrays,
        )

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
            "method": self.method,
        }


def fit_segmenter(
    x: np.ndarray,
    features: Sequence[str],
    *,
    seed: int = 0,
    ks: Sequence[int] = (2, 3, 4, 5, 6, 7, 8),
    variance: float | None = None,
    method: str = "kmeans",
    min_cluster_share: float = 0.01,
) -> Segmenter:
    """Scale, reduce and cluster ``x`` (rows of ``features``).

    PCA keeps the components whose variance is above 1 on the standardized
    vectors (Kaiser's rule: each carries more than one input's worth), at least
    one; or, with ``variance``, those that keep that share of it. The kept
    components are whitened, so that each counts alike in the distances (which
    is why no component below unit variance is kept: whitening would blow its
    noise up to the signal's size).

    ``method`` is ``kmeans`` (k chosen by the silhouette among ``ks``) or
    ``hdbscan`` (scikit-learn's HDBSCAN in leaf mode, clusters of at least
    ``min_cluster_share`` of the rows, fitted on a seeded sample of at most
    :data:`DENSITY_SAMPLE` rows).
    Either way the result is a set of centroids: a density cluster's centroid is
    its members' mean, and a session (noise included) belongs to its nearest
    centroid, which is what the live assignment can compute.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(x, dtype=np.float64)
    filled = np.where(np.isnan(x), np.nanmean(x, axis=0), x)
    scaler = StandardScaler().fit(np.nan_to_num(filled))
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    z = (x - scaler.mean_) / scale
    z = np.where(np.isnan(z), 0.0, z)
    pca = PCA(svd_solver="full", random_state=seed).fit(z)
    if variance is None:
        keep = max(1, int(np.sum(pca.explained_variance_ > 1.0)))
    else:
        keep = int(np.searchsorted(np.cumsum(pca.explained_variance_ratio_), variance) + 1)
    keep = min(keep, len(pca.explained_variance_))
    components = pca.components_[:keep] / np.sqrt(pca.explained_variance_[:keep])[:, None]
    p = (z - pca.mean_) @ components.T
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(p), size=min(len(p), SILHOUETTE_SAMPLE), replace=False)
    if method == "kmeans":
        centroids, scores = _kmeans(p, sample, ks, seed)
    elif method == "hdbscan":
        centroids, scores = _density(p, sample, min_cluster_share, seed)
    else:
        raise ValueError(f"unknown method {method!r}: use kmeans or hdbscan")
    centroids = _ordered(centroids)
    return Segmenter(
        features=list(features),
        mean=scaler.mean_,
        scale=scale,
        components=components,
        pca_mean=pca.mean_,
        centroids=centroids,
        silhouette=scores[len(centroids)],
        silhouettes=scores,
        ids=list(range(len(centroids))),
        method=method,
    )


def _kmeans(
    p: np.ndarray, sample: np.ndarray, ks: Sequence[int], seed: int
) -> tuple[np.ndarray, dict[int, float]]:
    """The centroids of the k with the best silhouette, and every k's silhouette."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    fits: dict[int, Any] = {}
    scores: dict[int, float] = {}
    for k in ks:
        if k >= len(p):
            continue
        km = KMeans(n_clusters=k, n_init=10, random_state=seed).fit(p)
        fits[k] = km
        scores[k] = float(silhouette_score(p[sample], km.labels_[sample]))
    best = max(scores, key=lambda k: (scores[k], -k))
    return np.asarray(fits[best].cluster_centers_), scores


def _density(
    p: np.ndarray, sample: np.ndarray, share: float, seed: int
) -> tuple[np.ndarray, dict[int, float]]:
    """HDBSCAN's clusters on a sample, as centroids; the silhouette of the nearest-centroid
    assignment of the sample."""
    from sklearn.cluster import HDBSCAN
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(seed)
    fit_rows = rng.choice(len(p), size=min(len(p), DENSITY_SAMPLE), replace=False)
    q = p[np.sort(fit_rows)]
    size = max(5, int(share * len(q)))
    labels = HDBSCAN(
        min_cluster_size=size, min_samples=min(size, 10), cluster_selection_method="leaf"
    ).fit_predict(q)
    found = sorted(set(labels.tolist()) - {-1})
    if len(found) < 2:  # one dense blob: no structure to speak of
        return np.vstack([q.mean(axis=0), q.mean(axis=0) + 1e-9]), {len(found): -1.0, 2: -1.0}
    centroids = np.vstack([q[labels == c].mean(axis=0) for c in found])
    nearest = np.argmin(((p[sample, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    score = float(silhouette_score(p[sample], nearest)) if len(set(nearest)) > 1 else -1.0
    return centroids, {len(centroids): score}


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

    # New's centroids back in feature space (through the inverse of its whitened
    # PCA), then in old's PCA space.
    back = new.centroids @ np.linalg.pinv(new.components).T + new.pca_mean
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
