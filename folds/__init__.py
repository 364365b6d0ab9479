"""Features as incremental folds over an entity's events.

A :class:`Fold` declares a feature once: its name, description and a ``step``
that turns the state before an event into the state after it. The step is
written in numpy array arithmetic, so the same code serves two callers:

* the streaming updater applies it to one event of one entity
  (:func:`fold_one`), and
* the batch builder (:func:`scan`) applies it at every position of every
  entity's event sequence at once: position ``j`` of all entities in one
  vectorized call. The loop runs over positions, not events, so a batch of a
  million events with sessions of at most a few hundred events costs a few
  hundred numpy calls per fold.

Because both paths run the identical floating-point operations in the same
order, batch and streaming values are bit-identical, not merely close.

A fold's state is a tuple of float64 columns; the first is the feature value,
the others (``<name>__<part>``) are the extra state needed to continue the fold
later. All of them are stored in the feature view, so an online row is the
complete state of the fold.

The package: :mod:`folds.match` (event filters, entity runs),
:mod:`folds.fold` (the base), :mod:`folds.kinds` and :mod:`folds.ratios` (the
kinds), :mod:`folds.engine` (encoding, batch scan, streaming step).

Examples
--------
>>> import numpy as np
>>> hovers = Count("hovers", "Hover events so far.", Match(types=("hover",)))
>>> ev = prepare_events({
...     "entity": np.array(["s1", "s1", "s2"], dtype=object),
...     "ts": np.array([10.0, 11.0, 10.5]),
...     "event_type": np.array(["hover", "hover", "click"], dtype=object),
... })
>>> scan([hovers], ev)["hovers"].tolist()
[1.0, 2.0, 0.0]
"""

from __future__ import annotations

from folds.engine import (
    dictionary_codes,
    fold_one,
    initial_states,
    inputs_of,
    prepare_events,
    scan,
    state_columns,
)
from folds.fold import Fold
from folds.kinds import Count, Dwell, Ewm, First, Last, Max, Rate, Sum
from folds.match import ANY, EVENT_TYPE_CODES, PAGE_TYPE_CODES, Match, Segments
from folds.ratios import LogMean, LogTerm, Mean, Share

__all__ = [
    "ANY",
    "EVENT_TYPE_CODES",
    "PAGE_TYPE_CODES",
    "Count",
    "Dwell",
    "Ewm",
    "First",
    "Fold",
    "Last",
    "LogMean",
    "LogTerm",
    "Match",
    "Max",
    "Mean",
    "Rate",
    "Segments",
    "Share",
    "Sum",
    "dictionary_codes",
    "fold_one",
    "initial_states",
    "inputs_of",
    "prepare_events",
    "scan",
    "state_columns",
]
