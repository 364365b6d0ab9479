"""Per-feature drift thresholds calibrated on the reference window alone.

A distance between two samples is never zero: with a few hundred rows the
normed Wasserstein distance of a heavy-tailed count, or the Jensen-Shannon
distance of a 24-valued category, is often above a fixed 0.1 when nothing has
changed at all. How far above depends on the feature and on the window's size.

So each check first measures that noise on the reference itself. It splits
the reference at random, ``draws`` times, into a pseudo-current window of the
current window's size and the rest, and computes the same distance Evidently
computes between the two parts. Nothing changed between them, so their
distances are what chance alone gives. Rows are split by *group* (the
session): a session's decision points are strongly alike, and a real window
never shares sessions with the reference. Splitting single rows would put
parts of one session on both sides and make chance look several times
smaller than it is. A feature's threshold is then

    max(floor, mean + z * sd)

of those null distances: ``floor`` is the smallest change worth reporting at
any sample size (``DriftSettings.threshold``), and ``mean + z * sd`` is where
chance alone rarely reaches at this window size. The current window is never
looked at, so the thresholds cannot be tuned to it.

The distances are computed here with scipy exactly as Evidently 0.7 computes
them (``tests/test_drift.py`` pins the equality), because running Evidently
once per draw would cost seconds each.

Examples
--------
>>> import numpy as np, pandas as pd
>>> ref = pd.DataFrame({"x": np.random.default_rng(0).normal(size=20_000)})
>>> def at(rows):
...     return thresholds(ref, ["x"], [], rows=rows, floor=0.1, draws=30, z=3.0, seed=0)["x"]
>>> round(at(200), 3), at(10_000)
(0.199, 0.1)
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from scipy.spatial import distance as sp_distance


def finite(values: pd.Series | np.ndarray) -> np.ndarray:
    """The values a distance is computed on: NaN and infinities dropped (as Evidently does)."""
    a = np.asarray(values, dtype=np.float64)
    return a[np.isfinite(a)]


def wasserstein_normed(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance over the reference's standard deviation (at least 0.001).

    >>> round(wasserstein_normed(np.array([0.0, 1.0, 2.0]), np.array([1.0, 2.0, 3.0])), 4)
    1.2247
    """
    norm = max(float(np.std(reference)), 0.001)
    return float(stats.wasserstein_distance(reference, current)) / norm


def jensen_shannon(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (natural log) of the two samples' category frequencies.

    >>> jensen_shannon(np.array([0.0, 1.0]), np.array([0.0, 1.0]))
    0.0
    """
    keys, inverse = np.unique(np.concatenate([reference, current]), return_inverse=True)
    ref_counts = np.bincount(inverse[: len(reference)], minlength=len(keys))
    cur_counts = np.bincount(inverse[len(reference) :], minlength=len(keys))
    return float(sp_distance.jensenshannon(ref_counts / len(reference), cur_counts / len(current)))


def distance(reference: np.ndarray, current: np.ndarray, categorical: bool) -> float:
    """The distance the drift check uses for a feature of this kind."""
    return (jensen_shannon if categorical else wasserstein_normed)(reference, current)


def split(groups: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random mask of whole groups holding at least ``size`` rows (``groups``: one key a row).

    >>> groups = np.array(["a", "a", "b", "c", "c", "c"])
    >>> groups[split(groups, 2, np.random.default_rng(1))].tolist()
    ['a', 'a']
    """
    keys, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    order = rng.permutation(len(keys))
    take = int(np.searchsorted(np.cumsum(counts[order]), size)) + 1
    chosen = np.zeros(len(keys), dtype=bool)
    chosen[order[:take]] = True
    return chosen[inverse]


def null_scores(
    reference: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    *,
    rows: int,
    draws: int,
    seed: int,
    group: str | None = None,
) -> dict[str, np.ndarray]:
    """Distances between random parts of the reference: what chance alone gives.

    Each draw splits the reference at random into about ``min(rows, len // 2)``
    rows (a window the size of the current one) and the rest; with ``group``,
    whole groups (sessions) go to one side.
    """
    n = len(reference)
    size = min(rows, n // 2)
    rng = np.random.default_rng(seed)
    out = {c: np.empty(draws) for c in columns}
    if size < 1:
        return {c: np.zeros(0) for c in columns}
    values = {c: reference[c].to_numpy(np.float64) for c in columns}
    keys = reference[group].to_numpy() if group is not None and group in reference else None
    for d in range(draws):
        if keys is not None:
            pick = split(keys, size, rng)
        else:
            pick = np.zeros(n, dtype=bool)
            pick[rng.choice(n, size=size, replace=False)] = True
        for c in columns:
            cur, ref = finite(values[c][pick]), finite(values[c][~pick])
            out[c][d] = distance(ref, cur, c in categorical) if len(cur) and len(ref) else 0.0
    return out


def thresholds(
    reference: pd.DataFrame,
    columns: list[str],
    categorical: list[str],
    *,
    rows: int,
    floor: float,
    draws: int,
    z: float,
    seed: int,
    group: str | None = None,
) -> dict[str, float]:
    """Each column's threshold: ``max(floor, mean + z * sd)`` of its null distances."""
    scores = null_scores(
        reference, columns, categorical, rows=rows, draws=draws, seed=seed, group=group
    )
    out = {}
    for c, s in scores.items():
        noise = float(s.mean() + z * s.std(ddof=1)) if len(s) > 1 else 0.0
        out[c] = max(floor, noise)
    return out


def exceedances(
    reference: pd.DataFrame,
    groups: list[list[str]],
    categorical: list[str],
    limits: dict[str, float],
    *,
    rows: int,
    draws: int,
    seed: int,
    group: str | None = None,
) -> np.ndarray:
    """How many ``groups`` have a feature at its ``limits`` in each of ``draws`` reference splits.

    The null distribution of the drifted-group count (a group of one feature
    each: of the drifted-feature count). Use a ``seed`` other than the one the
    limits were calibrated with: splits the limits were fitted on undercount
    (out-of-sample splits give an honest count). Correlated features cross
    together, which is what this count captures and a fixed share does not.
    """
    columns = [c for g in groups for c in g]
    scores = null_scores(
        reference, columns, categorical, rows=rows, draws=draws, seed=seed, group=group
    )
    if not groups:
        return np.zeros(draws, dtype=np.int64)
    over = np.array([np.any([scores[c] >= limits[c] for c in g], axis=0) for g in groups])
    return over.sum(axis=0).astype(np.int64)


def count_limit(counts: np.ndarray, alpha: float, minimum: int) -> int:
    """The fewest drifted features that at most ``alpha`` of the null counts reach.

    Never below ``minimum``.

    >>> count_limit(np.array([0] * 90 + [1] * 6 + [2] * 3 + [4]), alpha=0.02, minimum=2)
    3
    >>> count_limit(np.zeros(50, dtype=int), alpha=0.02, minimum=2)
    2
    """
    k = minimum
    while len(counts) and float(np.mean(counts >= k)) > alpha:
        k += 1
    return k


# --------------------------------------------------------------------------- performance


def performance_noise(
    risk: np.ndarray, groups: np.ndarray | None, *, draws: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """ECE and ROC AUC that chance alone gives on these predictions, ``draws`` times.

    Labels are drawn as if ``risk`` were exactly right: row ``i`` is positive
    with probability ``risk[i]``. A session has one outcome, so the rows of
    one group (``groups``: one key a row) share one uniform draw ``u`` and
    are positive where ``u < risk``: each row keeps its probability, and the
    rows of a session mostly agree, as their real labels do. Draws with one
    class only give an AUC of NaN.

    >>> ece, auc = performance_noise(np.full(40, 0.3), None, draws=200, seed=0)
    >>> bool(0.03 < ece.mean() < 0.1), bool(np.allclose(auc, 0.5))
    (True, True)
    """
    p = np.asarray(risk, dtype=np.float64)
    rng = np.random.default_rng(seed)
    if groups is None:
        u = rng.random((draws, len(p)))
    else:
        _, inverse = np.unique(groups, return_inverse=True)
        u = rng.random((draws, int(inverse.max()) + 1 if len(p) else 0))[:, inverse]
    y = (u < p).astype(np.float64)
    bins = np.minimum((p * 10).astype(int), 9)  # as models.metrics.expected_calibration_error
    onehot = np.eye(10)[bins]
    ece = np.abs((y - p) @ onehot).sum(axis=1) / max(len(p), 1)
    ranks = stats.rankdata(p)
    pos = y.sum(axis=1)
    neg = len(p) - pos
    with np.errstate(divide="ignore", invalid="ignore"):
        auc = (y @ ranks - pos * (pos + 1) / 2) / (pos * neg)
    auc[(pos == 0) | (neg == 0)] = np.nan
    return ece, auc
