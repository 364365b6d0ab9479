"""The drift check's two segment checks: the shares, and the streaming centroids.

* ``segment_shares``: the champion segmenter assigns the current window's
  ended sessions; their shares are compared with the shares of its reference
  window (its card) by the population stability index, with scipy's
  chi-square test beside it (with thousands of sessions the test finds any
  change significant, so the index decides).
* ``segment_centroids``: how far the scorer's streaming centroids
  (:mod:`models.segment_stream`) moved from the batch centroids.

Either failing means the segments no longer describe the traffic: the drift
flow then runs the ``segment`` flow again (it does not retrain the risk models).

>>> round(psi(np.array([0.5, 0.5]), np.array([0.6, 0.4])), 4)
0.0405
"""

from __future__ import annotations

from typing import Any

import numpy as np

from models.segment_stream import centroid_shift
from models.segments import Segmenter
from monitoring.verdict import CheckResult, Status

SEGMENT_CHECKS = ("segment_shares", "segment_centroids")
#: Shares are floored here before the index's logarithm (an empty segment).
_FLOOR = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors."""
    e = np.maximum(np.asarray(expected, dtype=float), _FLOOR)
    a = np.maximum(np.asarray(actual, dtype=float), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def shares_check(
    seg: Segmenter,
    reference: dict[int, float],
    current: np.ndarray,
    psi_max: float,
    min_sessions: int = 1,
) -> CheckResult:
    """The current window's segment shares (``current``: its sessions' vectors) against
    the segmenter's reference shares."""
    from scipy.stats import chisquare

    if len(current) < max(min_sessions, 1) or not reference:
        return CheckResult(
            "segment_shares",
            "no_data",
            f"{len(current)} ended sessions in the window (need {max(min_sessions, 1)})",
        )
    labels = seg.assign(current)
    counts = np.array([np.sum(labels == sid) for sid in seg.ids], dtype=float)
    expected = np.array([reference.get(sid, 0.0) for sid in seg.ids])
    expected = expected / expected.sum()
    now = counts / counts.sum()
    index = psi(expected, now)
    p = float(chisquare(counts, np.maximum(expected, _FLOOR) * counts.sum()).pvalue)
    i = int(np.argmax(np.abs(now - expected)))  # the segment that moved most
    moved = seg.ids[i]
    detail = (
        f"PSI {index:.3f} (limit {psi_max:g}) over {int(counts.sum())} sessions; segment "
        f"{moved} ({seg.names.get(moved, '')}) moved most: {expected[i]:.1%} -> {now[i]:.1%}"
    )
    values = {
        "psi": index,
        "chi2_p": p,
        **{f"share_{sid}": float(now[j]) for j, sid in enumerate(seg.ids)},
    }
    return CheckResult("segment_shares", "fail" if index > psi_max else "pass", detail, values)


def centroids_check(
    seg: Segmenter, version: str, stream: dict[str, Any] | None, shift_max: float, min_sessions: int
) -> CheckResult:
    """The streaming centroids (``stream``: :func:`models.segment_stream.read_centers`)
    against the segmenter's."""
    if stream is None or stream.get("version") != version:
        return CheckResult(
            "segment_centroids", "no_data", f"no streaming centroids for segmenter v{version} yet"
        )
    learned = int(stream.get("learned", 0))
    if learned < min_sessions:
        return CheckResult(
            "segment_centroids",
            "no_data",
            f"{learned} ended sessions learnt by the streaming centroids (need {min_sessions})",
        )
    shift = centroid_shift(seg.centroids, np.asarray(stream["centers"], dtype=float))
    status: Status = "fail" if shift["max"] > shift_max else "pass"
    detail = (
        f"streaming centroids {shift['max']:.2f} from the batch ones at most (limit "
        f"{shift_max:g}, whitened PCA units), after {learned} sessions"
    )
    return CheckResult("segment_centroids", status, detail, {**shift, "learned": float(learned)})
