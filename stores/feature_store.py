"""Wiring between microtune and Feast: open the store and apply the feature repo.

The Feast yaml of the profile is read with its ``${...}`` filled from the
settings object; ``feast apply`` runs from Python, and only when Feast's own
plan finds a difference. Loading the online store is in
:mod:`stores.online_load`.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import StoreError
from core.settings import FEATURE_REPO, Settings

if TYPE_CHECKING:
    from feast import FeatureStore

# Feast warns on every on-demand view that offline retrieval does not scale;
# ours is python-mode and row-wise, and the warning would drown real messages.
warnings.filterwarnings("ignore", message="On demand feature view is an experimental feature")


def ensure_uci(settings: Settings) -> Path:
    """Put the UCI sessions where the ``uci_sessions`` view's source reads them."""
    from feature_repo.uci import write_uci_parquet

    return write_uci_parquet(settings.paths.offline / "uci_online_shoppers.parquet")


def repo_yaml(settings: Settings) -> dict[str, Any]:
    """The profile's ``feature_store.yaml``, its ``${...}`` filled from ``settings``.

    Feast itself expands the yaml's variables from the environment
    (``load_repo_config``); microtune fills them from the settings object
    instead, so a process can open the stores of any home it is given.
    """
    import yaml

    text = settings.feature_store_yaml.read_text()
    for name, value in settings.store_variables().items():
        text = text.replace("${" + name + "}", value)
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def repo_config(settings: Settings, **changes: Any) -> Any:
    """Feast's ``RepoConfig`` of :func:`repo_yaml`, with top-level ``changes``."""
    from feast.repo_config import RepoConfig

    config = RepoConfig(**(repo_yaml(settings) | changes))
    config.repo_path = FEATURE_REPO
    return config


def open_store(settings: Settings) -> FeatureStore:
    """A ``FeatureStore`` on the profile's ``feature_store.yaml`` and the settings' home."""
    settings.paths.ensure()
    from feast import FeatureStore

    try:
        return FeatureStore(repo_path=str(FEATURE_REPO), config=repo_config(settings))
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
