"""The Dask cluster the batch work runs on, when ``MICROTUNE_DASK__ADDRESS`` names one.

``local`` starts a ``LocalCluster`` for the run (``local_workers`` processes of
``threads_per_worker`` threads, each limited to ``memory_limit``, spilling to
disk beyond it); ``tcp://host:8786`` connects to a running scheduler, whose
workers must have microtune installed (the same version) and see
``MICROTUNE_HOME`` at the same path (docs/operations.md, "The batch work on
Dask").
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.settings import Settings


@contextmanager
def dask_client(settings: Settings) -> Iterator[Any]:
    """A ``distributed.Client`` on the configured cluster, closed afterwards."""
    from distributed import Client, LocalCluster

    cfg = settings.dask
    if cfg.address is None or cfg.address == "local":
        with (
            LocalCluster(
                n_workers=cfg.local_workers,
                threads_per_worker=cfg.threads_per_worker,
                memory_limit=cfg.memory_limit,
                processes=True,
                dashboard_address=None,
                local_directory=str(settings.paths.scratch / "dask"),
            ) as cluster,
            Client(cluster) as client,
        ):
            yield client
    else:
        with Client(cfg.address) as client:
            yield client
