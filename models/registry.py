"""MLflow tracking and registry for the abandonment models.

Each trained model is logged as an MLflow pyfunc whose artifact holds the
model object with its :class:`~models.card.ModelCard`, so loading a version
needs nothing else. The card is also stored as the MLmodel ``metadata`` and as
model-version tags, for people browsing the MLflow UI.

Aliases: ``challenger`` is the newest trained version, ``champion`` the one
the scorer serves, ``previous`` the champion before it. Moving an alias is a
single registry write, so readers see the old or the new champion, never a
mix. The champion history is kept as a registered-model tag for rollback.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.pyfunc import PythonModel

from core.errors import NotFoundError
from models.card import ModelCard

LGBM = "abandonment-lgbm"
RIVER = "abandonment-river"
warnings.filterwarnings("ignore", message=".*python_model.*CloudPickle.*")

CHAMPION, CHALLENGER, PREVIOUS = "champion", "challenger", "previous"
EXPERIMENT = "abandonment"
PROMOTION_EXPERIMENT = "promotion"
HISTORY_TAG = "champion_history"


class RiskPyfunc(PythonModel):
    """pyfunc wrapper: ``predict`` takes rows in the card's column order."""

    # It takes a frame or an array, a hint MLflow cannot derive a schema from (it
    # would warn at import); the model card documents the columns.
    _skip_type_hint_validation = True

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, context: Any, model_input: Any, params: Any = None) -> np.ndarray:
        return np.asarray(self.model.predict(input_rows(model_input, self.model.card.columns)))


def input_rows(model_input: Any, columns: list[str]) -> np.ndarray:
    """A pyfunc's input as float rows in ``columns``' order: a frame's named columns, or
    an array already in that order."""
    if hasattr(model_input, "columns"):
        return np.asarray(model_input[columns].to_numpy(float))
    return np.asarray(model_input, dtype=float)


def configure(tracking_uri: str, artifact_root: str | None = None) -> MlflowClient:
    """Point MLflow at the profile's tracking store and return a client.

    Experiments are created with their artifacts under ``artifact_root``;
    MLflow's default would be ``./mlruns`` in whatever directory we run from.
    """
    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if artifact_root:
        for name in (EXPERIMENT, PROMOTION_EXPERIMENT):
            ensure_experiment(client, name, artifact_root)
    return client


def ensure_experiment(client: MlflowClient, name: str, artifact_root: str | None) -> None:
    """Create experiment ``name`` when missing, its artifacts under ``artifact_root``
    (MLflow's default place without one)."""
    if client.get_experiment_by_name(name) is None:
        where = f"{artifact_root}/{name}" if artifact_root else None
        client.create_experiment(name, artifact_location=where)


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    run_id: str


def register(
    client: MlflowClient,
    name: str,
    model: Any,
    *,
    metrics: dict[str, float],
    artifacts: list[Path],
    run_name: str,
    params: dict[str, Any] | None = None,
) -> Registered:
    """Log a run (params, metrics, plots, card) and register the model as challenger."""
    mlflow.set_experiment(EXPERIMENT)
    card: ModelCard = model.card
    with mlflow.start_run(run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in (params or {}).items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(card.as_dict(), "model_card.json")
        mlflow.set_tags(
            {
                "feature_service": card.feature_service,
                "kind": card.kind,
                "training_window": json.dumps(card.training_window),
            }
        )
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="plots")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=RiskPyfunc(model),
            registered_model_name=name,
            metadata=card.as_dict(),
            pip_requirements=["microtune"],
        )
    version = str(info.registered_model_version)
    for key, value in (
        ("feature_service", card.feature_service),
        ("columns", json.dumps(card.columns)),
        ("training_window", json.dumps(card.training_window)),
        ("thresholds", json.dumps(card.thresholds)),
    ):
        client.set_model_version_tag(name, version, key, value)
    client.set_registered_model_alias(name, CHALLENGER, version)
    return Registered(name, version, run.info.run_id)


def version_of(client: MlflowClient, name: str, alias: str) -> str | None:
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def reader(tracking_uri: str) -> MlflowClient:
    """A client on ``tracking_uri`` that leaves MLflow's process-wide URIs alone.

    The scorer polls the registry from a background thread; a reader keeps
    that thread from moving the URIs another part of the process writes to.
    """
    return MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)


def load(name: str, alias_or_version: str, client: MlflowClient | None = None) -> Any:
    """The model object of ``name`` at an alias or version number.

    With ``client`` (a :func:`reader`), the model is located through that
    client's registry; without, through MLflow's process-wide URIs
    (:func:`configure`).
    """
    ref = (
        f"models:/{name}/{alias_or_version}"
        if alias_or_version.isdigit()
        else (f"models:/{name}@{alias_or_version}")
    )
    try:
        if client is not None:
            version = alias_or_version
            if not version.isdigit():
                version = str(client.get_model_version_by_alias(name, version).version)
            ref = client.get_model_version_download_uri(name, version)
        return mlflow.pyfunc.load_model(ref).unwrap_python_model().model
    except MlflowException as exc:
        raise NotFoundError(
            f"no model {ref}: train one with `microtune train` and promote it with "
            "`microtune promote`"
        ) from exc


def champion_history(client: MlflowClient, name: str) -> list[str]:
    try:
        tags = client.get_registered_model(name).tags
    except MlflowException:
        return []
    return list(json.loads(tags.get(HISTORY_TAG, "[]")))


def set_champion(client: MlflowClient, name: str, version: str) -> str | None:
    """Make ``version`` the champion; the old one becomes ``previous``. Returns the old one."""
    old = version_of(client, name, CHAMPION)
    if old is not None and old != version:
        client.set_registered_model_alias(name, PREVIOUS, old)
    client.set_registered_model_alias(name, CHAMPION, version)
    history = champion_history(client, name)
    if not history or history[-1] != version:
        history.append(version)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    return old


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Restore the previous champion. Returns (replaced version, restored version)."""
    history = champion_history(client, name)
    if len(history) < 2:
        raise NotFoundError(f"{name} has no previous champion to roll back to")
    current, restored = history[-1], history[-2]
    client.set_registered_model_alias(name, CHAMPION, restored)
    # The rolled-back version must not be gated and promoted again by the next
    # `promote`: the restored champion becomes the challenger until a new training.
    client.set_registered_model_alias(name, CHALLENGER, restored)
    history = history[:-1]
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    if len(history) >= 2:
        client.set_registered_model_alias(name, PREVIOUS, history[-2])
    else:
        client.delete_registered_model_alias(name, PREVIOUS)
    return current, restored


def record_gate(
    client: MlflowClient,
    name: str,
    challenger: str,
    champion: str | None,
    decision: dict[str, Any],
    window: dict[str, Any],
) -> None:
    """Log one gate decision as a run of the promotion experiment, and tag the challenger.

    ``decision`` is :meth:`models.gate.GateDecision.as_dict`.
    """
    mlflow.set_experiment(PROMOTION_EXPERIMENT)
    promoted = bool(decision["promote"])
    with mlflow.start_run(run_name=f"gate-{name}-v{challenger}"):
        mlflow.set_tags(
            {
                "model": name,
                "challenger": challenger,
                "champion": champion or "none",
                "decision": "promote" if promoted else "refuse",
            }
        )
        mlflow.log_metrics({f"challenger_{k}": v for k, v in decision["challenger"].items()})
        mlflow.log_metrics({f"champion_{k}": v for k, v in decision["champion"].items()})
        mlflow.log_dict({**decision, "window": window}, "decision.json")
    failed = [f"{c['name']}: {c['detail']}" for c in decision["checks"] if not c["passed"]]
    client.set_model_version_tag(
        name, challenger, "gate", "passed" if promoted else "; ".join(failed)
    )
