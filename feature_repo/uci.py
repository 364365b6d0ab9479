"""The UCI Online Shoppers data set as an external feature source.

The real data (``data/uci_online_shoppers/``, provenance in ``PROVENANCE.md``)
has one row per session and no raw events, so it bypasses the event path: it
is registered as its own source, feature view (``uci_sessions``) and feature
service (``uci_purchase_v1``), and serves as the real-data check for training
and drift monitoring.

The file has months but no dates or years. Each session gets a synthetic
timestamp inside its month of a fixed year (day and hour from its row number),
so that point-in-time reads and month-based drift splits work.

Examples
--------
>>> t = load_uci()
>>> t.num_rows, round(sum(t.column("revenue").to_pylist()) / t.num_rows, 3)
(12330, 0.155)
>>> [f.name for f in UCI_FEATURES][:3]
['administrative', 'administrative_duration', 'informational']
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

UCI_CSV = (
    Path(__file__).resolve().parent
    / "data"
    / "uci_online_shoppers"
    / ("online_shoppers_intention.csv")
)
UCI_SHA256 = "b3055ee355f59134d851d32641183cb4a8b45def7124d2f50442a042f358e0d9"
UCI_KEY = "uci_session_id"
#: The feature view and the feature service of the data set.
UCI_VIEW = "uci_sessions"
UCI_SERVICE = "uci_purchase_v1"
UCI_LABEL = "revenue"
UCI_YEAR = 2017
MONTHS = {
    "Jan": 1,
    "Feb": 2,
    "Mar": 3,
    "Apr": 4,
    "May": 5,
    "June": 6,
    "Jun": 6,
    "Jul": 7,
    "Aug": 8,
    "Sep": 9,
    "Oct": 10,
    "Nov": 11,
    "Dec": 12,
}
VISITOR_TYPES = {"New_Visitor": 0, "Returning_Visitor": 1, "Other": 2}


@dataclass(frozen=True)
class UciFeature:
    name: str
    column: str
    dtype: str
    description: str


UCI_FEATURES: tuple[UciFeature, ...] = (
    UciFeature("administrative", "Administrative", "float", "Account pages visited."),
    UciFeature(
        "administrative_duration", "Administrative_Duration", "float", "Seconds on account pages."
    ),
    UciFeature("informational", "Informational", "float", "Information pages visited."),
    UciFeature(
        "informational_duration", "Informational_Duration", "float", "Seconds on information pages."
    ),
    UciFeature("product_related", "ProductRelated", "float", "Product pages visited."),
    UciFeature(
        "product_related_duration", "ProductRelated_Duration", "float", "Seconds on product pages."
    ),
    UciFeature("bounce_rates", "BounceRates", "float", "Average bounce rate of the pages."),
    UciFeature("exit_rates", "ExitRates", "float", "Average exit rate of the pages."),
    UciFeature("page_values", "PageValues", "float", "Average page value of the pages."),
    UciFeature("special_day", "SpecialDay", "float", "Closeness to a special day."),
    UciFeature("month", "Month", "int", "Month of the session (2-12)."),
    UciFeature("operating_systems", "OperatingSystems", "int", "Operating system code."),
    UciFeature("browser", "Browser", "int", "Browser code."),
    UciFeature("region", "Region", "int", "Region code."),
    UciFeature("traffic_type", "TrafficType", "int", "Traffic source code."),
    UciFeature("visitor_type", "VisitorType", "int", "0 new, 1 returning, 2 other."),
    UciFeature("weekend", "Weekend", "int", "1 on a weekend."),
)


def _convert(f: UciFeature, raw: str) -> float | int:
    if f.column == "Month":
        return MONTHS[raw]
    if f.column == "VisitorType":
        return VISITOR_TYPES[raw]
    if f.column == "Weekend":
        return int(raw == "TRUE")
    return float(raw) if f.dtype == "float" else int(raw)


def load_uci(path: Path = UCI_CSV) -> pa.Table:
    """The UCI sessions as an Arrow table: key, timestamp, features and ``revenue``."""
    body = path.read_bytes()
    digest = hashlib.sha256(body).hexdigest()
    if digest != UCI_SHA256:
        raise ValueError(f"{path}: sha256 {digest} does not match the provenance note")
    rows = list(csv.DictReader(body.decode().splitlines()))
    cols: dict[str, list[object]] = {UCI_KEY: [], "event_timestamp": []}
    for f in UCI_FEATURES:
        cols[f.name] = []
    cols[UCI_LABEL] = []
    for i, row in enumerate(rows):
        cols[UCI_KEY].append(f"uci-{i:05d}")
        month = MONTHS[row["Month"]]
        cols["event_timestamp"].append(datetime(UCI_YEAR, month, 1 + i % 28, i % 24, tzinfo=UTC))
        for f in UCI_FEATURES:
            cols[f.name].append(_convert(f, row[f.column]))
        cols[UCI_LABEL].append(int(row["Revenue"] == "TRUE"))
    types = {"float": pa.float64(), "int": pa.int64()}
    schema = pa.schema(
        [(UCI_KEY, pa.string()), ("event_timestamp", pa.timestamp("us", tz="UTC"))]
        + [(f.name, types[f.dtype]) for f in UCI_FEATURES]
        + [(UCI_LABEL, pa.int64())]
    )
    return pa.Table.from_pydict(cols, schema=schema)


def write_uci_parquet(target: Path) -> Path:
    """Write the UCI table where the feature view's source expects it (idempotent)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        pq.write_table(load_uci(), target)
    return target
