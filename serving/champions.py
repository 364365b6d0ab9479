"""The promoted models inside the server, swapped atomically on promotion.

:class:`ModelSet` is immutable; the server holds one reference to the current
set and replaces it whole, so a request sees the old or the new champions,
never a mix. :func:`champion_versions` is cheap (two registry reads) and is
polled; :func:`load_champions` runs only when a version changed.

The decision policy follows the same pattern: :func:`policy_versions` is
polled, :func:`served_policy` builds the registry's champion policy (with its
canary) when they change, or reads the policy file when no policy is
registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.settings import Settings
from models import policy_registry, registry
from models.segment_registry import SEGMENTER
from serving.policy import Policy
from serving.policy_doc import DEFAULT_POLICY

FAMILIES = (registry.LGBM, registry.RIVER, SEGMENTER)
#: What makes a champion of each family, for the message when there is none.
_MAKE = {
    registry.LGBM: "`microtune train` and `microtune promote`",
    registry.RIVER: "`microtune train` and `microtune promote`",
    SEGMENTER: "`microtune segment`",
}


@dataclass(frozen=True)
class ModelSet:
    """The champions of the model families (None when missing), with their versions:
    the two risk models, and the segmenter (:mod:`models.segments`)."""

    lgbm: Any = None
    river: Any = None
    versions: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    segmenter: Any = None

    @property
    def ready(self) -> bool:
        return self.lgbm is not None or self.river is not None


def champion_versions(settings: Settings) -> dict[str, str | None]:
    """The champion version of each family in the registry (None when none)."""
    client = registry.reader(settings.tracking_uri)
    return {name: registry.version_of(client, name, registry.CHAMPION) for name in FAMILIES}


def load_champions(settings: Settings, previous: ModelSet | None = None) -> ModelSet:
    """Load every champion; versions unchanged since ``previous`` are reused.

    A family that fails to load is left out with its error; the server
    degrades instead of refusing to start.
    """
    try:
        versions = champion_versions(settings)
    except Exception as exc:
        reason = f"model registry unreachable: {type(exc).__name__}: {exc}"
        return ModelSet(errors={name: reason for name in FAMILIES})
    loaded: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, version in versions.items():
        old = previous and previous.versions.get(name) == version and _get(previous, name)
        if old:
            loaded[name] = old
            continue
        if version is None:
            errors[name] = f"no champion yet: run {_MAKE[name]}"
            continue
        try:
            loaded[name] = registry.load(name, version, registry.reader(settings.tracking_uri))
        except Exception as exc:
            errors[name] = f"v{version} failed to load: {type(exc).__name__}: {exc}"
    return ModelSet(
        loaded.get(registry.LGBM),
        loaded.get(registry.RIVER),
        {n: (v if n in loaded else None) for n, v in versions.items()},
        errors,
        loaded.get(SEGMENTER),
    )


def _get(models: ModelSet, name: str) -> Any:
    return {registry.LGBM: models.lgbm, registry.RIVER: models.river}.get(name, models.segmenter)


PolicyVersions = tuple[str | None, str | None, float]


def policy_path(settings: Settings) -> Path:
    """The policy file served while the registry holds no policy."""
    return settings.serve.policy or DEFAULT_POLICY


def policy_versions(settings: Settings) -> PolicyVersions:
    """(champion, canary, canary share) of the registered policies; cheap, polled."""
    return policy_registry.served_versions(registry.reader(settings.tracking_uri))


def _registered(v: policy_registry.PolicyVersion) -> Policy:
    policy = Policy.from_yaml(v.text, f"registry {policy_registry.POLICY} v{v.version}")
    # Decisions log the registry's version: one number names a policy everywhere.
    policy.doc.version = int(v.version)
    return policy


def served_policy(settings: Settings) -> tuple[Policy, PolicyVersions]:
    """The policy to serve: the registry's champion, with its challenger as a canary
    when it has a canary share; the policy file when no policy is registered.

    A registry that cannot be read raises (the caller keeps its current policy).
    """
    served = policy_registry.served(registry.reader(settings.tracking_uri))
    if served.champion is None:
        return Policy.load(policy_path(settings)), served.versions
    policy = _registered(served.champion)
    if served.canary is not None:
        policy.with_canary(_registered(served.canary), served.canary.canary_share)
    return policy, served.versions
