"""Register microtune's deployments (``prefect.yaml``) and run a process worker.

``prefect.yaml`` at the repository root is the one source of the schedules,
parameters and limits. :func:`register` hands it to ``prefect deploy`` itself,
after creating what that command expects to find: the process work pool and
the global concurrency limits of :mod:`flows.locks`. :func:`worker_command`
is the ``prefect worker start`` line that runs the pool's flow runs.

Deployments need a Prefect server that outlives one command: the one
``microtune server`` runs for the home, or ``MICROTUNE_PREFECT_API_URL`` (or
``PREFECT_API_URL``). A temporary server stops when its command ends.

Examples
--------
>>> cfg = load_config()
>>> pool_name(cfg)
'microtune'
>>> sorted(deployment_names(cfg))[:3]
['analyze_experiment/daily', 'apply_retention/daily', 'build_features/hourly']
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from core.errors import InputError, MicrotuneError, StoreError
from core.settings import FEATURE_REPO, Settings
from flows import locks, server

#: The repository root: ``prefect deploy`` runs there, and workers run flows from there.
REPO = FEATURE_REPO.parent
PREFECT_YAML = REPO / "prefect.yaml"


def load_config(path: Path = PREFECT_YAML) -> dict[str, Any]:
    """``prefect.yaml`` as a mapping (anchors resolved)."""
    if not path.is_file():
        raise InputError(f"{path}: no prefect.yaml there; run from a microtune checkout.")
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def deployment_names(cfg: dict[str, Any]) -> list[str]:
    """``flow/deployment`` names; the flow is the entrypoint's function (same as the flow name)."""
    return [f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}" for d in cfg["deployments"]]


def pool_name(cfg: dict[str, Any]) -> str:
    """The one work pool every deployment uses."""
    pools = {d["work_pool"]["name"] for d in cfg["deployments"]}
    if len(pools) != 1:
        raise InputError(f"prefect.yaml: expected one work pool, found {sorted(pools)}")
    return pools.pop()


def api_url(settings: Settings) -> str:
    """The configured Prefect server, or an error that says how to configure one."""
    url = server.api_url(settings) or os.environ.get("PREFECT_API_URL")
    if not url:
        raise InputError(
            "deployments need a long-running Prefect server: start one for this home with "
            "`microtune server`, or set MICROTUNE_PREFECT_API_URL to a shared one"
        )
    return url


def ensure_pool(name: str) -> bool:
    """Create the process work pool ``name`` unless it exists; True when created."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
        except ObjectAlreadyExists:
            return False
        return True


def prefect_cli(*args: str) -> list[str]:
    """A ``prefect`` command line run by this interpreter (the project's environment)."""
    return [sys.executable, "-m", "prefect", *args]


def register(settings: Settings, only: list[str] | None = None) -> list[str]:
    """Create the pool and limits, then ``prefect deploy`` the chosen (default: all) deployments.

    Returns the ``flow/deployment`` names registered.
    """
    url = api_url(settings)
    cfg = load_config()
    known = deployment_names(cfg)
    unknown = sorted(set(only or []) - set(known))
    if unknown:
        raise InputError(f"unknown deployment {unknown}; prefect.yaml has {known}")
    from prefect.settings import PREFECT_API_URL, temporary_settings

    try:
        # The server named here, even if Prefect's settings were read before it was set.
        with temporary_settings(updates={PREFECT_API_URL: url}):
            ensure_pool(pool_name(cfg))
            for name in (locks.FEATURES, locks.MODELS):
                locks.ensure_limit(name)
    except MicrotuneError:
        raise
    except Exception as exc:
        raise StoreError(f"Prefect server at {url} did not answer: {exc}") from exc
    selection = [a for n in only for a in ("--name", n)] if only else ["--all"]
    # `python -m flows.deploy` is `prefect deploy` with one client call fixed (see _main).
    cmd = [sys.executable, "-m", "flows.deploy", "--prefect-file", str(PREFECT_YAML), *selection]
    env = os.environ | {"PREFECT_API_URL": url, "PREFECT_CLI_PROMPT": "false"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise StoreError(f"`prefect deploy` failed (exit {done.returncode}):\n{tail}")
    return only or known


def worker_command(settings: Settings, name: str | None = None) -> list[str]:
    """The ``prefect worker start`` line for the pool of ``prefect.yaml``."""
    api_url(settings)
    pool = pool_name(load_config())
    return prefect_cli(
        "worker", "start", "--pool", pool, "--type", "process", "--name", name or f"{pool}-worker"
    )


def _main() -> None:
    """``prefect deploy`` with the arguments given, for :func:`register`.

    After creating each deployment, ``prefect deploy`` 3.8.8 lists the pool's
    online workers with ``"limit": null``, which the server rejects under the
    pinned FastAPI (422, ``Input should be a valid integer``), and stops before
    the next deployment. The deployment itself was created; only that listing,
    used for a hint, fails. Sending the server's own defaults instead lets
    ``--all`` go through every deployment of ``prefect.yaml``.
    """
    from prefect.cli import app
    from prefect.client.orchestration import PrefectClient

    listing = PrefectClient.read_workers_for_work_pool

    async def read_workers_for_work_pool(
        self: PrefectClient,
        work_pool_name: str,
        worker_filter: Any = None,
        offset: int | None = None,
        limit: int | None = None,
    ) -> Any:
        return await listing(self, work_pool_name, worker_filter, offset or 0, limit or 200)

    setattr(PrefectClient, "read_workers_for_work_pool", read_workers_for_work_pool)  # noqa: B010
    sys.argv = ["prefect", "deploy", *sys.argv[1:]]
    app()


if __name__ == "__main__":
    _main()
