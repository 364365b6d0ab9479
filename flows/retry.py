"""Retry policies of the flows' tasks: store hiccups retry with backoff, bad input does not.

Delays grow (backoff) and carry ±20 % jitter, so runs that failed together do
not all come back at the same second. Bad input (:class:`~core.errors.InputError`:
a wrong path, an empty or inverted window, duplicate ids in the raw store), a
missing prerequisite (:class:`~core.errors.NotReadyError`: too few days to
train) and a missing object (:class:`~core.errors.NotFoundError`) fail the
same way on every try, so they fail the task at once.
"""

from __future__ import annotations

from typing import Any

from core.errors import InputError, NotFoundError, NotReadyError


def transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: True unless a retry would fail the same way."""
    try:
        state.result()
    except (InputError, NotReadyError, NotFoundError):
        return False
    except Exception:
        return True
    return True


#: Tasks that read or write a store (raw events, Feast registry, online store):
#: 3 retries, after about 2, 10 and 30 s.
IO_RETRIES: dict[str, Any] = {
    "retries": 3,
    "retry_delay_seconds": [2, 10, 30],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": transient,
}

#: Tasks that train or gate and then write MLflow's registry. A retry repeats the
#: work (minutes), so fewer tries with longer waits: a locked SQLite database or
#: a restarting tracking server has time to come back.
MODEL_RETRIES: dict[str, Any] = {
    "retries": 2,
    "retry_delay_seconds": [30, 120],
    "retry_jitter_factor": 0.2,
    "retry_condition_fn": transient,
}
