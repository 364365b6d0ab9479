"""The batch work on a real Dask cluster: a ``LocalCluster`` of worker processes.

The feature build on Dask, partitioned by session, against the local build
of the same generated week: every table, row for row.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.integration]

TABLES = ("session_features", "session_outcomes", "user_features")


@pytest.fixture(scope="module")
def week(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Settings]:
    """A generated week in a home's raw store."""
    from events.ingest import ingest_files
    from events.raw_store import RawEventStore
    from events.synth import GeneratorConfig, write_event_log

    root = tmp_path_factory.mktemp("dask")
    write_event_log(GeneratorConfig(sessions=3000, days=7, seed=13), root / "log", ideal=False)
    settings = Settings(home=root / "home", dask={"address": "local", "partitions": 5})
    settings.paths.ensure()
    ingest_files(
        [root / "log" / "events"],
        RawEventStore(settings.paths.raw_events),
        settings.paths.quarantine,
    )
    yield settings


def _sorted(root: Path, name: str) -> pa.Table:
    files = sorted((root / name).glob("*.parquet"))
    table = pa.concat_tables([pq.read_table(f) for f in files])
    key = "user_id" if name == "user_features" else "session_id"
    return table.sort_by([(key, "ascending"), ("event_timestamp", "ascending")])


def test_the_dask_build_equals_the_local_build_row_for_row(week: Settings, tmp_path: Path) -> None:
    from core.cluster import dask_client
    from events.raw_store import RawEventStore
    from features.build import build_window
    from features.distributed import build_window_dask

    raw = RawEventStore(week.paths.raw_events)
    start, end = raw.time_range()  # type: ignore[misc]
    local = build_window(raw, tmp_path / "local", start, end + timedelta(seconds=1))
    with dask_client(week) as client:
        assert len(client.scheduler_info()["workers"]) == 2  # real worker processes
        dask = build_window_dask(
            client,
            raw,
            tmp_path / "dask",
            week.paths.scratch,
            start,
            end + timedelta(seconds=1),
            partitions=5,
        )
    for field in ("events", "consented", "session_rows", "sessions", "ended_sessions"):
        assert getattr(dask, field) == getattr(local, field), field
    assert local.session_rows > 10_000 and local.sessions > 2_000
    for name in TABLES:
        want, got = _sorted(tmp_path / "local", name), _sorted(tmp_path / "dask", name)
        assert got.num_rows == want.num_rows > 0, name
        # The same schema, and the same values (NaN where the local build has NaN).
        assert got.schema.equals(want.schema) and got.to_pandas().equals(want.to_pandas()), name
        days = sorted(p.name for p in (tmp_path / "local" / name).glob("*.parquet"))
        assert sorted(p.name for p in (tmp_path / "dask" / name).glob("*.parquet")) == days
    assert not any(week.paths.scratch.glob("build-*"))  # the partitions are gone


def test_the_build_features_flow_runs_its_build_on_dask(
    prefect_server: None, home: Settings, small_log: Path, tmp_path: Path
) -> None:
    """MICROTUNE_DASK__ADDRESS=local: the flow ingests, builds on the cluster, applies
    and materializes; its tables are the local build's of the same raw store."""
    from events.raw_store import RawEventStore
    from features.build import build_window
    from flows.context import use_settings
    from flows.feature_flow import build_features

    on_dask = home.override(dask={"address": "local", "partitions": 3})
    with use_settings(on_dask):
        summary = build_features(inbox=[str(small_log / "events")])
    assert summary.build["session_rows"] > 0 and summary.online_rows
    raw = RawEventStore(home.paths.raw_events)
    start, end = datetime.fromisoformat(summary.start), datetime.fromisoformat(summary.end)
    local = build_window(raw, tmp_path / "local", start, end)
    assert local.session_rows == summary.build["session_rows"]
    for name in TABLES:
        want, got = _sorted(tmp_path / "local", name), _sorted(home.paths.offline, name)
        assert got.to_pandas().equals(want.to_pandas()), name


def test_lightgbm_on_dask_matches_the_single_process_fit(week: Settings) -> None:
    """The same rows, recipe and seed: boosted on two workers (``lightgbm.dask``) or in
    one process, the hold-out AUCs agree within noise, and both find the signal."""
    import numpy as np

    from core.cluster import dask_client
    from models.card import ModelCard
    from models.lgbm import train_lgbm
    from models.metrics import score

    rng = np.random.default_rng(7)
    n, cols = 24_000, ["cart_adds", "price_hovers", "zooms", "noise"]
    x = rng.normal(size=(n, len(cols)))
    logit = 1.2 * x[:, 0] - 0.8 * x[:, 1] + 0.5 * x[:, 0] * x[:, 2]
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    tr, va, te = slice(0, 16_000), slice(16_000, 20_000), slice(20_000, n)

    def fit(client: object) -> float:
        card = ModelCard("lightgbm", "abandonment_v1", cols, {"train": ["a", "b"]})
        result = train_lgbm(x[tr], y[tr], x[va], y[va], card, seed=3, client=client)
        return score(y[te], result.model.predict(x[te])).roc_auc

    local = fit(None)
    with dask_client(week) as client:
        on_dask = fit(client)
    true = score(y[te], 1 / (1 + np.exp(-logit[te]))).roc_auc  # the world's own risk
    assert abs(on_dask - local) <= 0.01, (on_dask, local)
    assert on_dask >= true - 0.02, (on_dask, true)
