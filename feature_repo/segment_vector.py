"""The behaviour vector of :data:`feature_repo.features.SEGMENT_TERMS`, computed.

One set of formulas (:func:`_segment_terms`), evaluated with numpy on the columns
of many sessions (:func:`segment_vectors`: the segment flow, the ``segment``
feature rows) and in plain Python on one session (:func:`segment_vector`: the
scorer, a few microseconds). Both give the same numbers; a test checks it.
"""

from __future__ import annotations

import math
from typing import Any


def segment_vectors(columns: Any) -> Any:
    """The behaviour vectors (rows) of sessions, from a mapping of session-feature columns
    (numpy arrays): the segment flow's and the ``segment`` feature rows' path.

    A missing input gives NaN, which the segmenter reads as the average session.

    >>> import numpy as np
    >>> v = segment_vectors({"hesitation_score": np.array([0.5]),
    ...     "hover_ms_mean": np.array([np.nan]), "scroll_velocity_mean": np.array([1000.0]),
    ...     "session_start_ts": np.array([0.0]), "last_event_ts": np.array([90.0]),
    ...     "event_count": np.array([10.0]), "product_views": np.array([2.0]),
    ...     "page_views": np.array([4.0]), "product_dwell_s": np.array([60.0]),
    ...     "click_count": np.array([3.0]), "hover_count": np.array([5.0])})
    >>> np.round(v, 3).tolist()
    [[0.5, 6.659, -6.908, 2.398, 0.5, 4.111, 0.3, 0.5]]
    """
    import numpy as np

    def col(name: str) -> Any:
        return np.asarray(columns[name], dtype=np.float64)

    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack(_segment_terms(col, _ArrayOps), axis=1)


def segment_vector(values: Any) -> list[float]:
    """One session's behaviour vector, from its session features (a mapping of floats or
    None): the scorer's path, in plain Python (a few microseconds, no numpy call). The
    same terms as :func:`segment_vectors`, from the same :func:`_segment_terms`.

    >>> [round(v, 3) for v in segment_vector({"hesitation_score": 0.5,
    ...     "scroll_velocity_mean": 1000.0, "session_start_ts": 0.0, "last_event_ts": 90.0,
    ...     "event_count": 10.0, "product_views": 2.0, "page_views": 4.0,
    ...     "product_dwell_s": 60.0, "click_count": 3.0, "hover_count": 5.0})]
    [0.5, 6.659, -6.908, 2.398, 0.5, 4.111, 0.3, 0.5]
    """

    def col(name: str) -> float:
        v = values.get(name)
        return math.nan if v is None else float(v)

    return [float(v) for v in _segment_terms(col, _ScalarOps)]


def _segment_terms(col: Any, ops: Any) -> list[Any]:
    """The eight terms of :data:`SEGMENT_TERMS`, in order, from ``col`` (a column or a
    value by input name) with ``ops`` (numpy's or plain Python's)."""
    events = col("event_count")
    span = ops.maximum(col("last_event_ts") - col("session_start_ts"), 0.0)
    return [
        col("hesitation_score"),
        ops.log(ops.fill(ops.maximum(col("hover_ms_mean"), 1.0), 780.0)),
        -ops.log(ops.fill(ops.maximum(col("scroll_velocity_mean"), 1.0), 1320.0)),
        ops.log1p(span / ops.maximum(events - 1.0, 1.0)),
        col("product_views") / ops.maximum(col("page_views"), 1.0),
        ops.log1p(col("product_dwell_s")),
        ops.div(col("click_count"), events),
        ops.div(col("hover_count"), events),
    ]


class _ArrayOps:
    """numpy's operations for :func:`_segment_terms` (NaN propagates through them)."""

    @staticmethod
    def log(a: Any) -> Any:
        import numpy as np

        return np.log(a)

    @staticmethod
    def log1p(a: Any) -> Any:
        import numpy as np

        return np.log1p(a)

    @staticmethod
    def maximum(a: Any, b: float) -> Any:
        import numpy as np

        return np.maximum(a, b)

    @staticmethod
    def fill(a: Any, value: float) -> Any:
        import numpy as np

        return np.where(np.isnan(a), value, a)

    @staticmethod
    def div(a: Any, b: Any) -> Any:
        import numpy as np

        return np.where(b == 0, np.nan, a / np.where(b == 0, 1.0, b))


class _ScalarOps:
    """Plain Python's, with numpy's results: NaN propagates, x / 0 is NaN."""

    log = staticmethod(math.log)
    log1p = staticmethod(math.log1p)

    @staticmethod
    def maximum(a: float, b: float) -> float:
        return a if a != a or a >= b else b

    @staticmethod
    def fill(a: float, value: float) -> float:
        return value if a != a else a

    @staticmethod
    def div(a: float, b: float) -> float:
        return a / b if b else math.nan
