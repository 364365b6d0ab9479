"""Feature values by hand on tiny logs, batch == streaming, and point-in-time rows."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import LATER, T0, event
from hypothesis import given, settings
from hypothesis import strategies as st

from events.contract import EventType, PageType
from events.ingest import ingest_files
from events.raw_store import RawEventStore
from events.validation import validate_rows
from feature_repo.features import SESSION_FOLDS, USER_FOLDS
from features import build_window, session_features
from folds import (
    LogMean,
    LogTerm,
    Match,
    Share,
    fold_one,
    initial_states,
    prepare_events,
    scan,
    state_columns,
)

EPOCH0 = T0.timestamp()


def table(rows: list[dict]) -> pa.Table:
    return validate_rows(rows, now=LATER).to_arrow()


def last_row(rows: list[dict]) -> dict:
    return session_features(table(rows)).to_pylist()[-1]


HAND_LOG = [
    event(at=0, event_type="page_view", page_type="product"),
    event(at=10, event_type="hover", element_id="price", duration_ms=400),
    event(at=20, event_type="hover", element_id="image", duration_ms=1000),
    event(at=30, event_type="scroll", scroll_velocity=800, scroll_depth=0.3),
    event(at=40, event_type="scroll", scroll_velocity=400, scroll_depth=0.6),
    event(at=50, event_type="add_to_cart", cart_value=40),
    event(at=60, event_type="size_guide_open"),
    event(at=70, event_type="remove_from_cart", cart_value=40),
    event(at=80, event_type="page_view", page_type="cart"),
    event(at=85, event_type="add_to_cart", cart_value=25, page_type="cart"),
    event(at=100, event_type="click", page_type="cart", element_id="checkout"),
    event(at=700, event_type="page_view", page_type="product"),
    event(at=1000, event_type="click", page_type="product"),
]


def test_feature_values_match_hand_computation() -> None:
    f = last_row(HAND_LOG)
    assert f["event_count"] == 13
    assert f["page_views"] == 3 and f["product_views"] == 2
    # gaps after product-page events: 10*8 (0..80), then 700->1000 capped at 300 s
    assert f["product_dwell_s"] == 80 + 300
    assert f["hover_count"] == 2 and f["price_hover_count"] == 1
    assert f["hover_ms_ewm"] == 0.3 * 1000 + 0.7 * 400
    assert f["scroll_velocity_ewm"] == 0.3 * 400 + 0.7 * 800
    assert f["max_scroll_depth"] == 0.6
    assert f["cart_adds"] == 2 and f["cart_removes"] == 1
    assert f["cart_value"] == 40 - 40 + 25
    assert f["size_guide_opens"] == 1 and f["click_count"] == 2
    assert f["session_start_ts"] == EPOCH0 and f["last_event_ts"] == EPOCH0 + 1000


def test_hesitation_score_matches_hand_computation() -> None:
    log = [*HAND_LOG, event(at=1010, event_type="image_zoom", duration_ms=2270 * math.e)]
    rows = session_features(table(log)).to_pylist()
    f = rows[-1]
    # hovers of 400 and 1000 ms, scrolls at 800 and 400 px/s, one zoom of e x 2270 ms,
    # standardized by the declared centres and spreads, plus one pseudo-event at 0
    slowness = [
        math.log(400 / 780) / 0.76,
        math.log(1000 / 780) / 0.76,
        math.log(800 / 1320) / -0.61,
        math.log(400 / 1320) / -0.61,
        1 / 0.71,
    ]
    assert f["hesitation_score"] == pytest.approx(sum(slowness) / (len(slowness) + 1), abs=1e-6)
    assert f["hesitation_score__n"] == 5
    # before its first event the shrunk score sits at its centre
    assert rows[0]["hesitation_score"] == 0.0
    assert rows[1]["hesitation_score"] == pytest.approx(math.log(400 / 780) / 0.76 / 2, abs=1e-6)


def test_shares_and_plain_log_means_match_hand_computation() -> None:
    views = Share(
        "product_view_share", "", Match(pages=("product",)), of=Match(types=("page_view",))
    )
    depth = LogMean(
        "log_depth", "", terms=(LogTerm("scroll_depth", Match(types=("scroll",)), floor=0.001),)
    )
    log = [
        ("page_view", "product", np.nan),
        ("scroll", "product", 0.3),
        ("page_view", "search", np.nan),
        ("scroll", "search", 0.0),  # a depth of 0 counts as the floor, 0.001
        ("hover", "product", np.nan),  # neither a page view nor a scroll
    ]
    ev = prepare_events(
        {
            "entity": ["s"] * len(log),
            "ts": np.arange(len(log), dtype=float),
            "event_type": [t for t, _, _ in log],
            "page_type": [p for _, p, _ in log],
            "scroll_depth": np.array([d for _, _, d in log]),
        }
    )
    out = scan([views, depth], ev)
    assert out["product_view_share"].tolist() == [1.0, 1.0, 0.5, 0.5, 0.5]
    assert np.isnan(out["log_depth"][0])
    assert out["log_depth"][1:].tolist() == pytest.approx(
        [math.log(0.3)] * 2 + [(math.log(0.3) + math.log(0.001)) / 2] * 2, abs=1e-6
    )


def test_one_row_per_event_time_and_values_as_of_each_event() -> None:
    rows = session_features(table(HAND_LOG)).to_pylist()
    assert [r["event_timestamp"] for r in rows] == sorted(r["event_timestamp"] for r in rows)
    assert rows[1]["hover_ms_ewm"] == 400  # after the first hover only
    assert np.isnan(rows[0]["hover_ms_ewm"])  # no hover yet
    assert rows[5]["cart_value"] == 40


def test_events_without_consent_feed_no_feature() -> None:
    rows = [event(session="s9", at=i, consent=False) for i in range(3)]
    assert session_features(table(rows)).num_rows == 0


def test_unrelated_sessions_do_not_mix() -> None:
    a = [event(session="a", at=i, event_type="hover", duration_ms=100) for i in range(3)]
    b = [event(session="b", at=i + 0.5, event_type="click") for i in range(2)]
    out = {r["session_id"]: r for r in session_features(table(a + b)).to_pylist()}
    assert out["a"]["hover_count"] == 3 and out["a"]["click_count"] == 0
    assert out["b"]["hover_count"] == 0 and out["b"]["click_count"] == 2


# --- batch scan == streaming fold, on random event sequences ----------------

event_st = st.fixed_dictionaries(
    {
        "entity": st.sampled_from(["s1", "s2", "s3"]),
        "dt": st.floats(0, 400, allow_nan=False),
        "event_type": st.sampled_from([t.value for t in EventType]),
        "page_type": st.sampled_from([p.value for p in PageType]),
        "element_id": st.sampled_from(["price", "image", None]),
        "duration_ms": st.one_of(st.none(), st.floats(0, 1e5, allow_nan=False)),
        "scroll_depth": st.one_of(st.none(), st.floats(0, 1)),
        "scroll_velocity": st.one_of(st.none(), st.floats(0, 5e3, allow_nan=False)),
        "cart_value": st.one_of(st.none(), st.floats(0, 1e4, allow_nan=False)),
    }
)


def _columns(events: list[dict]) -> dict[str, np.ndarray]:
    ts = np.cumsum([e["dt"] for e in events]) + EPOCH0
    cols = {"entity": np.array([e["entity"] for e in events], dtype=object), "ts": ts}
    for k in ("event_type", "page_type", "element_id"):
        cols[k] = np.array([e[k] for e in events], dtype=object)
    for k in ("duration_ms", "scroll_depth", "scroll_velocity", "cart_value"):
        cols[k] = np.array([np.nan if e[k] is None else e[k] for e in events], dtype=float)
    return cols


#: The session folds, plus cases of kinds that they do not exercise fully:
#: a share of all events with an element filter, and a log mean whose terms
#: overlap and filter on pages.
PROPERTY_FOLDS = (
    *SESSION_FOLDS,
    Share("price_share", "", Match(types=("hover",), elements=("price",))),
    LogMean(
        "mixed_log",
        "",
        terms=(
            LogTerm("duration_ms", Match(pages=("product", "cart")), center=50.0, scale=0.3),
            LogTerm("duration_ms", Match(types=("hover",)), scale=-2.0, floor=0.5),
            LogTerm("scroll_depth", floor=1e-3),
        ),
        prior=2.5,
    ),
)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(event_st, min_size=1, max_size=60))
def test_vectorized_scan_equals_step_by_step_folding(events: list[dict]) -> None:
    ev = prepare_events(_columns(events))
    batch = scan(PROPERTY_FOLDS, ev)
    states: dict[str, dict[str, float] | None] = {}
    for i in range(len(ev["entity"])):
        one = {k: v[i] for k, v in ev.items() if k not in ("entity", "entity_names")}
        key = ev["entity"][i]
        states[key] = fold_one(PROPERTY_FOLDS, states.get(key), one)
        for col in state_columns(PROPERTY_FOLDS):
            a, b = batch[col][i], states[key][col]
            assert (np.isnan(a) and np.isnan(b)) or a == b, (col, i, a, b)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(st.lists(event_st, min_size=1, max_size=60), st.floats(0, 1))
def test_a_batch_continued_from_stored_states_equals_the_whole_scan(
    events: list[dict], share: float
) -> None:
    """The stream's batch update: scan each entity's first events, store its last
    state, scan the rest from those states; every row equals the whole scan's."""
    whole = prepare_events(_columns(events))
    expected = scan(PROPERTY_FOLDS, whole)
    cols = state_columns(PROPERTY_FOLDS)
    entity = whole["entity"]
    position = np.arange(len(entity)) - np.searchsorted(entity, entity)  # within entity
    length = np.bincount(entity)[entity]
    early = position < np.floor(share * length)  # each entity cut at its own point
    head = {k: v[early] for k, v in whole.items() if k != "entity_names"}
    tail = {k: v[~early] for k, v in whole.items() if k != "entity_names"}
    stored: list[dict[str, float] | None] = [None] * len(whole["entity_names"])
    first = scan(PROPERTY_FOLDS, head)
    for i, e in enumerate(head["entity"]):
        stored[e] = {c: float(first[c][i]) for c in cols}
    cont = scan(PROPERTY_FOLDS, tail, initial_states(PROPERTY_FOLDS, stored))
    for c in cols:
        assert np.array_equal(cont[c], expected[c][~early], equal_nan=True), c


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.lists(event_st, min_size=1, max_size=60),
    st.randoms(use_true_random=False),
    st.lists(st.booleans(), min_size=60, max_size=60),
)
def test_the_builders_encoding_folds_like_the_reference(
    events: list[dict], rnd: object, kept: list[bool]
) -> None:
    """The builder's path (Arrow dictionaries, masks precomputed, rows selected,
    input in any order) gives the same rows as the plain encoding."""
    cols = _columns(events)
    cols["ts"] = cols["ts"] + np.arange(len(events)) * 1e-3  # distinct times: order is defined
    where = np.array(kept[: len(events)])
    order = list(range(len(events)))
    rnd.shuffle(order)  # type: ignore[attr-defined]
    shuffled = {k: v[order] for k, v in cols.items()}
    arrow = {
        k: pa.array(v.tolist(), pa.string()).dictionary_encode() if v.dtype == object else v
        for k, v in shuffled.items()
    }
    fast = prepare_events(arrow, folds=PROPERTY_FOLDS, where=where[order])
    plain = prepare_events({k: v[where] for k, v in cols.items()})

    def rows(ev: dict[str, np.ndarray]) -> dict[tuple[str, float], list[float]]:
        values = scan(PROPERTY_FOLDS, ev)
        names = [ev["entity_names"][c] for c in ev["entity"]]
        return {
            (name, float(ev["ts"][i])): [values[c][i] for c in state_columns(PROPERTY_FOLDS)]
            for i, name in enumerate(names)
        }

    a, b = rows(fast), rows(plain)
    assert a.keys() == b.keys()
    for key, got in a.items():
        assert np.array_equal(got, b[key], equal_nan=True), key


# --- the builder: point in time, user history, idempotence -----------------


def _ingest(tmp_path: Path, rows: list[dict], name: str) -> RawEventStore:
    src = tmp_path / f"{name}.jsonl"
    src.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    store = RawEventStore(tmp_path / "raw")
    ingest_files([src], store, tmp_path / "q", now=LATER)
    return store


def _rows(root: Path) -> list[dict]:
    """Rows of an offline table, NaN as None so that rows compare equal."""
    files = sorted(root.glob("*.parquet"))
    rows = pa.concat_tables([pq.read_table(f) for f in files]).to_pylist() if files else []
    rows = [
        {k: None if isinstance(v, float) and np.isnan(v) else v for k, v in r.items()} for r in rows
    ]
    return sorted(rows, key=lambda r: (r["event_timestamp"], r.get("session_id", "")))


def test_feature_rows_before_t_do_not_change_when_later_events_arrive(tmp_path: Path) -> None:
    early = [
        event(session="s1", at=i * 30, event_type="hover", duration_ms=100 + i) for i in range(5)
    ]
    store = _ingest(tmp_path, early, "early")
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
    build_window(store, tmp_path / "off", start, end)
    before = _rows(tmp_path / "off" / "session_features")
    later = [
        event(session="s1", at=200 + i * 30, event_type="hover", duration_ms=5000) for i in range(3)
    ]
    _ingest(tmp_path, later, "later")
    build_window(store, tmp_path / "off", start, end)
    after = _rows(tmp_path / "off" / "session_features")
    assert len(after) == len(before) + 3
    assert after[: len(before)] == before


def test_user_history_counts_only_sessions_ended_before(tmp_path: Path) -> None:
    gap = 30 * 60
    s1 = [
        event(session="a", at=0, event_type="add_to_cart", cart_value=10, user_id="u"),
        event(session="a", at=60, event_type="purchase", cart_value=10, user_id="u"),
    ]
    s2 = [event(session="b", at=7200, event_type="add_to_cart", cart_value=10, user_id="u")]
    s3 = [event(session="c", at=14400, event_type="click", user_id="u")]
    store = _ingest(tmp_path, s1 + s2 + s3, "u")
    build_window(store, tmp_path / "off", T0, T0 + timedelta(hours=6))
    users = _rows(tmp_path / "off" / "user_features")
    times = [(r["event_timestamp"] - T0).total_seconds() for r in users]
    assert times == [60 + gap, 7200 + gap, 14400 + gap]
    assert [r["past_sessions"] for r in users] == [1, 2, 3]
    assert [r["past_purchase_rate"] for r in users] == [1.0, 0.5, 1 / 3]
    assert [r["past_abandon_rate"] for r in users] == [0.0, 0.5, 0.5]


def test_a_running_session_gets_no_outcome_before_its_gap_has_passed(tmp_path: Path) -> None:
    store = _ingest(
        tmp_path, [event(session="live", at=0, event_type="add_to_cart", cart_value=10)], "live"
    )
    window = (T0, T0 + timedelta(hours=6))
    build_window(store, tmp_path / "a", *window, now=T0 + timedelta(minutes=10))
    assert _rows(tmp_path / "a" / "session_outcomes") == []
    build_window(store, tmp_path / "b", *window, now=T0 + timedelta(minutes=31))
    assert [r["abandoned"] for r in _rows(tmp_path / "b" / "session_outcomes")] == [1.0]


def test_rebuilding_a_window_gives_identical_files(tmp_path: Path) -> None:
    store = _ingest(tmp_path, HAND_LOG, "hand")
    start, end = T0 - timedelta(hours=1), T0 + timedelta(hours=3)
    build_window(store, tmp_path / "off", start, end)
    first = {p: p.read_bytes() for p in sorted((tmp_path / "off").rglob("*.parquet"))}
    build_window(store, tmp_path / "off", start, end)
    second = {p: p.read_bytes() for p in sorted((tmp_path / "off").rglob("*.parquet"))}
    assert first == second and first


def test_user_folds_are_declared() -> None:
    assert [f.name for f in USER_FOLDS] == [
        "past_sessions",
        "past_purchase_rate",
        "past_abandon_rate",
    ]
