"""Assembling a simulated log: sessions, behaviour and outcomes to events and an oracle."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from events.contract import ARROW_SCHEMA, FIELD_NAMES
from events.synth.behaviour import _cart_values, _dwell, _elements, _Events, _make_events, _scrolls
from events.synth.config import ORACLE_SCHEMA, GeneratorConfig
from events.synth.draws import _rows_choice
from events.synth.outcomes import _apply_outcome, _Outcome, _outcome
from events.synth.sessions import _make_sessions, _schedule, _Sessions, _start_times
from events.synth.world import (
    _BROWSER_MIX,
    _CONSENT,
    BROWSERS,
    DEVICES,
    ELEMENTS,
    PAGE_VIEW,
    PAGES,
    TYPES,
)

# --------------------------------------------------------------------------- assembly


_HEX = np.array([list(f"{i:02x}".encode()) for i in range(256)], dtype=np.uint8)


def _event_keys(seed: int, n_events: int) -> np.ndarray:
    """Unique 64-bit event keys: a bijective mix of (seed, counter)."""
    base = np.uint64((seed * 0x9E3779B1) % 2**24) << np.uint64(40)
    with np.errstate(over="ignore"):
        x = np.arange(n_events, dtype=np.uint64) + (base + np.uint64(0x9E3779B97F4A7C15))
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return np.asarray(x ^ (x >> np.uint64(31)))


def _hex(keys: np.ndarray) -> pa.Array:
    """Keys as 16 lowercase hex digits (so text order is key order)."""
    digits = _HEX[keys.astype(">u8").view(np.uint8).reshape(-1, 8)].reshape(-1, 16)
    return pa.array(np.ascontiguousarray(digits).view("S16").ravel()).cast(pa.string())


def _sort_order(ts: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Indices sorting by ``(ts, keys)``; equal times are rare, so sort those apart."""
    order = np.argsort(ts)
    sorted_ts = ts[order]
    tie = np.zeros(len(ts), dtype=bool)
    same = sorted_ts[1:] == sorted_ts[:-1]
    tie[1:] |= same
    tie[:-1] |= same
    tied = order[tie]
    order[tie] = tied[np.lexsort((keys[tied], ts[tied]))]
    return order


def _labels(names: tuple[str, ...] | list[str], codes: np.ndarray) -> pa.Array:
    """Strings for integer codes; negative codes become nulls."""
    idx = pa.array(np.maximum(codes, 0), mask=codes < 0)
    return pa.array(list(names), type=pa.string()).take(idx)


def _ids(prefix: str, seed: int, count: int) -> list[str]:
    width = max(5, len(str(max(count - 1, 0))))
    return [f"{prefix}-{seed}-{i:0{width}d}" for i in range(count)]


def _timestamps(ms: np.ndarray) -> pa.Array:
    return pa.array(ms.astype(np.int64) * 1000, type=pa.timestamp("us", tz="UTC"))


@dataclass
class _World:
    cfg: GeneratorConfig
    s: _Sessions
    ev: _Events
    out: _Outcome
    start: np.ndarray  # ms from the first midnight
    rank: np.ndarray  # session number, in start order
    consent: np.ndarray
    browser: np.ndarray
    session_ids: pa.Array  # by session number
    user_ids: pa.Array  # by session index, null for anonymous


def _simulate(cfg: GeneratorConfig) -> _World:
    rng = np.random.default_rng(cfg.seed)
    s = _make_sessions(rng, cfg)
    ev = _make_events(rng, s)
    duration = ev.rel_ms[s.offset + s.n - 1]
    start = _schedule(_start_times(rng, cfg), duration, s.user, cfg.days)
    out = _outcome(rng, cfg, s, start)
    ev = _apply_outcome(s, ev, out)
    rank = np.empty(len(start), dtype=np.int64)
    rank[np.lexsort((np.arange(len(start)), start))] = np.arange(len(start))
    consent = rng.random(len(start)) < _CONSENT
    browser = _rows_choice(rng, _BROWSER_MIX, out.device)
    session_ids = pa.array(_ids("s", cfg.seed, len(start)), type=pa.string())
    user_ids = _labels(_ids("u", cfg.seed, s.n_users), s.user)
    return _World(cfg, s, ev, out, start, rank, consent, browser, session_ids, user_ids)


def _events_table(world: _World, rng: np.random.Generator) -> pa.Table:
    cfg, s, ev, out = world.cfg, world.s, world.ev, world.out
    ts = cfg.start_ms + world.start[ev.sess] + ev.rel_ms
    duration = ev.duration.copy()
    duration[ev.etype == PAGE_VIEW] = _dwell(rng, s, ev, ts)
    element = _elements(rng, s, ev)
    depth, velocity = _scrolls(rng, s, ev, out)
    value = _cart_values(rng, s, ev)
    keys = _event_keys(cfg.seed, len(ts))
    order = _sort_order(ts, keys)
    sess = ev.sess[order]
    columns = {
        "event_id": _hex(keys[order]),
        "session_id": world.session_ids.take(pa.array(world.rank[sess])),
        "user_id": world.user_ids.take(pa.array(sess)),
        "ts": _timestamps(ts[order]),
        "event_type": _labels(TYPES, ev.etype[order]),
        "page_type": _labels(PAGES, ev.page[order]),
        "element_id": _labels(ELEMENTS, element[order]),
        "duration_ms": pa.array(duration[order], from_pandas=True),
        "scroll_depth": pa.array(depth[order], from_pandas=True),
        "scroll_velocity": pa.array(velocity[order], from_pandas=True),
        "cart_value": pa.array(value[order], from_pandas=True),
        "device": _labels(DEVICES, out.device[sess]),
        "browser": _labels(BROWSERS, world.browser[sess]),
        "consent": pa.array(world.consent[sess]),
    }
    return pa.Table.from_arrays([columns[n] for n in FIELD_NAMES], schema=ARROW_SCHEMA)


def _oracle_table(world: _World) -> pa.Table:
    cfg, s, out = world.cfg, world.s, world.out
    order = np.argsort(world.rank)
    end = world.start + world.ev.rel_ms[s.offset + s.n - 1]
    p = out.p_abandon[order]
    columns = {
        "session_id": world.session_ids,
        "user_id": world.user_ids.take(pa.array(order)),
        "start_ts": _timestamps(cfg.start_ms + world.start[order]),
        "end_ts": _timestamps(cfg.start_ms + end[order]),
        "day": pa.array(out.day[order], type=pa.int32()),
        "device": _labels(DEVICES, out.device[order]),
        "consent": pa.array(world.consent[order]),
        "intent": pa.array(s.z[order]),
        "hesitation": pa.array(s.h[order]),
        # Its own stream: the draws of every other column are unchanged by it.
        "size_share": pa.array(np.random.default_rng([cfg.seed, 2]).beta(2.0, 2.0, len(order))),
        "added_to_cart": pa.array(s.cart[order]),
        "purchased": pa.array(out.purchased[order]),
        "abandoned": pa.array(out.abandoned[order]),
        "p_abandon": pa.array(p, from_pandas=True),
        "drifted": pa.array(out.drifted[order]),
        "n_events": pa.array(s.n[order], type=pa.int32()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in ORACLE_SCHEMA], schema=ORACLE_SCHEMA)


def generate_events(cfg: GeneratorConfig) -> tuple[pa.Table, pa.Table]:
    """Simulate the sessions of ``cfg`` and return their events and the ground truth.

    Parameters
    ----------
    cfg:
        What to generate; ``bad_rate`` and ``fmt`` are not used here.

    Returns
    -------
    tuple[pyarrow.Table, pyarrow.Table]
        ``(events, oracle)``. ``events`` follows :data:`events.contract.ARROW_SCHEMA`,
        sorted by ``(ts, event_id)``, and holds only valid rows. ``oracle`` has one
        row per session in :data:`ORACLE_SCHEMA`, sorted by ``session_id``
        (which is also start order); ``p_abandon`` is null for sessions without cart.
    """
    world = _simulate(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    return _events_table(world, rng), _oracle_table(world)
