"""Groups of correlated features, found on the reference window, that vote once.

Correlated features cross their drift thresholds together. On session data,
a few very long sessions move every session-length count at once (events,
page views, product views, clicks, searches), and a scroll-velocity mean and
its moving average move as one. Counted one by one, such a chance event casts
five votes, as many as a real change of five independent behaviours. So the
``data_drift`` check counts *groups*: a group drifts when any of its features
does, and the check needs a number of drifted groups to fail.

The groups are found on the reference alone, never on the current window:

1. the absolute Spearman correlation of every pair of features (rank
   correlation: the counts are heavy-tailed, and a monotone link is what makes
   two features cross together);
2. hierarchical clustering with average linkage on ``1 - |rho|``, cut where
   the average ``|rho|`` between two groups falls below ``min_corr``.

Nothing depends on the feature list: a feature added later joins the group it
correlates with, or stands alone. A categorical feature with more than two
categories has no order, so it stands alone; a binary one (``is_mobile``) is
ranked like a number.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> length = rng.lognormal(3, 1, 1000)
>>> frame = pd.DataFrame({"events": length, "views": length * rng.uniform(0.5, 1.5, 1000),
...                       "speed": rng.normal(size=1000), "device": rng.integers(0, 3, 1000)})
>>> correlation_groups(frame, ["events", "views", "speed", "device"], ["device"], min_corr=0.7)
[['events', 'views'], ['speed'], ['device']]
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform


def spearman(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Absolute Spearman correlations, pairwise on complete rows (0 where undefined)."""
    if not columns:
        return np.zeros((0, 0))
    corr = frame[columns].astype(np.float64).corr(method="spearman").to_numpy()
    corr = np.nan_to_num(np.abs(corr), nan=0.0)
    np.fill_diagonal(corr, 1.0)
    return corr


def correlation_groups(
    reference: pd.DataFrame,
    columns: list[str],
    categorical: list[str] | None = None,
    *,
    min_corr: float,
) -> list[list[str]]:
    """``columns`` split into groups whose average ``|Spearman|`` reaches ``min_corr``.

    Groups keep the order of ``columns`` (a group sits where its first feature does).
    """
    unordered = {
        c for c in (categorical or []) if c in columns and reference[c].dropna().nunique() > 2
    }
    ranked = [c for c in columns if c not in unordered]
    labels: dict[str, int] = {}
    if len(ranked) > 1:
        dist = 1.0 - spearman(reference, ranked)
        tree = hierarchy.linkage(squareform(dist, checks=False), method="average")
        cut = hierarchy.fcluster(tree, t=1.0 - min_corr, criterion="distance")
        labels = {c: int(k) for c, k in zip(ranked, cut, strict=True)}
    groups: dict[tuple[str, int], list[str]] = {}
    for c in columns:
        key = ("corr", labels[c]) if c in labels else ("alone", columns.index(c))
        groups.setdefault(key, []).append(c)
    return list(groups.values())


def group_of(groups: list[list[str]]) -> dict[str, int]:
    """Each feature's group index.

    >>> group_of([["a", "b"], ["c"]])
    {'a': 0, 'b': 0, 'c': 1}
    """
    return {c: i for i, g in enumerate(groups) for c in g}
