"""One writer at a time per store: Prefect global concurrency limits held by a flow.

A deployment's own ``concurrency_limit`` (see ``prefect.yaml``) keeps runs of
that deployment apart. It cannot see a run of the same flow started another
way: from the CLI, from another deployment of the same flow, or as a subflow
(``check_drift`` calls ``retrain``, which calls ``train`` and ``promote``).
What must never overlap is two writers of the same store, so the flows that
write one hold a limit named after that store:

* :data:`FEATURES` is held by ``build_features``. Its window is whole UTC days
  and every hourly window shares today's day files with the one before, so a
  window key would serialize the same runs as the store key does, and would
  miss "all data" runs that cover every window.
* :data:`MODELS` is held by ``train``, ``promote`` and ``rollback``, which
  move MLflow aliases.

Each limit allows one slot and is created on first use, so a run against a
fresh server (the CLI's temporary one, or a test's) needs no setup. A slot is
a lease that the holder renews: if a worker dies, the slot frees itself.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

FEATURES = "microtune-features"
MODELS = "microtune-models"

P = ParamSpec("P")
R = TypeVar("R")


def ensure_limit(name: str, limit: int = 1) -> None:
    """Create the global concurrency limit ``name`` unless it exists (never changes one)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            # Another run may create it first.
            with contextlib.suppress(ObjectAlreadyExists):
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=limit)
                )


@contextlib.contextmanager
def held(name: str) -> Iterator[None]:
    """Hold the one slot of limit ``name`` in the block (a flow, or a command such as
    ``microtune forget`` that writes the same stores outside a flow)."""
    from prefect.concurrency.sync import concurrency

    ensure_limit(name)
    # A renewal that fails once (a busy server) must not kill an hour of training.
    with concurrency(name, occupy=1, strict=True, raise_on_lease_renewal_failure=False):
        yield


def exclusive(name: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Run the decorated flow body while holding the one slot of limit ``name``.

    Put it under ``@flow``: the flow run starts, then waits for the slot, so a
    waiting run shows as running with a log line rather than as a late run.
    """

    def wrap(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def holding(*args: P.args, **kwargs: P.kwargs) -> R:
            with held(name):
                return fn(*args, **kwargs)

        # Prefect validates parameters against the signature, resolving string
        # annotations in the wrapper's module; give it the resolved one instead.
        holding.__signature__ = inspect.signature(fn, eval_str=True)  # type: ignore[attr-defined]
        return holding

    return wrap
