"""Training sets, the train and promote flows, and rollback: real Feast, MLflow and Prefect."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from core.settings import Settings
from events.ingest import RawEventStore
from models import registry
from models.dataset import LABEL, time_split, training_frame
from stores.feature_store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def built(prefect_server: None, home: Settings, model_log) -> Settings:
    from flows.feature_flow import build_features

    build_features(inbox=[str(model_log / "events")])
    return home


def test_training_rows_use_no_later_event(built: Settings) -> None:
    frame = training_frame(built, open_store(built))
    assert len(frame) > 1000 and set(frame[LABEL].unique()) == {0, 1}
    raw = RawEventStore(built.paths.raw_events)
    span = raw.time_range()
    events = raw.read(span[0], span[1] + pd.Timedelta(seconds=1)).to_pandas()
    events = events[events["consent"]]
    # The session's event count as of the decision time, counted straight from raw events.
    sample = frame.sample(300, random_state=0)
    merged = sample[["session_id", "event_timestamp"]].merge(
        events[["session_id", "ts"]], on="session_id"
    )
    known = merged[merged["ts"] <= merged["event_timestamp"]]
    expected = known.groupby(["session_id", "event_timestamp"]).size()
    got = sample.set_index(["session_id", "event_timestamp"])["event_count"]
    assert (got.reindex(expected.index) == expected).all()
    assert (frame["seconds_since_last_event"] >= 0).all()
    assert (frame["session_age_s"] >= frame["seconds_since_last_event"]).all()


def test_time_split_is_respected(built: Settings) -> None:
    split = time_split(training_frame(built, open_store(built)))
    assert split.train["event_timestamp"].max() < split.valid_start
    assert split.train["session_end"].max() < split.valid_start
    assert split.valid["event_timestamp"].min() >= pd.Timestamp(split.valid_start)
    assert split.valid["session_end"].max() < split.test_start
    assert split.test["event_timestamp"].min() >= pd.Timestamp(split.test_start)


def test_train_promote_and_rollback_flows(built: Settings, model_log) -> None:
    from flows.context import use_settings

    # About 200 cart sessions a day: the hold-out ECE carries several points of
    # sampling noise here, so this flow test widens the bound. The gate's
    # calibration refusal is tested on its own in test_models_unit.py.
    with use_settings(built.override(gate={"max_ece": 0.15})):
        _train_promote_and_rollback(built, model_log)


#: Training on Dask from the first row (the default needs 2,000,000).
ON_DASK = {"address": "local", "train_min_rows": 1}


def _train_promote_and_rollback(built: Settings, model_log) -> None:
    from flows.context import use_settings
    from flows.model_flows import promote, rollback, train

    first = train(seed=0, oracle=str(model_log / "oracle.parquet"))
    assert first["versions"] == {"lgbm": "1", "river": "1"}
    # The report's window is the card's: refitted, the model learnt from train and valid.
    assert first["window"]["fit"] == [first["window"]["train"][0], first["window"]["valid"][1]]
    assert 0.6 < first["lgbm"]["test_roc_auc"] <= first["oracle_auc"] + 0.005
    # ideal.parquet beside the oracle: every hold-out decision point has its ideal risk.
    assert first["ideal_auc"] is not None
    assert first["lgbm"]["ideal_gap"] == first["ideal_auc"] - first["lgbm"]["test_roc_auc"]
    assert 0.6 < first["ideal_auc"] < first["oracle_auc"] + 0.02
    # The 0.05 bar against LightGBM is measured on 20k sessions in bench/bench_models.py.
    assert first["river"]["test_progressive_roc_auc"] > 0.6
    out = promote()
    assert out["promoted"].get(registry.LGBM) == "1", out["decisions"]
    client = registry.configure(built.tracking_uri, built.artifact_root)
    assert registry.version_of(client, registry.LGBM, registry.CHAMPION) == "1"

    # The second training boosts on a Dask cluster (two local worker processes).
    with use_settings(built.override(gate={"max_ece": 0.15}, dask=ON_DASK)):
        second = train(seed=1)
    assert second["versions"]["lgbm"] == "2" and second["lgbm"]["dask_workers"] == 2
    assert first["lgbm"]["dask_workers"] == 0
    assert abs(second["lgbm"]["test_roc_auc"] - first["lgbm"]["test_roc_auc"]) < 0.03
    out = promote()
    decision = out["decisions"][registry.LGBM]
    names = {c["name"] for c in decision["checks"]}
    assert names == {
        "auc",
        "calibration",
        "invariance",
        "direction",
        "minimum_cases",
        "latency",
        "drift",
    }
    champion = registry.version_of(client, registry.LGBM, registry.CHAMPION)
    assert champion == ("2" if decision["promote"] else "1")
    gate_tag = client.get_model_version(registry.LGBM, "2").tags["gate"]
    assert gate_tag == "passed" if decision["promote"] else gate_tag

    if decision["promote"]:
        assert rollback(model=registry.LGBM) == {"replaced": "2", "restored": "1"}
        assert registry.version_of(client, registry.LGBM, registry.CHAMPION) == "1"
    model = registry.load(registry.LGBM, "champion")
    assert model.card.feature_service == "abandonment_v1"
    window = model.card.training_window
    assert window["test"][0]
    # Refitted after early stopping: the model learnt from the training and validation days.
    assert model.card.params["refit"] is True
    assert window["fit"] == [window["train"][0], window["valid"][1]]
    assert set(model.card.thresholds) == {"medium", "high"}
    x = np.zeros((1, len(model.card.columns)))
    assert 0.0 < float(model.predict(x)[0]) < 1.0
