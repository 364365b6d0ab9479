"""Building the declared features: offline tables in batch, live session state in the stream.

:mod:`features.sessions` folds raw events into session and user rows,
:mod:`features.offline` keeps them as day files, :mod:`features.build` builds
a window of them.
"""

from features.build import BuildResult, build_window
from features.offline import ceil_day, day_name, floor_day, read_offline
from features.sessions import (
    EVENT_INPUTS,
    SessionEvents,
    session_features,
    session_outcomes,
    user_features,
)

__all__ = [
    "EVENT_INPUTS",
    "BuildResult",
    "SessionEvents",
    "build_window",
    "ceil_day",
    "day_name",
    "floor_day",
    "read_offline",
    "session_features",
    "session_outcomes",
    "user_features",
]
