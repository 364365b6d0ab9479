"""What a visitor does in a session: event types, pages, elements and measurements.

Hesitation lengthens hovers, zooms and gaps and slows scrolls; intent adds
product views, clicks, zooms, searches, deeper scrolls and cart adds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from events.synth.draws import _cart_steps_of, _categorical, _group_cummax, _sigmoid
from events.synth.sessions import _session_cumsum, _Sessions
from events.synth.world import (
    _ADD_B,
    _BROWSE_H,
    _BROWSE_LOGITS,
    _BROWSE_TYPES,
    _BROWSE_Z,
    _CHECKOUT_GAP_MU,
    _CLICK_ELEMENTS,
    _E,
    _GAP_H,
    _GAP_MAX,
    _GAP_MIN,
    _GAP_MU,
    _GAP_SIGMA,
    _GAP_Z,
    _HOVER_ELEMENTS,
    _HOVER_H,
    _HOVER_MU,
    _HOVER_SIGMA,
    _LANDING,
    _LAST_DWELL_MU,
    _LAST_DWELL_SIGMA,
    _NEXT_PAGE,
    _PRICE_HOVER_B,
    _PRICE_MIN,
    _PRICE_MU,
    _PRICE_SIGMA,
    _PURCHASE_GAP_MU,
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
    CART_PAGE,
    CHECKOUT,
    CHECKOUT_PAGE,
    CLICK,
    HOVER,
    MAX_SESSION_MS,
    PAGE_VIEW,
    PRODUCT,
    PURCHASE,
    REMOVE,
    SCROLL,
    SEARCH,
    SEARCH_PAGE,
    SIZE_GUIDE,
    ZOOM,
)

if TYPE_CHECKING:
    from events.synth.outcomes import _Outcome


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
