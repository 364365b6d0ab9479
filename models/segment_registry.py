"""The segmenter in the MLflow registry, as ``microtune-segmenter``.

A version is an MLflow pyfunc whose ``predict`` takes behaviour vectors (a
frame with the card's feature columns, or an array in their order) and
returns segment ids. Its model card (``segmenter_card.json``, also the MLmodel
``metadata``) holds everything the assignment needs: the scaler's means and
scales, the PCA components, the centroids and their stable ids, with the
feature list, the segments' names, sizes and purchase rates, and the
validation figures. The ``champion`` alias is the segmenter the scorer
assigns with; ``previous`` is the one before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from mlflow import MlflowClient
from mlflow.pyfunc import PythonModel

from models.segments import Segmenter

SEGMENTER = "microtune-segmenter"
SEGMENT_EXPERIMENT = "segments"


class SegmenterPyfunc(PythonModel):
    """pyfunc wrapper: ``predict`` gives the segment id of each row."""

    _skip_type_hint_validation = True

    def __init__(self, model: Segmenter) -> None:
        self.model = model

    def predict(self, context: Any, model_input: Any, params: Any = None) -> np.ndarray:
        from models.registry import input_rows

        return self.model.assign(input_rows(model_input, self.model.features))


def register_segmenter(
    client: MlflowClient,
    segmenter: Segmenter,
    card: dict[str, Any],
    *,
    metrics: dict[str, float],
    artifacts: list[Path],
    artifact_root: str | None = None,
) -> str:
    """Log a run (metrics, report, card) and register the segmenter; it becomes the
    champion at once (returns its version).

    There is no gate: a segmentation has no outcome to be better at, and its ids
    were kept stable against the previous champion before it got here.
    """
    import mlflow

    from models.registry import CHALLENGER, ensure_experiment, set_champion

    ensure_experiment(client, SEGMENT_EXPERIMENT, artifact_root)
    mlflow.set_experiment(SEGMENT_EXPERIMENT)
    with mlflow.start_run(run_name=f"segment-{segmenter.method}-k{segmenter.k}") as run:
        mlflow.log_params({"method": segmenter.method, "k": segmenter.k})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
        mlflow.log_dict(card, "segmenter_card.json")
        for path in artifacts:
            mlflow.log_artifact(str(path), artifact_path="report")
        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=SegmenterPyfunc(segmenter),
            registered_model_name=SEGMENTER,
            metadata={"features": segmenter.features, "ids": segmenter.ids},
            pip_requirements=["microtune"],
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(SEGMENTER, version, "features", json.dumps(segmenter.features))
    client.set_model_version_tag(SEGMENTER, version, "names", json.dumps(card.get("names", {})))
    client.set_model_version_tag(SEGMENTER, version, "run_id", run.info.run_id)
    client.set_registered_model_alias(SEGMENTER, CHALLENGER, version)
    set_champion(client, SEGMENTER, version)
    return version


def champion_card(client: MlflowClient) -> tuple[str, dict[str, Any]] | None:
    """(version, card) of the champion segmenter; None when none is registered."""
    import tempfile

    from models.registry import CHAMPION, version_of

    version = version_of(client, SEGMENTER, CHAMPION)
    if version is None:
        return None
    run_id = str(client.get_model_version(SEGMENTER, version).run_id)
    with tempfile.TemporaryDirectory() as tmp:
        path = client.download_artifacts(run_id, "segmenter_card.json", tmp)
        return version, json.loads(Path(path).read_text())


def champion_segmenter(client: MlflowClient) -> tuple[str, Segmenter] | None:
    """(version, segmenter) of the champion, from its card; None when none."""
    found = champion_card(client)
    return None if found is None else (found[0], Segmenter.from_card(found[1]))
