"""Tests of the synthetic event-log generator: contract, determinism, ground truth, drift."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from events.contract import ARROW_SCHEMA
from events.synth import (
    BAD_KINDS,
    BASELINE,
    DRIFTED,
    ORACLE_SCHEMA,
    GeneratorConfig,
    generate_events,
    write_event_log,
)
from events.synth.world import MAX_EVENTS, MAX_SESSION_MS
from events.validation import validate_rows

NOW = datetime(2030, 1, 1, tzinfo=UTC)
SMALL = GeneratorConfig(sessions=2_000, days=4, seed=3)
LOGGED = GeneratorConfig(sessions=600, days=3, seed=11, bad_rate=0.02)

#: Every rejection the bad rows must provoke (reason classes of the contract).
EXPECTED_REASONS = {
    "session_id: missing required field",
    "ts: missing required field",
    "duration_ms: expected a number",
    "consent: expected true or false",
    "event_type: unknown event type",
    "duration_ms: must not be negative",
    "scroll_depth: outside [0, 1]",
    "ts: more than 5 minutes in the future",
    "element_id: string too long",
    "event_id: string too long",
}


def auc(score: np.ndarray, label: np.ndarray) -> float:
    """Area under the ROC curve from ranks (ties get their mean rank)."""
    ranks = pd.Series(score).rank().to_numpy()
    pos = label.astype(bool)
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def read_rows(files: list[Path]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for path in files:
        if path.suffix == ".jsonl":
            rows += [orjson.loads(line) for line in path.read_bytes().splitlines()]
        else:
            rows += pq.read_table(path).to_pylist()
    return rows


def digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def small() -> tuple[pd.DataFrame, pd.DataFrame, pa.Table]:
    events, oracle = generate_events(SMALL)
    return events.to_pandas(), oracle.to_pandas(), events


@pytest.fixture(scope="module")
def drift() -> tuple[pd.DataFrame, pd.DataFrame]:
    events, oracle = generate_events(GeneratorConfig(sessions=3_000, days=4, seed=5, drift_day=2))
    return events.to_pandas(), oracle.to_pandas()


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_same_config_gives_identical_bytes(tmp_path: Path, fmt: str) -> None:
    cfg = replace(LOGGED, fmt=fmt)
    write_event_log(cfg, tmp_path / "a")
    write_event_log(cfg, tmp_path / "b")
    first, second = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert first == second
    assert "oracle.parquet" in first
    other = write_event_log(replace(cfg, seed=12), tmp_path / "c")
    assert digest(tmp_path / "c") != first
    assert other.events > 0


def test_different_seeds_have_different_ids() -> None:
    a, _ = generate_events(GeneratorConfig(sessions=300, days=2, seed=1))
    b, _ = generate_events(GeneratorConfig(sessions=300, days=2, seed=2))
    assert not set(a.column("event_id").to_pylist()) & set(b.column("event_id").to_pylist())
    assert not set(a.column("session_id").to_pylist()) & set(b.column("session_id").to_pylist())


def test_rewrite_replaces_earlier_day_files(tmp_path: Path) -> None:
    write_event_log(GeneratorConfig(sessions=100, days=3, seed=1), tmp_path)
    log = write_event_log(GeneratorConfig(sessions=100, days=2, seed=1, fmt="parquet"), tmp_path)
    assert sorted((tmp_path / "events").iterdir()) == log.files


# --------------------------------------------------------------------------- contract


def test_events_follow_the_contract(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    frame, oracle, table = small
    assert table.schema.equals(ARROW_SCHEMA)
    assert frame["event_id"].is_unique
    keys = list(zip(frame["ts"], frame["event_id"], strict=True))
    assert keys == sorted(keys)
    result = validate_rows(table.to_pylist(), now=NOW)
    assert result.rejected == []
    assert result.accepted_count == table.num_rows
    assert set(frame["session_id"]) == set(oracle["session_id"])
    assert frame["page_type"].notna().all()


def test_measurements_only_where_the_type_has_them(
    small: tuple[pd.DataFrame, pd.DataFrame, pa.Table],
) -> None:
    frame = small[0]
    kinds = {
        "duration_ms": {"page_view", "hover", "image_zoom"},
        "scroll_depth": {"scroll"},
        "scroll_velocity": {"scroll"},
        "cart_value": {"add_to_cart", "remove_from_cart", "purchase"},
    }
    for column, types in kinds.items():
        has = frame[column].notna()
        assert set(frame.loc[has, "event_type"]) == types, column
        assert frame.loc[frame["event_type"].isin(types), column].notna().all(), column
    assert (frame["cart_value"].dropna() > 0).all()
    assert frame["scroll_depth"].dropna().between(0, 1).all()
    hovers = frame[frame["event_type"] == "hover"]
    assert hovers["element_id"].notna().all()
    assert (hovers["element_id"] == "price").mean() > 0.1


def test_written_jsonl_and_parquet_parse_to_the_same_rows(tmp_path: Path) -> None:
    cfg = GeneratorConfig(sessions=400, days=2, seed=4)
    jsonl = write_event_log(cfg, tmp_path / "j")
    parquet = write_event_log(replace(cfg, fmt="parquet"), tmp_path / "p")
    assert [p.name for p in jsonl.files] == ["2026-06-01.jsonl", "2026-06-02.jsonl"]
    first = jsonl.files[0].read_bytes().splitlines()[0]
    assert orjson.loads(first)["ts"].endswith("Z")
    assert len(orjson.loads(first)["ts"]) == len("2026-06-01T18:02:03.123Z")
    a = validate_rows(read_rows(jsonl.files), now=NOW)
    b = validate_rows(read_rows(parquet.files), now=NOW)
    assert a.rejected == b.rejected == []
    assert a.to_arrow().equals(b.to_arrow())
    assert a.to_arrow().equals(generate_events(cfg)[0])
    assert pq.read_schema(parquet.files[0]).equals(ARROW_SCHEMA)
    assert pq.read_table(jsonl.oracle_path).schema.equals(ORACLE_SCHEMA)


def test_rows_land_in_the_file_of_their_day(tmp_path: Path) -> None:
    log = write_event_log(GeneratorConfig(sessions=500, days=3, seed=8), tmp_path)
    assert log.events == sum(len(p.read_bytes().splitlines()) for p in log.files)
    for path in log.files:
        days = {orjson.loads(line)["ts"][:10] for line in path.read_bytes().splitlines()}
        assert days == {path.name[:10]}


# --------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize("fmt", ["jsonl", "parquet"])
def test_bad_rows_are_rejected_for_every_reason(tmp_path: Path, fmt: str) -> None:
    seen: list[tuple[int, int]] = []
    log = write_event_log(
        replace(LOGGED, fmt=fmt), tmp_path, progress=lambda d, t: seen.append((d, t))
    )
    rows = read_rows(log.files)
    total = log.events + log.bad_rows + log.duplicates
    assert len(rows) == total
    assert seen[0] == (0, total) and seen[-1] == (total, total) and len(seen) == LOGGED.days + 1
    assert log.bad_rows >= 0.02 * log.events * 0.9
    assert log.duplicates >= 0.01 * log.events * 0.9
    result = validate_rows(rows, now=NOW)
    assert len(result.rejected) == log.bad_rows
    reasons = set(result.reasons())
    assert all(any(r.startswith(e) for r in reasons) for e in EXPECTED_REASONS)
    assert reasons == {k.reason for k in BAD_KINDS}
    ids = pd.Series(result.columns["event_id"])
    assert ids.duplicated().sum() == log.duplicates
    assert ids.nunique() == log.events
    # Bad rows are spread over the days.
    per_file = [validate_rows(read_rows([p]), now=NOW).rejected for p in log.files]
    assert sum(1 for r in per_file if r) >= LOGGED.days


def test_parquet_sidecar_holds_only_wrongly_typed_rows(tmp_path: Path) -> None:
    log = write_event_log(replace(LOGGED, fmt="parquet"), tmp_path)
    sidecars = [p for p in log.files if p.name.endswith(".badtypes.jsonl")]
    assert sidecars
    rejected = validate_rows(read_rows(sidecars), now=NOW)
    assert rejected.accepted_count == 0
    wrong_types = {k.reason for k in BAD_KINDS if not k.parquet}
    assert set(rejected.reasons()) == wrong_types
    in_parquet = validate_rows(read_rows([p for p in log.files if p.suffix == ".parquet"]), now=NOW)
    assert {k.reason for k in BAD_KINDS if k.parquet} == set(in_parquet.reasons())


def test_duplicates_are_exact_copies(tmp_path: Path) -> None:
    log = write_event_log(LOGGED, tmp_path)
    lines = [line for p in log.files for line in p.read_bytes().splitlines()]
    counts = pd.Series(lines).value_counts()
    assert (counts > 1).sum() == log.duplicates


# --------------------------------------------------------------------------- ground truth


def test_every_cart_session_purchases_or_abandons(
    small: tuple[pd.DataFrame, pd.DataFrame, pa.Table],
) -> None:
    frame, oracle, _ = small
    per = frame.groupby("session_id", sort=False)
    types = per["event_type"].agg(set)
    last = per["event_type"].last()
    o = oracle.set_index("session_id")
    adds = types.map(lambda t: "add_to_cart" in t)
    bought = types.map(lambda t: "purchase" in t)
    checkout = types.map(lambda t: "checkout_start" in t)
    assert (adds == o["added_to_cart"].reindex(adds.index)).all()
    assert (bought == o["purchased"].reindex(bought.index)).all()
    assert (o["added_to_cart"] == (o["purchased"] ^ o["abandoned"])).all()
    assert not (o["purchased"] & o["abandoned"]).any()
    assert (last[bought] == "purchase").all()
    assert not (checkout & ~adds).any()
    assert (
        frame.groupby("session_id")["event_type"].apply(lambda s: (s == "purchase").sum()) <= 1
    ).all()
    assert o["p_abandon"].isna().eq(~o["added_to_cart"]).all()
    assert per.size().reindex(o.index).eq(o["n_events"]).all()
    assert per["ts"].min().reindex(o.index).eq(o["start_ts"]).all()
    assert per["ts"].max().reindex(o.index).eq(o["end_ts"]).all()


def test_purchase_total_matches_the_cart(
    small: tuple[pd.DataFrame, pd.DataFrame, pa.Table],
) -> None:
    frame = small[0]
    signed = frame["cart_value"].where(
        frame["event_type"] != "remove_from_cart", -frame["cart_value"]
    )
    cart = signed.where(frame["event_type"].isin(["add_to_cart", "remove_from_cart"]), 0.0)
    total = cart.groupby(frame["session_id"]).sum()
    bought = frame[frame["event_type"] == "purchase"].set_index("session_id")["cart_value"]
    assert np.allclose(bought, total.reindex(bought.index), atol=0.011)
    # A remove never empties a cart below zero items.
    step = frame["event_type"].map({"add_to_cart": 1, "remove_from_cart": -1}).fillna(0)
    assert (step.groupby(frame["session_id"]).cumsum() >= 0).all()


def test_outcome_follows_the_latents(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    oracle = small[1]
    cart = oracle[oracle["added_to_cart"]]
    assert cart["p_abandon"].corr(cart["hesitation"]) > 0.4
    assert cart["p_abandon"].corr(cart["intent"]) < -0.2
    assert 0.55 <= cart["abandoned"].mean() <= 0.75
    assert 0.75 <= auc(cart["p_abandon"].to_numpy(), cart["abandoned"].to_numpy()) <= 0.9
    assert 0.2 <= oracle["added_to_cart"].mean() <= 0.45
    # Intent drives adding to cart.
    assert oracle.groupby("added_to_cart")["intent"].mean().diff().iloc[-1] > 0.5


def session_features(frame: pd.DataFrame) -> pd.DataFrame:
    """Simple per-session aggregates, leaving out the outcome events."""
    frame = frame[~frame["event_type"].isin(["checkout_start", "purchase"])]
    per = frame.groupby("session_id")
    counts = pd.crosstab(frame["session_id"], frame["event_type"])
    feats = counts.div(counts.sum(axis=1), axis=0).add_prefix("share_")
    feats["n"] = np.log(counts.sum(axis=1))
    hover = frame[frame["event_type"] == "hover"]
    feats["hover"] = np.log(hover["duration_ms"]).groupby(hover["session_id"]).mean()
    scroll = frame[frame["event_type"] == "scroll"]
    feats["velocity"] = np.log(scroll["scroll_velocity"]).groupby(scroll["session_id"]).mean()
    feats["depth"] = scroll["scroll_depth"].groupby(scroll["session_id"]).mean()
    views = frame[frame["event_type"] == "page_view"]
    feats["product"] = (views["page_type"] == "product").groupby(views["session_id"]).mean()
    feats["removes"] = counts.get("remove_from_cart", 0)
    feats["gap"] = np.log((per["ts"].max() - per["ts"].min()).dt.total_seconds() + 1) - feats["n"]
    return feats.fillna(feats.median())


def test_behaviour_reveals_the_latents(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    frame, oracle, _ = small
    feats = session_features(frame).join(oracle.set_index("session_id"))
    assert feats["hover"].corr(feats["hesitation"]) > 0.5
    assert feats["velocity"].corr(feats["hesitation"]) < -0.5
    assert feats["product"].corr(feats["intent"]) > 0.3
    assert feats["share_size_guide_open"].corr(feats["hesitation"]) > 0.2


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """Weights of a ridge logistic regression (Newton steps); column 0 of ``x`` is 1."""
    w = np.zeros(x.shape[1])
    for _ in range(30):
        p = 1 / (1 + np.exp(-x @ w))
        hessian = x.T @ (x * (p * (1 - p))[:, None]) + ridge * np.eye(len(w))
        w -= np.linalg.solve(hessian, x.T @ (p - y) + ridge * w)
    return w


def test_a_simple_model_gets_close_to_the_oracle() -> None:
    events, oracle = generate_events(GeneratorConfig(sessions=6_000, days=7, seed=21))
    o = oracle.to_pandas().set_index("session_id")
    data = session_features(events.to_pandas()).join(o)
    data = data[data["added_to_cart"]]
    x = data.drop(columns=[c for c in o.columns if c in data.columns]).to_numpy(dtype=float)
    x = np.column_stack([np.ones(len(x)), (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)])
    y = data["abandoned"].to_numpy(dtype=float)
    train = np.arange(len(y)) % 2 == 0
    w = fit_logistic(x[train], y[train])
    test = ~train
    model_auc = auc(x[test] @ w, y[test])
    oracle_auc = auc(data["p_abandon"].to_numpy()[test], y[test])
    assert model_auc > oracle_auc - 0.06


# --------------------------------------------------------------------------- drift


def test_drift_shifts_devices_scrolling_and_the_concept(
    drift: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    frame, oracle = drift
    assert (oracle["drifted"] == (oracle["day"] >= 2)).all()
    before, after = oracle[~oracle["drifted"]], oracle[oracle["drifted"]]
    mobile = [(o["device"] == "mobile").mean() for o in (before, after)]
    assert mobile[0] < 0.65 and mobile[1] > 0.72
    drifted = frame["session_id"].map(oracle.set_index("session_id")["drifted"])
    velocity = frame["scroll_velocity"].groupby(drifted).median()
    assert velocity[True] > 1.4 * velocity[False]
    cb, ca = before[before["added_to_cart"]], after[after["added_to_cart"]]
    assert cb["hesitation"].corr(cb["p_abandon"]) > 0.3
    assert ca["hesitation"].corr(ca["p_abandon"]) < -0.1
    assert ca["hesitation"].corr(ca["abandoned"]) < cb["hesitation"].corr(cb["abandoned"]) - 0.2
    assert abs(ca["abandoned"].mean() - cb["abandoned"].mean()) < 0.08
    assert DRIFTED.a2 < 0 < BASELINE.a2
    assert DRIFTED.velocity_scale > BASELINE.velocity_scale
    assert DRIFTED.device_mix[1] > BASELINE.device_mix[1]


def test_no_drift_without_drift_day(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    assert not small[1]["drifted"].any()


# --------------------------------------------------------------------------- realism


def test_users_sessions_and_timing(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    frame, oracle, _ = small
    assert 0.25 <= oracle["user_id"].isna().mean() <= 0.35
    per_user = oracle["user_id"].value_counts()
    assert (per_user > 1).mean() > 0.3
    assert per_user.max() >= 5
    assert abs(len(per_user) - SMALL.sessions / 3) < SMALL.sessions * 0.05
    signed = oracle.dropna(subset=["user_id"]).sort_values(["user_id", "start_ts"])
    next_start = signed.groupby("user_id")["start_ts"].shift(-1)
    assert (next_start.dropna() > signed.loc[next_start.notna(), "end_ts"]).all()
    lengths = oracle["n_events"]
    assert lengths.median() < lengths.mean()
    assert 15 <= lengths.median() <= 35 and lengths.max() <= MAX_EVENTS
    seconds = (oracle["end_ts"] - oracle["start_ts"]).dt.total_seconds()
    assert seconds.max() <= MAX_SESSION_MS / 1000 and 60 < seconds.median() < 900
    start = pd.Timestamp(SMALL.start, tz="UTC")
    assert frame["ts"].min() >= start
    assert frame["ts"].max() < start + pd.Timedelta(days=SMALL.days)
    hours = oracle["start_ts"].dt.hour
    assert (hours.between(18, 22)).mean() > 2 * (hours.between(1, 5)).mean()


def test_devices_browsers_and_consent(small: tuple[pd.DataFrame, pd.DataFrame, pa.Table]) -> None:
    frame, oracle, _ = small
    share = oracle["device"].value_counts(normalize=True)
    assert 0.48 < share["mobile"] < 0.62 and 0.3 < share["desktop"] < 0.46
    assert 0.03 < share["tablet"] < 0.12
    assert 0.86 <= oracle["consent"].mean() <= 0.94
    per = frame.groupby("session_id")
    assert (per["consent"].nunique() == 1).all()
    assert (per["device"].nunique() == 1).all()
    assert (per["browser"].nunique() == 1).all()
    assert "edge" not in set(frame.loc[frame["device"] == "mobile", "browser"])


def test_config_is_checked() -> None:
    with pytest.raises(ValueError):
        GeneratorConfig(sessions=0)
    with pytest.raises(ValueError):
        GeneratorConfig(bad_rate=1.5)


def test_tiny_logs_work(tmp_path: Path) -> None:
    for sessions in (1, 2, 7):
        events, oracle = generate_events(GeneratorConfig(sessions=sessions, days=1, seed=sessions))
        assert oracle.num_rows == sessions
        assert validate_rows(events.to_pylist(), now=NOW).rejected == []
    log = write_event_log(GeneratorConfig(sessions=3, days=2, bad_rate=0.5), tmp_path)
    assert log.bad_rows >= len(BAD_KINDS)
