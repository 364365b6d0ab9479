"""The promoted models inside the server, swapped atomically on promotion.

:class:`ModelSet` is immutable; the server holds one reference to the current
set and replaces it whole, so a request sees the old or the new champions,
never a mix. :func:`champion_versions` is cheap (two registry reads) and is
polled; :func:`load_champions` runs only when a version changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.settings import Settings
from models import registry

FAMILIES = (registry.LGBM, registry.RIVER)


@dataclass(frozen=True)
class ModelSet:
    """The champions of both families (None when missing), with their versions."""

    lgbm: Any = None
    river: Any = None
    versions: dict[str, str | None] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)

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
            errors[name] = "no champion yet: run `microtune train` and `microtune promote`"
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
    )


def _get(models: ModelSet, name: str) -> Any:
    return models.lgbm if name == registry.LGBM else models.river
