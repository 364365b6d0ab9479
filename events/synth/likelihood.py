"""The world's likelihood of a session's events, as linear statistics on a grid.

Every likelihood term of the generator (:mod:`events.synth.behaviour`,
:mod:`events.synth.sessions`) is linear in a few per-event statistics (counts
of page types and of event types per page, sums of log gaps, durations,
scroll depths and velocities) with coefficients that depend on the latent
intent ``z`` and hesitation ``h`` only. :func:`event_stats` gives the
statistics of each event, :func:`grid` the coefficients at every grid point:
their product is the log-likelihood of the events at every ``(z, h)``, up to
a constant. The session length enters through :func:`length_so_far`.
:mod:`events.synth.ideal` turns them into the ideal risk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import gammaln, log_ndtr, logsumexp, ndtr

from events.synth.config import GeneratorConfig
from events.synth.draws import _group_cummax
from events.synth.world import (
    _ADD_B,
    _BROWSE_H,
    _BROWSE_LOGITS,
    _BROWSE_TYPES,
    _BROWSE_Z,
    _CART_B,
    _CART_MIN_EVENTS,
    _GAP_H,
    _GAP_MAX,
    _GAP_MIN,
    _GAP_MU,
    _GAP_SIGMA,
    _GAP_Z,
    _HOVER_H,
    _HOVER_MU,
    _HOVER_SIGMA,
    _LANDING,
    _LEN_H,
    _LEN_MU,
    _LEN_SIGMA,
    _LEN_Z,
    _NEXT_PAGE,
    _PRICE_HOVER_B,
    _PV_B,
    _REMOVE_B,
    _VEL_DEVICE,
    _VEL_H,
    _VEL_MU,
    _VEL_SIGMA,
    _ZOOM_H,
    _ZOOM_MU,
    _ZOOM_SIGMA,
    ADD,
    BASELINE,
    CHECKOUT,
    CLICK,
    DEVICES,
    HOVER,
    MAX_EVENTS,
    PAGE_VIEW,
    PAGES,
    PRODUCT,
    PURCHASE,
    REMOVE,
    SCROLL,
    SEARCH_PAGE,
    TYPES,
    ZOOM,
    Regime,
)

#: Grid of intent and of hesitation (also of the user trait): +-4 sd in steps of 0.2.
GRID = np.linspace(-4.0, 4.0, 41)
_N_PAGES, _N_BROWSE = len(PAGES), len(_BROWSE_TYPES)
MAX_BROWSE = MAX_EVENTS - 2
TINY = 1e-300


# --------------------------------------------------------------------------- statistics


def _layout() -> dict[str, slice]:
    widths = {
        "cart": 1, "pv": 1, "npv": 1, "land": _N_PAGES, "next": _N_PAGES,
        "browse": _N_PAGES * _N_BROWSE, "zone_other": 1, "zone_add": 1, "zone_rem": 1,
        "click_empty": _N_PAGES, "price": 4, "gap": 4, "hover": 2, "zoom": 2, "depth": 2,
        "velocity": 2,
    }  # fmt: skip
    out, at = {}, 0
    for name, width in widths.items():
        out[name] = slice(at, at + width)
        at += width
    return out


STATS = _layout()
N_STATS = STATS["velocity"].stop
#: Every piece of evidence the ideal risk weighs: the per-event statistics, the
#: session's length so far, and the user's earlier sessions.
EVIDENCE: tuple[str, ...] = (*STATS, "length", "history")


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities; impossible entries (``-inf``) get 0: never counted."""
    out = logits - logsumexp(logits, axis=-1, keepdims=True)
    return np.where(np.isfinite(logits), out, 0.0)


@dataclass(frozen=True)
class Grid:
    z: np.ndarray  # (cells,)
    h: np.ndarray
    w: np.ndarray  # (N_STATS, cells): log-likelihood per unit of each statistic

    @property
    def cells(self) -> int:
        return len(self.z)


def _lognormal_terms(mu: np.ndarray, sigma: float) -> np.ndarray:
    """Coefficients of (sum of x, count) for x = log value - its fixed mean part."""
    return np.stack([mu / sigma**2, -(mu**2) / (2 * sigma**2)])


def grid(points: np.ndarray = GRID) -> Grid:
    z, h = (a.ravel() for a in np.meshgrid(points, points, indexing="ij"))
    w = np.zeros((N_STATS, len(z)))
    w[STATS["cart"]] = np.log(sigmoid(_CART_B[0] + _CART_B[1] * z))
    q_pv = sigmoid(_PV_B[0] + _PV_B[1] * z)
    w[STATS["pv"]], w[STATS["npv"]] = np.log(q_pv), np.log1p(-q_pv)
    land = np.tile(_LANDING, (len(z), 1))
    land[:, PRODUCT] += 0.3 * z
    w[STATS["land"]] = _log_softmax(land).T
    nxt = np.tile(_NEXT_PAGE, (len(z), 1))
    nxt[:, PRODUCT] += 1.2 * z
    nxt[:, SEARCH_PAGE] += 0.2 * z
    w[STATS["next"]] = _log_softmax(nxt).T
    shift = h[:, None] * _BROWSE_H + z[:, None] * _BROWSE_Z  # (cells, types)
    browse = _log_softmax(_BROWSE_LOGITS[None, :, :] + shift[:, None, :])  # (cells, page, type)
    w[STATS["browse"]] = browse.reshape(len(z), -1).T
    q_add = sigmoid(_ADD_B[0] + _ADD_B[1] * z)
    q_rem = np.minimum(sigmoid(_REMOVE_B[0] + _REMOVE_B[1] * h), 1.0 - q_add)
    other = np.maximum(1.0 - q_add - q_rem, 1e-12)
    w[STATS["zone_other"]], w[STATS["zone_add"]], w[STATS["zone_rem"]] = (
        np.log(other), np.log(q_add), np.log(q_rem),
    )  # fmt: skip
    click = int(np.flatnonzero(_BROWSE_TYPES == CLICK)[0])
    p_click = np.exp(browse[:, :, click])  # (cells, page); 1 where a click is impossible
    w[STATS["click_empty"]] = np.log(other[:, None] * p_click + q_rem[:, None]).T
    prod, rest = (
        sigmoid(b + _PRICE_HOVER_B[1] * h) for b in (_PRICE_HOVER_B[0], _PRICE_HOVER_B[0] - 1)
    )
    w[STATS["price"]] = np.log(np.stack([prod, 1 - prod, rest, 1 - rest]))
    gap_mu = _GAP_H * h + _GAP_Z * z
    low = (math.log(_GAP_MIN + 0.5) - _GAP_MU - gap_mu) / _GAP_SIGMA
    high = (math.log(_GAP_MAX - 0.5) - _GAP_MU - gap_mu) / _GAP_SIGMA
    w[STATS["gap"]] = np.vstack(
        [_lognormal_terms(gap_mu, _GAP_SIGMA), log_ndtr(low), log_ndtr(-high)]
    )
    w[STATS["hover"]] = _lognormal_terms(_HOVER_H * h, _HOVER_SIGMA)
    w[STATS["zoom"]] = _lognormal_terms(_ZOOM_H * h, _ZOOM_SIGMA)
    a = 2.0 * np.exp(0.15 * h + 0.3 * z)
    w[STATS["depth"]] = np.stack([a, gammaln(a + 2.2) - gammaln(a)])
    w[STATS["velocity"]] = _lognormal_terms(_VEL_H * h, _VEL_SIGMA)
    return Grid(z, h, w)


# --------------------------------------------------------------------------- the log


@dataclass
class EventLog:
    """The events of a log as arrays, sorted by session and time, and per-session facts."""

    sess: np.ndarray  # session index (oracle order) of each event
    pos: np.ndarray
    etype: np.ndarray
    page: np.ndarray
    ts_us: np.ndarray
    price: np.ndarray  # bool: element_id == "price"
    duration: np.ndarray
    depth: np.ndarray
    velocity: np.ndarray
    offset: np.ndarray  # first event of each session
    n: np.ndarray
    k: np.ndarray  # position of the first add_to_cart, -1 without
    browse: np.ndarray  # browsing events (before checkout or purchase)
    device: np.ndarray
    regime: list[Regime]
    drifted: np.ndarray
    user: np.ndarray  # -1 for anonymous
    consent: np.ndarray
    cart: np.ndarray
    abandoned: np.ndarray
    start_us: np.ndarray


def _codes(column: pa.ChunkedArray, names: tuple[str, ...]) -> np.ndarray:
    return pc.index_in(column, value_set=pa.array(list(names))).fill_null(-1).to_numpy()


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    return column.cast(pa.float64()).fill_null(float("nan")).to_numpy()


def read_log(events: pa.Table, oracle: pa.Table, cfg: GeneratorConfig) -> EventLog:
    sess = pc.index_in(events["session_id"], value_set=oracle["session_id"].combine_chunks())
    if sess.null_count:
        raise ValueError("every event's session must be in the oracle table")
    sess = sess.to_numpy()
    ts = events["ts"].cast(pa.int64()).to_numpy()
    order = np.lexsort((ts, sess))
    sess, ts = sess[order], ts[order]
    n_sess = oracle.num_rows
    n = np.bincount(sess, minlength=n_sess)
    offset = np.cumsum(n) - n
    pos = np.arange(len(sess)) - offset[sess]
    etype = _codes(events["event_type"], TYPES)[order]
    big = np.iinfo(np.int64).max
    first = np.full(n_sess, big)
    np.minimum.at(first, sess[etype == ADD], pos[etype == ADD])
    k = np.where(first < big, first, -1)
    ends = np.full(n_sess, big)
    done = (etype == CHECKOUT) | (etype == PURCHASE)
    np.minimum.at(ends, sess[done], pos[done])
    user_codes = pc.dictionary_encode(oracle["user_id"].combine_chunks()).indices
    drifted = oracle["drifted"].to_numpy()
    return EventLog(
        sess=sess,
        pos=pos,
        etype=etype,
        page=_codes(events["page_type"], PAGES)[order],
        ts_us=ts,
        price=pc.equal(events["element_id"], "price").fill_null(False).to_numpy()[order],
        duration=_floats(events["duration_ms"])[order],
        depth=_floats(events["scroll_depth"])[order],
        velocity=_floats(events["scroll_velocity"])[order],
        offset=offset,
        n=n,
        k=k,
        browse=np.where(ends < big, ends, n),
        device=_codes(oracle["device"], DEVICES),
        regime=[BASELINE, cfg.drifted_regime],
        drifted=drifted,
        user=pc.fill_null(user_codes, -1).to_numpy(),
        consent=oracle["consent"].to_numpy(),
        cart=oracle["added_to_cart"].to_numpy(),
        abandoned=oracle["abandoned"].to_numpy(),
        start_us=oracle["start_ts"].cast(pa.int64()).to_numpy(),
    )


def event_stats(log: EventLog, lo: int, hi: int) -> np.ndarray:
    """The statistics of events ``lo:hi`` (whole sessions), one row per event."""
    sl = slice(lo, hi)
    sess, pos, et, page = log.sess[sl], log.pos[sl], log.etype[sl], log.page[sl]
    k = log.k[sess]
    rows = np.arange(hi - lo)
    out = np.zeros((hi - lo, N_STATS))

    def add(where: np.ndarray, col: np.ndarray | int, value: np.ndarray | float = 1.0) -> None:
        idx = np.flatnonzero(where)
        cols = col if isinstance(col, int) else col[idx]
        val = value if np.isscalar(value) else np.asarray(value)[idx]
        out[rows[idx], cols] += val  # one column per row: no repeated (row, column) pair

    ending = (et == CHECKOUT) | (et == PURCHASE)
    pv = et == PAGE_VIEW
    free = (pos >= 1) & (pos != k - 1) & (pos != k) & ~ending
    add(pos == k, STATS["cart"].start)
    add(free & pv, STATS["pv"].start)
    add(free & ~pv, STATS["npv"].start)
    add(pos == 0, STATS["land"].start + page)
    add(free & pv, STATS["next"].start + page)
    btype = np.full(len(et), -1)
    for i, t in enumerate(_BROWSE_TYPES):
        btype[et == t] = i
    steps = (et == ADD).astype(np.int64) - (et == REMOVE)
    cum = np.cumsum(steps)
    start = np.searchsorted(sess, sess, side="left")  # first row of each row's session
    walk = cum - (cum[start] - steps[start])  # items after each event, before reflection
    # A remove on an empty cart became a click: the cart is the walk above its lowest point.
    low = np.minimum(-_group_cummax(-walk, sess), 0)
    cart_before = walk - steps - np.where(pos > 0, np.roll(low, 1), 0)
    zone = (k >= 0) & (pos > k) & ~pv & ~ending
    click_empty = zone & (et == CLICK) & (cart_before <= 0)
    plain = (btype >= 0) & ~click_empty
    add(plain, STATS["browse"].start + page * _N_BROWSE + btype)
    add(zone & plain, STATS["zone_other"].start)
    add(zone & (et == ADD), STATS["zone_add"].start)
    add(zone & (et == REMOVE), STATS["zone_rem"].start)
    add(click_empty, STATS["click_empty"].start + page)
    hov = et == HOVER
    add(hov, STATS["price"].start + np.where(page == PRODUCT, 0, 2) + np.where(log.price[sl], 0, 1))
    # Gaps: time since the previous event, less that event's hover or zoom time.
    prev_dur = np.zeros(len(et))
    dur = log.duration[sl]
    timed = (et == HOVER) | (et == ZOOM)
    prev_dur[1:] = np.where(timed[:-1], dur[:-1], 0.0)
    gap = np.zeros(len(et))
    gap[1:] = (log.ts_us[lo + 1 : hi] - log.ts_us[lo : hi - 1]) / 1000.0 - prev_dur[1:]
    has_gap = (pos >= 1) & ~ending
    low, high = has_gap & (gap <= _GAP_MIN), has_gap & (gap >= _GAP_MAX)
    mid = has_gap & ~low & ~high
    add(mid, STATS["gap"].start, np.log(np.maximum(gap, 1.0)) - _GAP_MU)
    add(mid, STATS["gap"].start + 1)
    add(low, STATS["gap"].start + 2)
    add(high, STATS["gap"].start + 3)
    for kind, name, mu in ((HOVER, "hover", _HOVER_MU), (ZOOM, "zoom", _ZOOM_MU)):
        m = et == kind
        add(m, STATS[name].start, np.log(np.maximum(dur, 1.0)) - mu)
        add(m, STATS[name].start + 1)
    sc = et == SCROLL
    add(sc, STATS["depth"].start, np.log(np.clip(log.depth[sl], 5e-4, 1 - 5e-4)))
    add(sc, STATS["depth"].start + 1)
    scale = np.log([r.velocity_scale for r in log.regime])[log.drifted[sess].astype(int)]
    vel = np.log(np.maximum(log.velocity[sl], 1e-3)) - _VEL_MU - _VEL_DEVICE[log.device[sess]]
    add(sc, STATS["velocity"].start, vel - scale)
    add(sc, STATS["velocity"].start + 1)
    return out


# --------------------------------------------------------------------------- session length


def length_cdf(g: Grid) -> np.ndarray:
    """``P(round(exp(X)) <= b)`` for ``b = 0 .. 398`` (rows) at every grid cell (columns)."""
    mu = _LEN_MU + _LEN_Z * g.z + _LEN_H * g.h
    edges = np.log(np.arange(MAX_BROWSE + 1) + 0.5)
    return ndtr((edges[:, None] - mu[None, :]) / _LEN_SIGMA)


def length_probs(cdf: np.ndarray, floor: int) -> np.ndarray:
    """``P(browse = b)`` for ``b = 0 .. 398``, the draw clipped to ``[floor, 398]``."""
    p = np.diff(cdf, axis=0, prepend=0.0)
    p[:floor] = 0.0
    p[floor] = cdf[floor]
    p[MAX_BROWSE] = 1.0 - cdf[MAX_BROWSE - 1]
    return p


def _first_add_probs() -> np.ndarray:
    """``P(k | browse = b)`` as a ``(k, b)`` matrix; ``k = clip(floor(U(0.4, 0.8) b), 8, b - 2)``.

    Rows are first-add positions, columns browsing lengths.
    """
    out = np.zeros((MAX_BROWSE + 1, MAX_BROWSE + 1))
    for b in range(_CART_MIN_EVENTS, MAX_BROWSE + 1):
        for raw in range(math.floor(0.4 * b), math.ceil(0.8 * b)):
            width = min((raw + 1) / b, 0.8) - max(raw / b, 0.4)
            if width > 0:
                out[min(max(raw, 8), b - 2), b] += width / 0.4
    return out


FIRST_ADD = _first_add_probs()


def length_so_far(k: np.ndarray, j: np.ndarray, cart_len: np.ndarray) -> np.ndarray:
    """log P(first add at ``k``, more than ``j`` browsing events) per row and grid cell."""
    out = np.empty((len(k), cart_len.shape[1]))
    for kk in np.unique(k).tolist():
        rows = np.flatnonzero(k == kk)
        bs = np.flatnonzero(FIRST_ADD[kk])
        tail = np.cumsum((FIRST_ADD[kk, bs, None] * cart_len[bs])[::-1], axis=0)[::-1]
        at = np.searchsorted(bs, j[rows] + 1)
        tail = np.vstack([tail, np.zeros((1, tail.shape[1]))])
        out[rows] = np.log(np.maximum(tail[at], TINY))
    return out
