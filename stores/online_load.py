"""Loading the online store: the latest row of each entity, in batches.

The load writes the latest row of each entity through the online
store's own ``online_write_batch`` (the API ``feast materialize`` ends in),
but builds the protobuf values straight from numpy columns and sends them in
batches. That skips the pandas-to-Arrow-to-proto conversion that dominates
``feast materialize`` (see ``bench/bench_online_load.py`` for both side by side).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from core.errors import StoreError
from stores.online_sqlite import BatchedSqliteOnlineStore

if TYPE_CHECKING:
    from feast import FeatureStore

BATCH_ROWS = 5_000


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
