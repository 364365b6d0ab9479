"""Deterministic synthetic micro-behaviour event logs, with the ground truth behind them.

The generator simulates shoppers. Every session has two hidden traits: an intent
``z`` (how much the visitor wants to buy; correlated with a persistent per-user
trait) and a hesitation ``h``. Both shape what the visitor does (page views,
hovers, scrolls, zooms, size-guide opens, cart adds and removes) *and* whether a
session that added to cart ends in a purchase or is abandoned. The true
abandonment probability of every cart session is kept in an oracle table, so a
model trained on the events can be scored against the best achievable result.

Everything is drawn from :func:`numpy.random.default_rng` seeded by
:attr:`GeneratorConfig.seed` and computed column-wise, so the same configuration
always yields the same bytes, and a million events take a few seconds.

Notes
-----
The simulated world, in the order it is drawn:

* **Users.** About ``sessions / 3`` signed-in users share ~70 % of the sessions:
  one each, the rest by lognormal weights (heavy-tailed; several sessions per
  user are common). Each user has a trait ``u ~ N(0, 1)``; the other ~30 % of
  sessions are anonymous (``user_id`` null).
* **Latents.** ``intent = 0.7 u + sqrt(1 - 0.49) e`` (``e ~ N(0, 1)``; anonymous:
  ``e - 0.25``) and ``hesitation ~ N(0, 1)``.
* **Behaviour.** Session length is lognormal (median ~25 events, at most 400).
  Hesitation lengthens hovers (and makes them land on ``"price"``), zooms and the
  gaps between events, slows scrolling, and adds hovers, zooms, size-guide opens
  and cart removes. Intent adds product page views, clicks, zooms, searches,
  deeper scrolls, longer sessions and further cart adds.
* **Outcome.** A session adds to cart with probability ``sigmoid(-0.9 + 1.1 intent)``
  (never before its 8th event). A cart session abandons with probability
  ``Regime.logit`` through a sigmoid, ``b0 - a1 intent + a2 hesitation`` plus a
  small device term (:data:`DEVICE_EFFECT`); otherwise it ends in
  ``checkout_start`` and ``purchase`` (the last event, ``cart_value`` = order
  total). A quarter of the abandoners reach ``checkout_start`` first; the others
  just stop.
* **Time.** Starts follow a weekday and hour-of-day profile (evening peak). A
  user's sessions are moved apart so they never overlap (30 min gap at least);
  no session lasts over 3 h and all end before the last day does.
* **Drift.** Sessions starting on day ``drift_day`` or later follow
  :data:`DRIFTED` instead of :data:`BASELINE`: 80 % mobile, scrolls 1.6x
  faster, and hesitation lowers abandonment instead of raising it, at about the
  same abandonment rate.

Examples
--------
>>> from flows.contract import ARROW_SCHEMA
>>> events, oracle = generate_events(GeneratorConfig(sessions=40, days=2, seed=7))
>>> events.schema.equals(ARROW_SCHEMA)
True
>>> oracle.num_rows, len(set(oracle.column("session_id").to_pylist()))
(40, 40)
>>> events.num_rows == sum(oracle.column("n_events").to_pylist())
True
>>> outcome = oracle.select(["added_to_cart", "purchased", "abandoned"]).to_pylist()
>>> all(r["added_to_cart"] == (r["purchased"] or r["abandoned"]) for r in outcome)
True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from flows.contract import ARROW_SCHEMA, FIELD_NAMES, Device, EventType, PageType

__all__ = [
    "BAD_KINDS",
    "BASELINE",
    "CONCEPT_DRIFTED",
    "DEVICE_EFFECT",
    "DRIFTED",
    "ORACLE_SCHEMA",
    "RELAXED_SCHEMA",
    "BadKind",
    "GeneratedLog",
    "GeneratorConfig",
    "Regime",
    "generate_events",
    "write_event_log",
]

# --------------------------------------------------------------------------- constants

DAY_MS = 86_400_000
#: No session lasts longer than this.
MAX_SESSION_MS = 3 * 3_600_000
#: Two sessions of the same user are at least this far apart (the usual sessionization gap).
MIN_SESSION_GAP_MS = 30 * 60_000
#: Longest session, in events.
MAX_EVENTS = 400
#: A user has at most this many sessions per day of the log.
MAX_SESSIONS_PER_USER_DAY = 6

TYPES: tuple[str, ...] = tuple(t.value for t in EventType)
PAGES: tuple[str, ...] = tuple(p.value for p in PageType)
DEVICES: tuple[str, ...] = tuple(d.value for d in Device)
BROWSERS: tuple[str, ...] = ("chrome", "safari", "edge", "firefox", "samsung_internet", "opera")

# Integer codes of event types and page types in the generator's arrays.
_T = {t: i for i, t in enumerate(EventType)}
PAGE_VIEW, HOVER, SCROLL = _T[EventType.PAGE_VIEW], _T[EventType.HOVER], _T[EventType.SCROLL]
CLICK, ZOOM, SEARCH = _T[EventType.CLICK], _T[EventType.IMAGE_ZOOM], _T[EventType.SEARCH]
SIZE_GUIDE = _T[EventType.SIZE_GUIDE_OPEN]
ADD, REMOVE = _T[EventType.ADD_TO_CART], _T[EventType.REMOVE_FROM_CART]
CHECKOUT, PURCHASE = _T[EventType.CHECKOUT_START], _T[EventType.PURCHASE]

_P = {p: i for i, p in enumerate(PageType)}
HOME, CATEGORY, PRODUCT = _P[PageType.HOME], _P[PageType.CATEGORY], _P[PageType.PRODUCT]
SEARCH_PAGE, CART_PAGE, CHECKOUT_PAGE = (
    _P[PageType.SEARCH],
    _P[PageType.CART],
    _P[PageType.CHECKOUT],
)

_NO = -np.inf


@dataclass(frozen=True)
class Regime:
    """Constants of one regime of the simulated world (before or after drift).

    Attributes
    ----------
    device_mix:
        Probabilities of ``desktop``, ``mobile``, ``tablet`` (the order of :data:`DEVICES`).
    velocity_scale:
        Multiplier of every ``scroll_velocity``.
    b0, a1, a2:
        The true abandonment probability of a cart session is
        ``sigmoid(b0 - a1 * intent + a2 * hesitation + DEVICE_EFFECT[device])``.
    """

    device_mix: tuple[float, float, float]
    velocity_scale: float
    b0: float
    a1: float
    a2: float

    def logit(self, intent: np.ndarray, hesitation: np.ndarray, device: np.ndarray) -> np.ndarray:
        """True abandonment log-odds for sessions with these latents and device codes."""
        effect = np.asarray(DEVICE_EFFECT)[device]
        return self.b0 - self.a1 * intent + self.a2 * hesitation + effect


#: Additive abandonment log-odds by device (desktop, mobile, tablet).
DEVICE_EFFECT: tuple[float, float, float] = (0.0, 0.25, 0.1)
#: The world before drift.
BASELINE = Regime(device_mix=(0.38, 0.55, 0.07), velocity_scale=1.0, b0=1.35, a1=0.9, a2=1.35)
#: The world from ``drift_day`` on: mostly mobile, faster scrolling, and hesitation no
#: longer predicts abandonment the same way (its effect flips sign).
DRIFTED = Regime(device_mix=(0.15, 0.80, 0.05), velocity_scale=1.6, b0=1.2, a1=0.9, a2=-0.675)
#: Concept drift only: behaviour (devices, scrolling) as in :data:`BASELINE`, the
#: abandonment link as in :data:`DRIFTED`.
CONCEPT_DRIFTED = Regime(
    device_mix=BASELINE.device_mix,
    velocity_scale=BASELINE.velocity_scale,
    b0=DRIFTED.b0,
    a1=DRIFTED.a1,
    a2=DRIFTED.a2,
)

# Latent structure.
_RHO_USER = 0.7  # correlation of session intent with the user's trait
_ANON_INTENT = -0.25  # anonymous visitors buy a little less
_CART_B = (-0.9, 1.1)  # add-to-cart log-odds: b0 + b1 * intent
_CHECKOUT_ABANDON = 0.25  # share of abandoners who reach checkout_start
_CONSENT = 0.9

# Session length: lognormal events, median ~25.
_LEN_MU, _LEN_Z, _LEN_H, _LEN_SIGMA = math.log(25.0), 0.45, 0.1, 0.75
_CART_MIN_EVENTS = 14
_FIRST_ADD_MIN = 8

# Hour-of-day weights (UTC taken as local time): quiet nights, evening peak.
_HOURLY = np.array(
    [0.6, 0.4, 0.3, 0.25, 0.25, 0.35, 0.6, 0.9, 1.1, 1.2, 1.3, 1.35,
     1.5, 1.4, 1.3, 1.3, 1.4, 1.6, 1.9, 2.2, 2.4, 2.3, 1.8, 1.1]
)  # fmt: skip
_WEEKDAY = np.array([1.0, 1.0, 1.0, 1.0, 0.95, 1.1, 1.15])

# Page-view page types: landing page, and later page views (before intent terms).
_LANDING = np.array([0.6, 0.4, 0.3, -0.3, _NO, _NO, -3.0, -2.5])
_NEXT_PAGE = np.array([-0.3, 0.6, 0.9, -0.1, -2.2, _NO, -2.5, -2.8])
_PV_B = (-1.55, 0.25)  # page-view share log-odds: b0 + b1 * intent

# Non-page-view event types by page: hover, scroll, click, image_zoom, size_guide, search.
_BROWSE_TYPES = np.array([HOVER, SCROLL, CLICK, ZOOM, SIZE_GUIDE, SEARCH], dtype=np.int8)
_BROWSE_LOGITS = np.array(
    [
        [0.3, 1.0, 0.6, _NO, _NO, -0.2],  # home
        [0.6, 1.0, 0.7, _NO, _NO, -1.0],  # category
        [0.9, 0.8, 0.4, -0.4, -1.6, -2.5],  # product
        [0.4, 0.8, 0.7, _NO, _NO, 0.3],  # search
        [0.0, 0.3, 0.8, _NO, _NO, -2.5],  # cart
        [-0.5, 0.2, 0.8, _NO, _NO, _NO],  # checkout
        [-0.5, 0.5, 0.8, _NO, _NO, _NO],  # account
        [-0.5, 1.0, 0.5, _NO, _NO, -1.5],  # other
    ]
)
# Per-session shifts of those logits: columns times (hesitation, intent).
_BROWSE_H = np.array([0.4, 0.0, 0.0, 0.8, 1.0, 0.0])
_BROWSE_Z = np.array([-0.3, 0.0, 0.5, 0.5, 0.0, 0.3])
_ADD_B = (-2.8, 0.8)  # extra add_to_cart after the first: b0 + b1 * intent
_REMOVE_B = (-2.4, 1.1)  # remove_from_cart: b0 + b1 * hesitation

# Timing (ms).
_GAP_MU, _GAP_H, _GAP_SIGMA, _GAP_MIN, _GAP_MAX = math.log(5000.0), 0.4, 0.85, 150, 180_000
_HOVER_MU, _HOVER_H, _HOVER_SIGMA = math.log(650.0), 0.6, 0.5
_ZOOM_MU, _ZOOM_H, _ZOOM_SIGMA = math.log(1800.0), 0.4, 0.6
_GAP_Z = 0.2  # engaged visitors linger a little longer, too
_LAST_DWELL_MU, _LAST_DWELL_SIGMA = math.log(6000.0), 0.7
_CHECKOUT_GAP_MU, _PURCHASE_GAP_MU = math.log(8000.0), math.log(45_000.0)

# Scrolling: velocity px/s lognormal, slower with hesitation; depth ~ Beta.
_VEL_MU, _VEL_H, _VEL_SIGMA = math.log(1100.0), -0.5, 0.35
_VEL_DEVICE = np.log(np.array([1.0, 1.3, 1.15]))
_PRICE_MU, _PRICE_SIGMA, _PRICE_MIN = math.log(39.0), 0.7, 1.99

_BROWSER_MIX = np.array(
    [
        [0.62, 0.10, 0.14, 0.10, 0.00, 0.04],  # desktop
        [0.42, 0.50, 0.00, 0.01, 0.06, 0.01],  # mobile
        [0.30, 0.64, 0.02, 0.01, 0.03, 0.00],  # tablet
    ]
)

# Element ids, and the ones hovered / clicked on each page type (PAGES order).
ELEMENTS: tuple[str, ...] = (
    "price", "image", "title", "reviews", "description", "size_selector", "product_card",
    "nav", "banner", "filter", "sort", "search_result", "thumbnail", "color_swatch",
    "cart_item", "continue_shopping", "promo_code", "account_menu", "footer_link",
    "product_image", "size_guide", "search_box",
)  # fmt: skip
_E = {e: i for i, e in enumerate(ELEMENTS)}
_HOVER_ELEMENTS = (
    ("banner", "nav", "product_card"),
    ("product_card", "filter", "sort"),
    ("image", "title", "reviews", "description", "size_selector"),
    ("search_result", "filter"),
    ("cart_item", "promo_code"),
    ("promo_code", "continue_shopping"),
    ("account_menu", "nav"),
    ("footer_link", "nav"),
)
_CLICK_ELEMENTS = (
    ("banner", "product_card", "nav"),
    ("product_card", "filter", "sort", "nav"),
    ("thumbnail", "color_swatch", "size_selector", "reviews"),
    ("search_result", "filter"),
    ("cart_item", "continue_shopping", "promo_code"),
    ("promo_code", "continue_shopping"),
    ("account_menu", "nav"),
    ("footer_link", "nav"),
)
_PRICE_HOVER_B = (-1.0, 0.8)  # on product pages: b0 + b1 * hesitation; elsewhere b0 - 1

# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class GeneratorConfig:
    """What to generate.

    Parameters
    ----------
    sessions:
        Number of sessions (visits).
    days:
        Number of days the sessions are spread over.
    seed:
        Seed of every random draw; equal configurations give identical output.
    start:
        First day (UTC midnight).
    drift_day:
        0-based day index from which sessions follow :data:`DRIFTED` instead of
        :data:`BASELINE`; ``None`` for no drift.
    drift_kind:
        ``"full"`` (behaviour and link drift, :data:`DRIFTED`) or ``"concept"``
        (only the link drifts, :data:`CONCEPT_DRIFTED`).
    bad_rate:
        Invalid rows to mix into written files, as a fraction of the events; half as
        many exact duplicates of valid rows are added too. Ignored by
        :func:`generate_events`.
    fmt:
        File format written by :func:`write_event_log`.
    """

    sessions: int = 20_000
    days: int = 7
    seed: int = 0
    start: date = date(2026, 6, 1)
    drift_day: int | None = None
    drift_kind: Literal["full", "concept"] = "full"
    bad_rate: float = 0.0
    fmt: Literal["jsonl", "parquet"] = "jsonl"

    def __post_init__(self) -> None:
        if self.sessions < 1:
            raise ValueError("sessions must be at least 1")
        if self.days < 1:
            raise ValueError("days must be at least 1")
        if self.drift_day is not None and self.drift_day < 0:
            raise ValueError("drift_day must not be negative")
        if self.drift_kind not in ("full", "concept"):
            raise ValueError(f"unknown drift kind {self.drift_kind!r}")
        if not 0.0 <= self.bad_rate <= 1.0:
            raise ValueError("bad_rate must be in [0, 1]")
        if self.fmt not in ("jsonl", "parquet"):
            raise ValueError(f"unknown format {self.fmt!r}")

    @property
    def drifted_regime(self) -> Regime:
        """The regime sessions follow from ``drift_day`` on."""
        return CONCEPT_DRIFTED if self.drift_kind == "concept" else DRIFTED

    @property
    def start_ms(self) -> int:
        """Epoch milliseconds of the first day's UTC midnight."""
        start = datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)
        return int(start.timestamp()) * 1000


@dataclass(frozen=True)
class GeneratedLog:
    """Summary of a written event log.

    Attributes
    ----------
    files:
        Event files written, in name order (day files and any ``.badtypes.jsonl`` sidecars).
    oracle_path:
        The per-session ground truth (Parquet, schema :data:`ORACLE_SCHEMA`).
    events:
        Valid, distinct events written.
    sessions, users:
        Sessions and distinct signed-in users.
    bad_rows:
        Invalid rows mixed in.
    duplicates:
        Exact copies of valid rows mixed in.
    """

    files: list[Path]
    oracle_path: Path
    events: int
    sessions: int
    users: int
    bad_rows: int
    duplicates: int


#: Schema of the oracle table: one row per session.
ORACLE_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), False),
        pa.field("user_id", pa.string()),
        pa.field("start_ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("end_ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("day", pa.int32(), False),
        pa.field("device", pa.string(), False),
        pa.field("consent", pa.bool_(), False),
        pa.field("intent", pa.float64(), False),
        pa.field("hesitation", pa.float64(), False),
        pa.field("added_to_cart", pa.bool_(), False),
        pa.field("purchased", pa.bool_(), False),
        pa.field("abandoned", pa.bool_(), False),
        pa.field("p_abandon", pa.float64()),
        pa.field("drifted", pa.bool_(), False),
        pa.field("n_events", pa.int32(), False),
    ]
)
#: :data:`~flows.contract.ARROW_SCHEMA` with every field nullable: Parquet files that
#: carry invalid rows (missing required fields) use it.
RELAXED_SCHEMA = pa.schema([f.with_nullable(True) for f in ARROW_SCHEMA])

# --------------------------------------------------------------------------- helpers


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _categorical(rng: np.random.Generator, logits: np.ndarray) -> np.ndarray:
    """One draw per row of a (rows, k) matrix of log-weights (``-inf`` = impossible)."""
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    cum = np.cumsum(weights, axis=1)
    u = rng.random(len(logits)) * cum[:, -1]
    return np.minimum((cum <= u[:, None]).sum(axis=1), logits.shape[1] - 1)


def _rows_choice(rng: np.random.Generator, probs: np.ndarray, row: np.ndarray) -> np.ndarray:
    """One draw per element of ``row`` from the probability table row it names."""
    cum = np.cumsum(probs, axis=1)
    cum /= cum[:, -1:]
    u = rng.random(len(row))
    return np.minimum((cum[row] <= u[:, None]).sum(axis=1), probs.shape[1] - 1)


def _group_cummax(values: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Running maximum of int64 ``values`` restarting at each group (groups ascending)."""
    if len(values) == 0:
        return values
    span = int(values.max() - values.min()) + 1
    shift = group.astype(np.int64) * (2 * span)
    return np.maximum.accumulate(values + shift) - shift


def _session_cumsum(values: np.ndarray, s: _Sessions) -> np.ndarray:
    """Running sum of per-event ``values`` restarting at each session."""
    cum = np.cumsum(values)
    return cum - np.repeat(cum[s.offset] - values[s.offset], s.n)


def _cart_steps_of(etype: np.ndarray) -> np.ndarray:
    return (etype == ADD).astype(np.int64) - (etype == REMOVE)


def _group_starts(group: np.ndarray) -> np.ndarray:
    first = np.ones(len(group), dtype=bool)
    first[1:] = group[1:] != group[:-1]
    return first


# --------------------------------------------------------------------------- sessions


@dataclass
class _Sessions:
    user: np.ndarray  # int64, -1 for anonymous
    n_users: int
    z: np.ndarray
    h: np.ndarray
    cart: np.ndarray  # bool: adds to cart
    n: np.ndarray  # int64 events
    k: np.ndarray  # position of the first add_to_cart, -1 when none
    offset: np.ndarray  # index of the first event


def _assign_users(rng: np.random.Generator, sessions: int, days: int) -> tuple[np.ndarray, int]:
    """Signed-in sessions per user: one each plus a heavy-tailed share of the rest."""
    logged = round(0.7 * sessions)
    n_users = min(logged, max(1, round(sessions / 3)))
    user = np.full(sessions, -1, dtype=np.int64)
    if n_users == 0:
        return user, 0
    weights = rng.lognormal(0.0, 1.1, n_users)
    counts = 1 + rng.multinomial(logged - n_users, weights / weights.sum())
    counts = np.minimum(counts, MAX_SESSIONS_PER_USER_DAY * days)
    slots = rng.permutation(sessions)[: int(counts.sum())]
    user[slots] = np.repeat(np.arange(n_users, dtype=np.int64), counts)
    return user, n_users


def _make_sessions(rng: np.random.Generator, cfg: GeneratorConfig) -> _Sessions:
    user, n_users = _assign_users(rng, cfg.sessions, cfg.days)
    trait = rng.standard_normal(max(n_users, 1))
    noise = rng.standard_normal(cfg.sessions)
    signed = user >= 0
    z = np.where(
        signed,
        _RHO_USER * trait[np.maximum(user, 0)] + math.sqrt(1 - _RHO_USER**2) * noise,
        noise + _ANON_INTENT,
    )
    h = rng.standard_normal(cfg.sessions)
    cart = rng.random(cfg.sessions) < _sigmoid(_CART_B[0] + _CART_B[1] * z)
    log_n = _LEN_MU + _LEN_Z * z + _LEN_H * h + _LEN_SIGMA * rng.standard_normal(cfg.sessions)
    browse = np.clip(np.rint(np.exp(log_n)), 3, MAX_EVENTS - 2).astype(np.int64)
    browse = np.where(cart, np.maximum(browse, _CART_MIN_EVENTS), browse)
    first_add = np.floor(rng.uniform(0.4, 0.8, cfg.sessions) * browse).astype(np.int64)
    k = np.where(cart, np.clip(first_add, _FIRST_ADD_MIN, browse - 2), -1)
    n = browse + 2 * cart  # cart sessions keep two slots for checkout_start and purchase
    offset = np.cumsum(n) - n
    return _Sessions(user, n_users, z, h, cart, n, k, offset)


# --------------------------------------------------------------------------- events


@dataclass
class _Events:
    sess: np.ndarray  # session index of each event, ascending
    pos: np.ndarray  # position within the session
    etype: np.ndarray  # int8 index into TYPES
    page: np.ndarray  # int8 index into PAGES
    duration: np.ndarray  # float64 hover / zoom duration, NaN elsewhere
    rel_ms: np.ndarray  # int64 offset from the session start

    def take(self, idx: np.ndarray) -> _Events:
        arrays = (self.sess, self.pos, self.etype, self.page, self.duration, self.rel_ms)
        return _Events(*(a[idx] for a in arrays))


def _page_views(
    rng: np.random.Generator, s: _Sessions, sess: np.ndarray, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Which events are page views, and the page each event happens on."""
    n_events = len(sess)
    is_pv = rng.random(n_events) < _sigmoid(_PV_B[0] + _PV_B[1] * s.z)[sess]
    is_pv[pos == 0] = True
    before_add = s.offset[s.cart] + s.k[s.cart] - 1
    is_pv[before_add] = True
    pv = np.flatnonzero(is_pv)
    landing = pos[pv] == 0
    logits = np.where(landing[:, None], _LANDING, _NEXT_PAGE)
    zc = s.z[sess[pv]]
    logits[:, PRODUCT] += np.where(landing, 0.3, 1.2) * zc
    logits[:, SEARCH_PAGE] += np.where(landing, 0.0, 0.2) * zc
    page_at = np.zeros(n_events, dtype=np.int8)
    page_at[pv] = _categorical(rng, logits)
    page_at[before_add] = PRODUCT
    last_pv = np.maximum.accumulate(np.where(is_pv, np.arange(n_events), 0))
    return is_pv, page_at[last_pv]


def _browse_types(
    rng: np.random.Generator, s: _Sessions, sess: np.ndarray, is_pv: np.ndarray, page: np.ndarray
) -> np.ndarray:
    etype = np.full(len(sess), PAGE_VIEW, dtype=np.int8)
    other = np.flatnonzero(~is_pv)
    so = sess[other]
    logits = _BROWSE_LOGITS[page[other]] + s.h[so, None] * _BROWSE_H + s.z[so, None] * _BROWSE_Z
    etype[other] = _BROWSE_TYPES[_categorical(rng, logits)]
    return etype


def _cart_steps(rng: np.random.Generator, s: _Sessions, ev: _Events, is_pv: np.ndarray) -> None:
    """First add_to_cart, then more adds and removes; the cart is never left empty."""
    carts = np.flatnonzero(s.cart)
    ev.etype[s.offset[carts] + s.k[carts]] = ADD
    last_browse = s.offset[carts] + s.n[carts] - 3
    zone = (ev.pos > s.k[ev.sess]) & (ev.pos <= s.n[ev.sess] - 3) & s.cart[ev.sess] & ~is_pv
    idx = np.flatnonzero(zone)
    q_add = _sigmoid(_ADD_B[0] + _ADD_B[1] * s.z[ev.sess[idx]])
    q_remove = _sigmoid(_REMOVE_B[0] + _REMOVE_B[1] * s.h[ev.sess[idx]])
    u = rng.random(len(idx))
    ev.etype[idx[u < q_add]] = ADD
    ev.etype[idx[(u >= q_add) & (u < q_add + q_remove)]] = REMOVE
    # A remove on an empty cart is not possible: those become clicks (reflected walk).
    walk = _session_cumsum(_cart_steps_of(ev.etype), s)
    low = np.minimum(-_group_cummax(-walk, ev.sess), 0)
    low_before = np.zeros_like(low)
    low_before[1:] = low[:-1]
    low_before[ev.pos == 0] = 0
    ev.etype[low < low_before] = CLICK
    # Whoever emptied the cart picks another item at the end of browsing.
    in_cart = _session_cumsum(_cart_steps_of(ev.etype), s)[last_browse]
    ev.etype[last_browse[in_cart <= 0]] = ADD
    ev.page[ev.etype == ADD] = PRODUCT
    ev.page[ev.etype == REMOVE] = CART_PAGE
    ev.etype[last_browse + 1] = CHECKOUT
    ev.etype[last_browse + 2] = PURCHASE
    ev.page[last_browse + 1] = CHECKOUT_PAGE
    ev.page[last_browse + 2] = CHECKOUT_PAGE


def _durations(rng: np.random.Generator, s: _Sessions, ev: _Events) -> None:
    """Hover and zoom durations (longer when hesitant) and inter-event gaps."""
    n_events = len(ev.sess)
    ev.duration = np.full(n_events, np.nan)
    shapes = ((HOVER, _HOVER_MU, _HOVER_H, _HOVER_SIGMA), (ZOOM, _ZOOM_MU, _ZOOM_H, _ZOOM_SIGMA))
    for kind, mu, beta, sigma in shapes:
        idx = np.flatnonzero(ev.etype == kind)
        ms = rng.lognormal(mu + beta * s.h[ev.sess[idx]], sigma)
        ev.duration[idx] = np.minimum(np.rint(ms), 60_000.0)
    gap_mu = _GAP_MU + _GAP_H * s.h[ev.sess] + _GAP_Z * s.z[ev.sess]
    gap_mu[ev.etype == CHECKOUT] = _CHECKOUT_GAP_MU
    gap_mu[ev.etype == PURCHASE] = _PURCHASE_GAP_MU
    gap = np.clip(np.rint(rng.lognormal(gap_mu, _GAP_SIGMA)), _GAP_MIN, _GAP_MAX).astype(np.int64)
    gap[1:] += np.nan_to_num(ev.duration[:-1]).astype(np.int64)
    gap[s.offset] = 0
    total = np.add.reduceat(gap, s.offset)
    scale = np.minimum(1.0, MAX_SESSION_MS / np.maximum(total, 1))
    gap = np.floor(gap * scale[ev.sess]).astype(np.int64)
    gap = np.where(ev.pos > 0, np.maximum(gap, 1), 0)
    ev.rel_ms = _session_cumsum(gap, s)


def _make_events(rng: np.random.Generator, s: _Sessions) -> _Events:
    n_events = int(s.n.sum())
    sess = np.repeat(np.arange(len(s.n), dtype=np.int64), s.n)
    pos = np.arange(n_events, dtype=np.int64) - s.offset[sess]
    is_pv, page = _page_views(rng, s, sess, pos)
    etype = _browse_types(rng, s, sess, is_pv, page)
    ev = _Events(sess, pos, etype, page, np.empty(0), np.empty(0, dtype=np.int64))
    _cart_steps(rng, s, ev, is_pv)
    _durations(rng, s, ev)
    return ev


# --------------------------------------------------------------------------- schedule


def _start_times(rng: np.random.Generator, cfg: GeneratorConfig) -> np.ndarray:
    """Wanted session starts (ms from the first midnight): weekday and hour-of-day mix."""
    weekday = np.array([(cfg.start.weekday() + d) % 7 for d in range(cfg.days)])
    day_w = _WEEKDAY[weekday]
    day = rng.choice(cfg.days, size=cfg.sessions, p=day_w / day_w.sum())
    hour = rng.choice(24, size=cfg.sessions, p=_HOURLY / _HOURLY.sum())
    within = rng.integers(0, 3_600_000, cfg.sessions)
    return day.astype(np.int64) * DAY_MS + hour.astype(np.int64) * 3_600_000 + within


def _schedule(wanted: np.ndarray, duration: np.ndarray, user: np.ndarray, days: int) -> np.ndarray:
    """Move session starts the least so a user's sessions never overlap and all end in range.

    A forward pass pushes each session after the previous one of its user (plus the
    sessionization gap); a backward pass pulls the last ones back inside the window.
    A user has at most ``6 * days`` sessions of at most 3 h each, so both fit.
    """
    horizon = days * DAY_MS - 1
    start = np.minimum(wanted, horizon - duration)
    signed = np.flatnonzero(user >= 0)
    order = signed[np.lexsort((wanted[signed], user[signed]))]
    if len(order) == 0:
        return start
    first = _group_starts(user[order])
    group = np.cumsum(first) - 1
    need = duration[order] + MIN_SESSION_GAP_MS
    cum = np.cumsum(need)
    before = cum - need - (cum - need)[first][group]  # needed time of earlier sessions
    forward = before + _group_cummax(wanted[order] - before, group)
    total = np.add.reduceat(need, np.flatnonzero(first))[group]
    after = total - before  # needed time of this and later sessions
    reverse = np.arange(len(order))[::-1]
    rev_group = group[-1] - group[reverse]
    latest = -_group_cummax(-(forward + after)[reverse], rev_group)[reverse]
    start[order] = np.minimum(latest, horizon + MIN_SESSION_GAP_MS) - after
    return start


# --------------------------------------------------------------------------- outcome


@dataclass
class _Outcome:
    day: np.ndarray
    drifted: np.ndarray
    device: np.ndarray
    p_abandon: np.ndarray  # NaN without cart
    purchased: np.ndarray
    abandoned: np.ndarray
    checkout_abandon: np.ndarray
    after: Regime = DRIFTED


def _outcome(
    rng: np.random.Generator, cfg: GeneratorConfig, s: _Sessions, start: np.ndarray
) -> _Outcome:
    day = start // DAY_MS
    drifted = np.zeros(len(day), dtype=bool) if cfg.drift_day is None else day >= cfg.drift_day
    after = cfg.drifted_regime
    mixes = np.array([BASELINE.device_mix, after.device_mix])
    device = _rows_choice(rng, mixes, drifted.astype(np.int64))
    logit = np.where(drifted, after.logit(s.z, s.h, device), BASELINE.logit(s.z, s.h, device))
    p = np.where(s.cart, _sigmoid(logit), np.nan)
    u = rng.random(len(day))
    abandoned = s.cart & (u < p)
    purchased = s.cart & ~abandoned
    checkout_abandon = abandoned & (rng.random(len(day)) < _CHECKOUT_ABANDON)
    return _Outcome(day, drifted, device, p, purchased, abandoned, checkout_abandon, after)


def _apply_outcome(s: _Sessions, ev: _Events, out: _Outcome) -> _Events:
    """Drop the checkout slots a session does not use; buyers keep both."""
    end = s.offset + s.n
    drop = np.zeros(len(ev.sess), dtype=bool)
    drop[end[out.abandoned] - 1] = True
    drop[end[out.abandoned & ~out.checkout_abandon] - 2] = True
    s.n = s.n - np.bincount(ev.sess[drop], minlength=len(s.n))
    s.offset = np.cumsum(s.n) - s.n
    return ev.take(np.flatnonzero(~drop))


# --------------------------------------------------------------------------- measurements


def _pick_elements(
    rng: np.random.Generator, table: tuple[tuple[str, ...], ...], page: np.ndarray
) -> np.ndarray:
    """A uniform element of the page's list, per event."""
    width = max(len(row) for row in table)
    codes = np.array([[_E[e] for e in row] + [0] * (width - len(row)) for row in table])
    sizes = np.array([len(row) for row in table])
    pick = np.floor(rng.random(len(page)) * sizes[page]).astype(np.int64)
    return codes[page, pick]


def _elements(rng: np.random.Generator, s: _Sessions, ev: _Events) -> np.ndarray:
    """Element id codes (-1 for none): hovers lean to 'price' when hesitant."""
    element = np.full(len(ev.sess), -1, dtype=np.int64)
    hov = np.flatnonzero(ev.etype == HOVER)
    page = ev.page[hov]
    b0 = np.where(page == PRODUCT, _PRICE_HOVER_B[0], _PRICE_HOVER_B[0] - 1.0)
    price = rng.random(len(hov)) < _sigmoid(b0 + _PRICE_HOVER_B[1] * s.h[ev.sess[hov]])
    element[hov] = np.where(price, _E["price"], _pick_elements(rng, _HOVER_ELEMENTS, page))
    clk = np.flatnonzero(ev.etype == CLICK)
    element[clk] = _pick_elements(rng, _CLICK_ELEMENTS, ev.page[clk])
    element[ev.etype == ZOOM] = _E["product_image"]
    element[ev.etype == SIZE_GUIDE] = _E["size_guide"]
    element[ev.etype == SEARCH] = _E["search_box"]
    return element


def _scrolls(
    rng: np.random.Generator, s: _Sessions, ev: _Events, out: _Outcome
) -> tuple[np.ndarray, np.ndarray]:
    """Scroll depth in [0, 1] and velocity in px/s (slower when hesitant)."""
    depth = np.full(len(ev.sess), np.nan)
    velocity = np.full(len(ev.sess), np.nan)
    idx = np.flatnonzero(ev.etype == SCROLL)
    sc = ev.sess[idx]
    depth[idx] = np.round(rng.beta(2.0 * np.exp(0.15 * s.h[sc] + 0.3 * s.z[sc]), 2.2), 3)
    scale = np.log(np.where(out.drifted, out.after.velocity_scale, BASELINE.velocity_scale))
    mu = _VEL_MU + _VEL_H * s.h[sc] + _VEL_DEVICE[out.device[sc]] + scale[sc]
    velocity[idx] = np.round(rng.lognormal(mu, _VEL_SIGMA), 1)
    return depth, velocity


def _cart_values(rng: np.random.Generator, s: _Sessions, ev: _Events) -> np.ndarray:
    """Item prices on adds; a remove takes the oldest item still in the cart; order totals."""
    value = np.full(len(ev.sess), np.nan)
    adds = np.flatnonzero(ev.etype == ADD)
    price = np.maximum(np.round(rng.lognormal(_PRICE_MU, _PRICE_SIGMA, len(adds)), 2), _PRICE_MIN)
    value[adds] = price
    rems = np.flatnonzero(ev.etype == REMOVE)
    add_sess, rem_sess = ev.sess[adds], ev.sess[rems]
    rank = np.arange(len(rems)) - np.searchsorted(rem_sess, rem_sess, side="left")
    value[rems] = price[np.searchsorted(add_sess, rem_sess, side="left") + rank]
    buys = np.flatnonzero(ev.etype == PURCHASE)
    added = np.bincount(add_sess, price, minlength=len(s.n))
    removed = np.bincount(rem_sess, value[rems], minlength=len(s.n))
    value[buys] = np.round(added - removed, 2)[ev.sess[buys]]
    return value


def _dwell(rng: np.random.Generator, s: _Sessions, ev: _Events, ts: np.ndarray) -> np.ndarray:
    """Page-view duration: time until the next page (view or checkout), or past the last event."""
    is_pv = ev.etype == PAGE_VIEW
    edge = np.flatnonzero(is_pv | (ev.etype == CHECKOUT))
    dwell = np.full(len(edge), -1.0)
    same = ev.sess[edge[1:]] == ev.sess[edge[:-1]]
    dwell[:-1] = np.where(same, ts[edge[1:]] - ts[edge[:-1]], -1)
    dwell = dwell[is_pv[edge]]
    pv = np.flatnonzero(is_pv)
    last = dwell < 0
    session_end = ts[s.offset + s.n - 1]
    extra = np.rint(rng.lognormal(_LAST_DWELL_MU, _LAST_DWELL_SIGMA, int(last.sum())))
    dwell[last] = session_end[ev.sess[pv[last]]] - ts[pv[last]] + extra
    return dwell


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
        ``(events, oracle)``. ``events`` follows :data:`flows.contract.ARROW_SCHEMA`,
        sorted by ``(ts, event_id)``, and holds only valid rows. ``oracle`` has one
        row per session in :data:`ORACLE_SCHEMA`, sorted by ``session_id``
        (which is also start order); ``p_abandon`` is null for sessions without cart.
    """
    world = _simulate(cfg)
    rng = np.random.default_rng([cfg.seed, 1])
    return _events_table(world, rng), _oracle_table(world)


# --------------------------------------------------------------------------- bad rows


def _corrupt_future_ts(row: dict[str, Any], rng: np.random.Generator) -> None:
    ts = str(row["ts"])
    row["ts"] = "2099" + ts[4:].replace("-02-29T", "-02-28T")


def _corrupt_oversized_element(row: dict[str, Any], rng: np.random.Generator) -> None:
    path = f"div.product-grid > div.product-card:nth-child({int(rng.integers(1, 99))}) > "
    row["element_id"] = (path * 20)[:499] + "a"


def _corrupt_oversized_event_id(row: dict[str, Any], rng: np.random.Generator) -> None:
    row["event_id"] = (str(row["event_id"]) * 13)[:200]


def _pop(name: str) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row.pop(name, None)

    return corrupt


def _put(name: str, value: Any) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row[name] = value

    return corrupt


def _put_drawn(
    name: str, draw: Callable[[np.random.Generator], Any]
) -> Callable[[dict[str, Any], np.random.Generator], None]:
    def corrupt(row: dict[str, Any], rng: np.random.Generator) -> None:
        row[name] = draw(rng)

    return corrupt


@dataclass(frozen=True)
class BadKind:
    """One kind of invalid row, and the rejection reason the contract gives it.

    ``parquet`` tells whether Parquet's typed columns can hold the row; the others go
    into the ``.badtypes.jsonl`` sidecar of a Parquet day.
    """

    name: str
    reason: str
    parquet: bool
    corrupt: Callable[[dict[str, Any], np.random.Generator], None]


#: Every kind of invalid row mixed in by :func:`write_event_log`.
BAD_KINDS: tuple[BadKind, ...] = (
    BadKind("missing_session_id", "session_id: missing required field", True, _pop("session_id")),
    BadKind("missing_ts", "ts: missing required field", True, _pop("ts")),
    BadKind("empty_session_id", "session_id: must not be empty", True, _put("session_id", "")),
    BadKind(
        "wrong_type_user_id",
        "user_id: expected a string, got int",
        False,
        _put_drawn("user_id", lambda rng: int(rng.integers(10_000, 99_999))),
    ),
    BadKind(
        "unparsable_ts",
        "ts: not an ISO 8601 time",
        False,
        _put_drawn("ts", lambda rng: str(rng.choice(["yesterday", "2026-13-45T25:61:00Z", "n/a"]))),
    ),
    BadKind("future_ts", "ts: more than 5 minutes in the future", True, _corrupt_future_ts),
    BadKind(
        "unknown_event_type",
        "event_type: unknown event type",
        True,
        _put_drawn("event_type", lambda rng: str(rng.choice(["teleport", "rage_click", "pinch"]))),
    ),
    BadKind(
        "oversized_element_id", "element_id: string too long", True, _corrupt_oversized_element
    ),
    BadKind("oversized_event_id", "event_id: string too long", True, _corrupt_oversized_event_id),
    BadKind(
        "wrong_type_duration",
        "duration_ms: expected a number, got str",
        False,
        _put_drawn("duration_ms", lambda rng: str(rng.choice(["slow", "850ms", "NaN?"]))),
    ),
    BadKind(
        "negative_duration",
        "duration_ms: must not be negative",
        True,
        _put_drawn("duration_ms", lambda rng: -float(rng.integers(1, 5000))),
    ),
    BadKind(
        "scroll_depth_out_of_range",
        "scroll_depth: outside [0, 1]",
        True,
        _put_drawn("scroll_depth", lambda rng: round(1.0 + float(rng.uniform(0.01, 2.0)), 3)),
    ),
    BadKind(
        "wrong_type_consent",
        "consent: expected true or false, got str",
        False,
        _put("consent", "yes"),
    ),
)


@dataclass
class _Extras:
    """Rows mixed into the day files: duplicates (kind -1) and invalid rows."""

    src: np.ndarray  # index of the valid row it copies
    kind: np.ndarray  # -1 duplicate, else index into BAD_KINDS
    day: np.ndarray
    pos: np.ndarray  # insert before this row of the day's valid rows

    @property
    def bad(self) -> int:
        return int((self.kind >= 0).sum())

    @property
    def duplicates(self) -> int:
        return int((self.kind < 0).sum())


def _plan_extras(cfg: GeneratorConfig, bounds: np.ndarray, rng: np.random.Generator) -> _Extras:
    n_events = int(bounds[-1])
    if cfg.bad_rate <= 0 or n_events == 0:
        empty = np.zeros(0, dtype=np.int64)
        return _Extras(empty, empty, empty, empty)
    n_bad = max(len(BAD_KINDS), round(cfg.bad_rate * n_events))
    n_dup = min(n_events, max(1, round(cfg.bad_rate / 2 * n_events)))
    bad_src = rng.integers(0, n_events, n_bad)
    kind = rng.permutation(np.arange(n_bad) % len(BAD_KINDS))
    dup_src = np.sort(rng.choice(n_events, n_dup, replace=False))
    src = np.concatenate([dup_src, bad_src])
    kind = np.concatenate([np.full(n_dup, -1), kind])
    day = np.searchsorted(bounds, src, side="right") - 1
    local = src - bounds[day]
    size = bounds[day + 1] - bounds[day]
    low = np.where(kind < 0, local + 1, 0)  # a resent copy comes after its original
    pos = rng.integers(low, size + 1)
    return _Extras(src, kind, day, pos)


def _merge_order(n_valid: int, pos: np.ndarray) -> np.ndarray:
    """Order of ``valid rows + extras`` with each extra inserted before row ``pos``."""
    keys = np.concatenate([np.arange(n_valid, dtype=np.float64), pos - 0.5])
    return np.argsort(keys, kind="stable")


# --------------------------------------------------------------------------- writing


def _iso_ms(column: pa.ChunkedArray) -> list[str]:
    stamps = column.to_numpy().astype("datetime64[ms]")
    return [s + "Z" for s in np.datetime_as_string(stamps, unit="ms").tolist()]


def _json_rows(table: pa.Table) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts: ISO 8601 ``ts`` with ``Z``, null fields left out."""
    columns = [
        _iso_ms(table.column(name)) if name == "ts" else table.column(name).to_pylist()
        for name in FIELD_NAMES
    ]
    names = FIELD_NAMES
    return [
        {k: v for k, v in zip(names, values, strict=True) if v is not None}
        for values in zip(*columns, strict=True)
    ]


def _dump_lines(rows: list[dict[str, Any]]) -> list[bytes]:
    """Rows as JSON lines, each ending in a newline (one ``orjson`` call for all)."""
    text = orjson.dumps(rows)[1:-1].replace(b"},{", b"}\n{") + b"\n"
    lines = text.splitlines(keepends=True)
    if len(lines) != len(rows):  # some value held "},{": dump row by row
        option = orjson.OPT_APPEND_NEWLINE
        lines = [orjson.dumps(row, option=option) for row in rows]
    return lines


def _json_lines(table: pa.Table) -> list[bytes]:
    """Every row as one JSON line, like :func:`_json_rows` but a key set at a time."""
    pattern = np.zeros(table.num_rows, dtype=np.int64)
    for bit, name in enumerate(FIELD_NAMES):
        valid = table.column(name).is_valid().to_numpy(zero_copy_only=False)
        pattern |= valid.astype(np.int64) << bit
    lines = np.empty(table.num_rows, dtype=object)
    for code in np.unique(pattern).tolist():
        idx = np.flatnonzero(pattern == code)
        keys = [name for bit, name in enumerate(FIELD_NAMES) if code >> bit & 1]
        part = table.select(keys).take(pa.array(idx))
        columns = [
            _iso_ms(part.column(k)) if k == "ts" else part.column(k).to_pylist() for k in keys
        ]
        rows = list(map(dict, map(zip, repeat(keys), zip(*columns, strict=True))))
        lines[idx] = _dump_lines(rows)
    return list(lines.tolist())


def _bad_rows(
    rows: list[dict[str, Any]], kind: np.ndarray, rng: np.random.Generator
) -> list[dict[str, Any]]:
    """Copies of ``rows`` with one defect each, of the given :data:`BAD_KINDS`."""
    out = []
    for row, k in zip(rows, kind.tolist(), strict=True):
        bad = dict(row)
        BAD_KINDS[k].corrupt(bad, rng)
        out.append(bad)
    return out


def _dump_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    path.write_bytes(b"".join(_dump_lines(rows)))


@dataclass
class _Day:
    """One day's valid rows and the extras that go into its files."""

    stem: Path
    table: pa.Table
    local: np.ndarray  # extras: row of the day they copy
    kind: np.ndarray
    pos: np.ndarray

    def bad_rows(self, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, Any]]]:
        """Positions of the day's invalid rows among its extras, and the rows."""
        bad = np.flatnonzero(self.kind >= 0)
        sources = _json_rows(self.table.take(pa.array(self.local[bad])))
        return bad, _bad_rows(sources, self.kind[bad], rng)


def _write_day_jsonl(day: _Day, rng: np.random.Generator) -> list[Path]:
    lines = _json_lines(day.table)
    bad, rows = day.bad_rows(rng)
    copies = [lines[i] for i in day.local[day.kind < 0].tolist()]
    merged = lines + copies + _dump_lines(rows)
    pos = np.concatenate([day.pos[day.kind < 0], day.pos[bad]])
    path = day.stem.with_suffix(".jsonl")
    path.write_bytes(b"".join([merged[i] for i in _merge_order(len(lines), pos).tolist()]))
    return [path]


def _arrow_rows(rows: list[dict[str, Any]]) -> pa.Table:
    fixed = [{**r, "ts": datetime.fromisoformat(r["ts"])} if "ts" in r else r for r in rows]
    return pa.Table.from_pylist(fixed, schema=RELAXED_SCHEMA)


def _write_day_parquet(day: _Day, rng: np.random.Generator, schema: pa.Schema) -> list[Path]:
    """Valid rows, duplicates and the invalid rows Parquet can hold; the rest in a sidecar."""
    path = day.stem.with_suffix(".parquet")
    table = day.table.cast(schema)
    paths = [path]
    if len(day.kind):
        dup = day.kind < 0
        bad, rows = day.bad_rows(rng)
        typed = np.array([BAD_KINDS[k].parquet for k in day.kind[bad].tolist()], dtype=bool)
        copies = day.table.take(pa.array(day.local[dup])).cast(schema)
        held = _arrow_rows([r for r, t in zip(rows, typed.tolist(), strict=True) if t])
        table = pa.concat_tables([table, copies, held.cast(schema)])
        pos = np.concatenate([day.pos[dup], day.pos[bad][typed]])
        table = table.take(pa.array(_merge_order(day.table.num_rows, pos)))
        if not typed.all():
            side = day.stem.with_name(day.stem.name + ".badtypes.jsonl")
            order = np.flatnonzero(~typed)[np.argsort(day.pos[bad][~typed], kind="stable")]
            _dump_jsonl(side, [rows[i] for i in order.tolist()])
            paths.append(side)
    pq.write_table(table, path, compression="zstd")
    return paths


def _clear_day_files(folder: Path) -> None:
    """Remove day files of an earlier run, so the folder holds exactly one log."""
    for pattern in ("*.jsonl", "*.parquet"):
        for path in folder.glob(pattern):
            stem = path.name.split(".", 1)[0]
            if len(stem) == 10 and stem[4] == "-" and stem[7] == "-":
                path.unlink()


def write_event_log(
    cfg: GeneratorConfig, out: Path, progress: Callable[[int, int], None] | None = None
) -> GeneratedLog:
    """Generate the log of ``cfg`` and write it under ``out``.

    Writes ``out/events/YYYY-MM-DD.jsonl`` (or ``.parquet``) for every day, holding
    the events whose ``ts`` falls on that day, and ``out/oracle.parquet`` with the
    ground truth. With ``cfg.bad_rate > 0`` each day file also gets invalid rows of
    every kind in :data:`BAD_KINDS` and exact duplicates of valid rows (a copy comes
    after its original); in Parquet format, rows whose wrong types a typed column
    cannot hold go into ``out/events/YYYY-MM-DD.badtypes.jsonl`` instead, and the
    day files use :data:`RELAXED_SCHEMA` so missing required fields can be null.
    Day files left by an earlier run in ``out/events`` are removed first.

    Parameters
    ----------
    cfg:
        What to generate.
    out:
        Output folder (created if needed).
    progress:
        Called as ``progress(rows_written, rows_total)`` before the first and after
        every day file.

    Returns
    -------
    GeneratedLog
        Paths and counts of what was written.
    """
    out = Path(out)
    events, oracle = generate_events(cfg)
    folder = out / "events"
    folder.mkdir(parents=True, exist_ok=True)
    _clear_day_files(folder)
    ts = events.column("ts").cast(pa.int64()).to_numpy() // 1000 - cfg.start_ms
    bounds = np.searchsorted(ts, np.arange(cfg.days + 1, dtype=np.int64) * DAY_MS)
    bounds[-1] = events.num_rows
    rng = np.random.default_rng([cfg.seed, 2])
    extras = _plan_extras(cfg, bounds, rng)
    total = events.num_rows + len(extras.kind)
    schema = RELAXED_SCHEMA if cfg.bad_rate > 0 else ARROW_SCHEMA
    files: list[Path] = []
    if progress is not None:
        progress(0, total)
    done = 0
    for d in range(cfg.days):
        mine = extras.day == d
        day = _Day(
            stem=folder / (cfg.start + timedelta(days=d)).isoformat(),
            table=events.slice(int(bounds[d]), int(bounds[d + 1] - bounds[d])),
            local=extras.src[mine] - bounds[d],
            kind=extras.kind[mine],
            pos=extras.pos[mine],
        )
        if cfg.fmt == "parquet":
            files += _write_day_parquet(day, rng, schema)
        else:
            files += _write_day_jsonl(day, rng)
        done += day.table.num_rows + int(mine.sum())
        if progress is not None:
            progress(done, total)
    oracle_path = out / "oracle.parquet"
    pq.write_table(oracle, oracle_path, compression="zstd")
    return GeneratedLog(
        files=sorted(files),
        oracle_path=oracle_path,
        events=events.num_rows,
        sessions=oracle.num_rows,
        users=len(set(oracle.column("user_id").drop_null().to_pylist())),
        bad_rows=extras.bad,
        duplicates=extras.duplicates,
    )
