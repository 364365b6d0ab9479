"""Decision policies in the MLflow registry: versions, a canary share, champion and rollback.

A policy version is the policy YAML as it was registered, with its card
(arms and their weights, rules, guard rails, the bandit's actions and
context), registered as ``microtune-policy``. The aliases work as for the
risk models (:mod:`models.registry`): ``champion`` is served, ``previous`` is
the champion before it (``microtune policy rollback`` restores it), and
``challenger`` is the newest version.

A challenger whose ``canary_share`` tag is above 0 is served **beside** the
champion, to that share of sessions, as extra arms named ``canary:<arm>``. The
scorer evaluates both policies on every decision and logs what each would
have done (``arm_policies``), so the policy gate
(:func:`experiments.policy_eval.gate_canary`) values the challenger against
the champion off-policy, on the same decisions, before it is promoted.

>>> canary_arm("discount_10"), is_canary("canary:discount_10"), is_canary("control")
('canary:discount_10', True, False)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.errors import InputError, NotFoundError

if TYPE_CHECKING:
    from mlflow import MlflowClient

# MLflow is imported inside the functions: the scorer's decision code imports
# the arm names from here and must not pay for it.

POLICY = "microtune-policy"
POLICY_EXPERIMENT = "policies"
CANARY_PREFIX = "canary:"
CANARY_TAG = "canary_share"


def canary_arm(arm: str) -> str:
    """The logged name of a challenger's arm while it runs as a canary."""
    return CANARY_PREFIX + arm


def is_canary(arm: str) -> bool:
    return arm.startswith(CANARY_PREFIX)


@dataclass(frozen=True)
class PolicyVersion:
    """One registered policy: its YAML text, its card and its canary share."""

    version: str
    text: str
    card: dict[str, Any]
    canary_share: float


@dataclass(frozen=True)
class Served:
    """What the registry says the scorer serves: a champion, and maybe a canary."""

    champion: PolicyVersion | None
    canary: PolicyVersion | None

    @property
    def versions(self) -> tuple[str | None, str | None, float]:
        c = self.canary
        return (
            self.champion.version if self.champion else None,
            c.version if c else None,
            c.canary_share if c else 0.0,
        )


def register_policy(
    client: MlflowClient,
    text: str,
    card: dict[str, Any],
    *,
    canary_share: float,
    artifact_root: str | None = None,
) -> str:
    """Register a validated policy text as the new challenger; returns its version.

    With no champion yet it becomes the champion at once (nothing to gate it
    against). Otherwise it is served to ``canary_share`` of sessions until the
    policy gate promotes it.
    """
    import mlflow

    from models.registry import CHALLENGER, CHAMPION, ensure_experiment, set_champion, version_of

    if not 0.0 <= canary_share < 1.0:
        raise InputError(f"canary share {canary_share} must be in [0, 1)")
    ensure_experiment(client, POLICY_EXPERIMENT, artifact_root)
    mlflow.set_experiment(POLICY_EXPERIMENT)
    digest = hashlib.sha256(text.encode()).hexdigest()
    with mlflow.start_run(run_name=f"policy-{digest[:8]}") as run:
        mlflow.log_text(text, "policy/policy.yaml")
        mlflow.log_dict(card, "policy/policy_card.json")
        mlflow.set_tags({"sha256": digest, "experiment": str(card.get("experiment"))})
    if client.search_registered_models(f"name = '{POLICY}'") == []:
        client.create_registered_model(POLICY)
    mv = client.create_model_version(
        POLICY, source=f"{run.info.artifact_uri}/policy", run_id=run.info.run_id
    )
    version = str(mv.version)
    for key, value in (
        ("sha256", digest),
        ("arms", json.dumps(card.get("arms", {}))),
        ("experiment", str(card.get("experiment"))),
    ):
        client.set_model_version_tag(POLICY, version, key, value)
    client.set_registered_model_alias(POLICY, CHALLENGER, version)
    first = version_of(client, POLICY, CHAMPION) is None
    share = 0.0 if first else canary_share
    client.set_model_version_tag(POLICY, version, CANARY_TAG, f"{share:g}")
    if first:
        set_champion(client, POLICY, version)
    return version


def set_canary_share(client: MlflowClient, version: str, share: float) -> None:
    """Change the share of sessions a challenger serves (0 stops its canary)."""
    if not 0.0 <= share < 1.0:
        raise InputError(f"canary share {share} must be in [0, 1)")
    client.set_model_version_tag(POLICY, version, CANARY_TAG, f"{share:g}")


def read_version(client: MlflowClient, version: str) -> PolicyVersion:
    """One registered policy, read back from its artifacts."""
    import mlflow
    from mlflow.exceptions import MlflowException

    try:
        mv = client.get_model_version(POLICY, version)
    except MlflowException as exc:
        raise NotFoundError(f"no policy version {version} in the registry") from exc
    text = mlflow.artifacts.load_text(f"{mv.source}/policy.yaml")
    card = json.loads(mlflow.artifacts.load_text(f"{mv.source}/policy_card.json"))
    share = float(mv.tags.get(CANARY_TAG, "0") or 0)
    return PolicyVersion(str(mv.version), text, card, share)


def served(client: MlflowClient) -> Served:
    """The champion policy and, when a challenger runs as a canary, the challenger.

    Both are ``None`` when no policy was ever registered (the scorer then
    serves its policy file).
    """
    champion, canary, _ = served_versions(client)
    if champion is None:
        return Served(None, None)
    return Served(read_version(client, champion), read_version(client, canary) if canary else None)


def served_versions(client: MlflowClient) -> tuple[str | None, str | None, float]:
    """:attr:`Served.versions` without reading the artifacts (the scorer polls this)."""
    from models.registry import CHALLENGER, CHAMPION, version_of

    champion = version_of(client, POLICY, CHAMPION)
    challenger = version_of(client, POLICY, CHALLENGER)
    if champion is None or challenger is None or challenger == champion:
        return champion, None, 0.0
    tags = client.get_model_version(POLICY, challenger).tags
    share = float(tags.get(CANARY_TAG, "0") or 0)
    return (champion, challenger, share) if share > 0 else (champion, None, 0.0)
