"""Wiring between microtune and Feast: open the store, apply, load the online store.

The online load writes the latest row of each entity through the online
store's own ``online_write_batch`` (the API ``feast materialize`` ends in),
but builds the protobuf values straight from numpy columns and sends them in
batches. That skips the pandas-to-Arrow-to-proto conversion that dominates
``feast materialize`` (see ``bench/bench_online_load.py`` for both side by side).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flows.errors import StoreError
from flows.online_sqlite import BatchedSqliteOnlineStore
from flows.settings import FEATURE_REPO, Settings

if TYPE_CHECKING:
    from feast import FeatureStore

BATCH_ROWS = 5_000

# Feast warns on every on-demand view that offline retrieval does not scale;
# ours is python-mode and row-wise, and the warning would drown real messages.
warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")


def ensure_uci(settings: Settings) -> Path:
    """Put the UCI sessions where the ``uci_sessions`` view's source reads them."""
    from feature_repo.uci import write_uci_parquet

    return write_uci_parquet(settings.paths.offline / "uci_online_shoppers.parquet")


def open_store(settings: Settings) -> FeatureStore:
    """A ``FeatureStore`` on the profile's ``feature_store.yaml`` and the settings' home."""
    settings.export_env()
    settings.paths.ensure()
    from feast import FeatureStore

    try:
        return FeatureStore(repo_path=str(FEATURE_REPO), fs_yaml_file=settings.feature_store_yaml)
    except Exception as exc:  # pragma: no cover - message depends on the store
        raise StoreError(
            f"cannot open the feature store ({settings.feature_store_yaml.name}): {exc}. "
            "Check the profile's stores are reachable (`microtune info`)."
        ) from exc


@contextlib.contextmanager
def _repo_parent_cwd() -> Iterator[None]:
    # Feast names repo modules relative to the working directory; from the
    # project root they get their package names (feature_repo.definitions).
    with contextlib.chdir(FEATURE_REPO.parent):
        yield


def repo_contents(settings: Settings, project: str) -> Any:
    """Feast objects declared in ``feature_repo/`` (what ``feast apply`` would see).

    ``definitions.py`` resolves its offline paths from ``MICROTUNE_HOME`` when it
    is first imported; a process that serves several homes (tests, notebooks)
    would otherwise register the first home's paths, so every file source is
    re-pointed at this home's offline directory.
    """
    from feast import Project
    from feast.repo_operations import parse_repo

    with _repo_parent_cwd():
        repo = parse_repo(FEATURE_REPO)
    if not repo.projects:  # as `feast apply` does: the project named in the yaml
        repo.projects.append(Project(name=project))
    _rebind_file_sources(repo, settings.paths.offline)
    return repo


def _rebind_file_sources(repo: Any, offline: Path) -> None:
    from feast import FileSource, PushSource

    sources = list(repo.data_sources)
    for fv in repo.feature_views:
        sources += [fv.batch_source, fv.stream_source]
    for src in sources:
        if isinstance(src, PushSource):
            src = src.batch_source
        if isinstance(src, FileSource):
            src.file_options.uri = str(offline / Path(src.path).name)


def pending_changes(store: FeatureStore, repo: Any) -> list[str]:
    """Objects whose declaration differs from the registry (Feast's own plan diff)."""
    from feast.diff.property_diff import TransitionType

    with contextlib.redirect_stdout(io.StringIO()):
        registry_diff, _, _ = store.plan(repo)
    return sorted(
        f"{d.transition_type.name.lower()} {d.feast_object_type.name.lower()} {d.name}"
        for d in registry_diff.feast_object_diffs
        if d.transition_type != TransitionType.UNCHANGED
    )


@dataclass(frozen=True)
class ApplyResult:
    changed: bool
    changes: list[str]


def apply_definitions(
    settings: Settings, store: FeatureStore, *, force: bool = False
) -> ApplyResult:
    """``feast apply`` from Python: registers the repo, deleting removed objects.

    Skipped when Feast's plan finds no difference between the declarations
    and the registry.
    """
    from feast.repo_operations import extract_objects_for_apply_delete

    repo = repo_contents(settings, store.project)
    changes = pending_changes(store, repo)
    if not changes and not force:
        return ApplyResult(False, [])
    to_apply, to_delete, _, _ = extract_objects_for_apply_delete(
        store.project, store.registry, repo
    )
    # Feast's on-demand view serialization prints the UDF's bytecode; keep it out of logs.
    with contextlib.redirect_stdout(io.StringIO()):
        store.apply(to_apply, objects_to_delete=to_delete, partial=False)
    return ApplyResult(True, changes)


def latest_per_entity(table: pa.Table, key: str) -> pa.Table:
    """The last row (by ``event_timestamp``) of each entity."""
    if table.num_rows == 0:
        return table
    t = table.sort_by([(key, "ascending"), ("event_timestamp", "ascending")])
    keys = t.column(key).to_numpy(zero_copy_only=False)
    last = np.ones(len(keys), dtype=bool)
    last[:-1] = keys[1:] != keys[:-1]
    return t.filter(pa.array(last))


def write_online(
    store: FeatureStore,
    view_name: str,
    table: pa.Table,
    key: str,
    *,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Write each entity's latest row of ``table`` to the online store. Returns rows written."""
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.protos.feast.types.Value_pb2 import Value

    view = store.get_feature_view(view_name)
    latest = latest_per_entity(table, key)
    names = [f.name for f in view.features]
    keys = latest.column(key).to_pylist()
    stamps = pc.cast(latest.column("event_timestamp"), pa.timestamp("us", tz="UTC")).to_pylist()
    columns = {n: latest.column(n).to_numpy(zero_copy_only=False).astype(np.float64) for n in names}
    online = store._get_provider().online_store
    created = datetime.now(UTC)
    for lo in range(0, len(keys), BATCH_ROWS):
        hi = min(lo + BATCH_ROWS, len(keys))
        entity_keys = [
            EntityKey(join_keys=[key], entity_values=[Value(string_val=k)]) for k in keys[lo:hi]
        ]
        try:
            if isinstance(online, BatchedSqliteOnlineStore):
                online.write_double_columns(
                    store.config,
                    view,
                    entity_keys,
                    {n: c[lo:hi] for n, c in columns.items()},
                    stamps[lo:hi],
                    created,
                )
            else:
                rows = [
                    {n: Value(double_val=v) for n, v in zip(names, vals, strict=True)}
                    for vals in zip(*(columns[n][lo:hi].tolist() for n in names), strict=True)
                ]
                online.online_write_batch(
                    store.config,
                    view,
                    list(zip(entity_keys, rows, stamps[lo:hi], [created] * (hi - lo), strict=True)),
                    None,
                )
        except Exception as exc:
            raise StoreError(f"online write to {view_name} failed: {exc}") from exc
        if progress:
            progress(hi - lo)
    return len(keys)


def offline_path(store: FeatureStore, view_name: str) -> Path:
    """The Parquet location behind a feature view's batch source."""
    view = store.get_feature_view(view_name)
    return Path(view.batch_source.path)  # type: ignore[union-attr]
