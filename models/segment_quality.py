"""How good a segmentation is, and what its segments are: validation, profiles, names.

* :func:`fit_both` fits K-Means and HDBSCAN on the same vectors and keeps the
  one with the better silhouette (both are reported).
* :func:`bootstrap_stability`: refit on bootstrap resamples, with the same method
  and number of segments, and compare each refit's assignment of every session
  with the original's (adjusted Rand index, scikit-learn).
* :func:`latent_agreement`: on generated data, the adjusted Rand index against
  the world's latent classes (intent and hesitation, each in terciles: 9 classes),
  beside the ceiling: K-Means with k = 9 on the true latent values themselves.
* :func:`profiles`: each segment's size, purchase rate and mean of every term,
  and its name, from its most distinctive terms (:data:`SEGMENT_TERMS`).

>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = np.vstack([rng.normal(m, 0.3, size=(100, 2)) for m in (0.0, 3.0)])
>>> from models.segments import fit_segmenter
>>> seg = fit_segmenter(x, ["a", "b"], seed=0, ks=(2,))
>>> round(bootstrap_stability(x, seg, rounds=3, seed=0), 3)
1.0
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from feature_repo.features import SEGMENT_TERMS, SegmentTerm
from models.segments import Segmenter, fit_segmenter

#: A term whose segment mean is within this many standard deviations of the
#: average session does not name the segment.
NAME_MIN_Z = 0.25


@dataclass
class Fits:
    """Both methods' segmenters on one window, and the kept one."""

    kmeans: Segmenter
    hdbscan: Segmenter
    #: Fewest segments a kept segmentation has (HDBSCAN's count is its own).
    k_min: int = 2

    @property
    def kept(self) -> Segmenter:
        """The better silhouette, among the fits with at least ``k_min`` segments."""
        h = self.hdbscan
        better = h.k >= self.k_min and h.silhouette > self.kmeans.silhouette
        return h if better else self.kmeans


def fit_both(x: np.ndarray, features: Sequence[str], *, seed: int, ks: Sequence[int]) -> Fits:
    """K-Means (k by the silhouette among ``ks``) and HDBSCAN on the same vectors."""
    return Fits(
        kmeans=fit_segmenter(x, features, seed=seed, ks=ks, method="kmeans"),
        hdbscan=fit_segmenter(x, features, seed=seed, method="hdbscan"),
        k_min=min(ks),
    )


def bootstrap_stability(x: np.ndarray, seg: Segmenter, *, rounds: int = 5, seed: int = 0) -> float:
    """Mean adjusted Rand index between ``seg``'s assignment of ``x`` and that of
    segmenters refitted (same method, same k for K-Means) on bootstrap resamples."""
    from sklearn.metrics import adjusted_rand_score

    rng = np.random.default_rng(seed)
    base = seg.assign(x)
    scores = []
    for r in range(rounds):
        rows = rng.choice(len(x), size=len(x), replace=True)
        again = fit_segmenter(
            x[rows], seg.features, seed=seed + r + 1, ks=(seg.k,), method=seg.method
        )
        scores.append(adjusted_rand_score(base, again.assign(x)))
    return float(np.mean(scores))


def latent_agreement(
    labels: np.ndarray, intent: np.ndarray, hesitation: np.ndarray, *, seed: int = 0
) -> dict[str, float]:
    """ARI of ``labels`` against intent × hesitation terciles, and the ceiling's."""
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    def terciles(v: np.ndarray) -> np.ndarray:
        return np.searchsorted(np.quantile(v, [1 / 3, 2 / 3]), v, side="right")

    classes = 3 * terciles(intent) + terciles(hesitation)
    truth = np.column_stack([intent, hesitation])
    truth = (truth - truth.mean(axis=0)) / truth.std(axis=0)
    ceiling = KMeans(n_clusters=9, n_init=10, random_state=seed).fit_predict(truth)
    ari = float(adjusted_rand_score(classes, labels))
    top = float(adjusted_rand_score(classes, ceiling))
    return {"ari": ari, "ceiling_ari": top, "ari_share_of_ceiling": ari / top if top else 0.0}


def name_of(z: np.ndarray, terms: Sequence[SegmentTerm] = SEGMENT_TERMS) -> str:
    """A segment's name: the words of its two most distinctive terms (by |z|).

    >>> name_of(np.array([1.2, 0, 0, 0, -0.8, 0, 0, 0.1]))
    'hesitant, browsing'
    >>> name_of(np.zeros(8))
    'typical'
    """
    order = [i for i in np.argsort(-np.abs(z)) if abs(z[i]) >= NAME_MIN_Z][:2]
    words = [terms[i].high if z[i] > 0 else terms[i].low for i in order]
    return ", ".join(words) or "typical"


def profiles(
    seg: Segmenter, x: np.ndarray, purchased: np.ndarray | None = None
) -> list[dict[str, Any]]:
    """Each segment: id, name, sessions, share, purchase rate, and each term's mean and
    standardized mean (how far the segment sits from the average session)."""
    labels = seg.assign(x)
    filled = np.where(np.isnan(x), seg.mean, x)
    z = (filled - seg.mean) / seg.scale
    out: list[dict[str, Any]] = []
    names: dict[str, int] = {}
    for sid in seg.ids:
        members = labels == sid
        n = int(members.sum())
        zm = z[members].mean(axis=0) if n else np.zeros(len(seg.features))
        name = name_of(zm)
        names[name] = names.get(name, 0) + 1
        if names[name] > 1:
            name = f"{name} ({names[name]})"
        rate = float(np.nanmean(purchased[members])) if purchased is not None and n else None
        out.append(
            {
                "segment": int(sid),
                "name": name,
                "sessions": n,
                "share": n / len(x) if len(x) else 0.0,
                "purchase_rate": rate,
                "means": dict(zip(seg.features, filled[members].mean(axis=0).tolist(), strict=True))
                if n
                else {},
                "z": dict(zip(seg.features, zm.round(4).tolist(), strict=True)),
            }
        )
    return out
