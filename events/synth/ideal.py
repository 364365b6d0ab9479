"""The ideal risk: the best abandonment risk that the events observed so far allow.

The oracle risk knows a session's latent intent ``z`` and hesitation ``h``; no
model can. The *ideal* risk is what a model would answer if it knew the
world's own likelihoods exactly: the posterior mean of the true abandonment
probability given

* every event of the session up to and including the decision event,
* the fact that the session is still going (it has not checked out yet), and
* every earlier consented session of the same signed-in user (the user's trait
  ties the intents of their sessions together),

computed on a grid of ``(z, h)``. It is the attainable limit for any model fed
the same events: a model's hold-out AUC can only approach it.

How it is computed: every likelihood term of the generator
(:mod:`events.synth.behaviour`, :mod:`events.synth.sessions`) is linear in a
few per-event statistics (counts of page types and event types per page, sums
of log gaps, durations, scroll depths and velocities) with coefficients that
depend on ``(z, h)`` only. A running sum of those statistics per session, times
a coefficient matrix, gives the log-likelihood of every prefix at every grid
point in one matrix product. The session length enters through the position of
the first ``add_to_cart`` and the knowledge that the session has not ended; an
earlier session through its whole likelihood, outcome included, integrated over
its hesitation and passed through the user's trait.

What it leaves out, on purpose and by a negligible amount:

* the hidden page drawn behind the first ``add_to_cart`` (the event replaces a
  page view whose page only shows in the events after it);
* the rounding of measurements, the 60 s cap on hover and zoom durations and
  the 3 h cap on a session (a handful of sessions are squeezed by it);
* the ``add_to_cart`` forced on the last browsing event of a session that had
  emptied its cart;
* the dwell of the current page, which the log fills in from the *next* page
  view (it is future information at the decision time).

>>> from events.synth import GeneratorConfig, generate_events
>>> events, oracle = generate_events(GeneratorConfig(sessions=300, days=1, seed=4))
>>> ideal = ideal_risk(events, oracle)
>>> ideal.column_names
['session_id', 'ts', 'ideal_risk']
>>> risk = ideal.column("ideal_risk").to_numpy()
>>> bool(((risk > 0) & (risk < 1)).all())
True
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.special import gammaln, log_ndtr, logsumexp, ndtr

from events.synth.config import GeneratorConfig
from events.synth.draws import _group_cummax
from events.synth.world import (
    _ADD_B,
    _ANON_INTENT,
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
    _RHO_USER,
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
IDEAL_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("ideal_risk", pa.float64(), False),
    ]
)
_N_PAGES, _N_BROWSE = len(PAGES), len(_BROWSE_TYPES)
_MAX_BROWSE = MAX_EVENTS - 2
_TINY = 1e-300
#: Grid cells times rows of one block of work (bounds the memory: ~8 bytes each).
_BLOCK_CELLS = 8_000_000


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


_S = _layout()
N_STATS = _S["velocity"].stop
#: Every piece of evidence the ideal risk weighs: the per-event statistics, the
#: session's length so far, and the user's earlier sessions.
EVIDENCE: tuple[str, ...] = (*_S, "length", "history")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-probabilities; impossible entries (``-inf``) get 0: never counted."""
    out = logits - logsumexp(logits, axis=-1, keepdims=True)
    return np.where(np.isfinite(logits), out, 0.0)


@dataclass(frozen=True)
class _Grid:
    z: np.ndarray  # (cells,)
    h: np.ndarray
    w: np.ndarray  # (N_STATS, cells): log-likelihood per unit of each statistic

    @property
    def cells(self) -> int:
        return len(self.z)


def _lognormal_terms(mu: np.ndarray, sigma: float) -> np.ndarray:
    """Coefficients of (sum of x, count) for x = log value - its fixed mean part."""
    return np.stack([mu / sigma**2, -(mu**2) / (2 * sigma**2)])


def _grid(points: np.ndarray = GRID) -> _Grid:
    z, h = (a.ravel() for a in np.meshgrid(points, points, indexing="ij"))
    w = np.zeros((N_STATS, len(z)))
    w[_S["cart"]] = np.log(_sigmoid(_CART_B[0] + _CART_B[1] * z))
    q_pv = _sigmoid(_PV_B[0] + _PV_B[1] * z)
    w[_S["pv"]], w[_S["npv"]] = np.log(q_pv), np.log1p(-q_pv)
    land = np.tile(_LANDING, (len(z), 1))
    land[:, PRODUCT] += 0.3 * z
    w[_S["land"]] = _log_softmax(land).T
    nxt = np.tile(_NEXT_PAGE, (len(z), 1))
    nxt[:, PRODUCT] += 1.2 * z
    nxt[:, SEARCH_PAGE] += 0.2 * z
    w[_S["next"]] = _log_softmax(nxt).T
    shift = h[:, None] * _BROWSE_H + z[:, None] * _BROWSE_Z  # (cells, types)
    browse = _log_softmax(_BROWSE_LOGITS[None, :, :] + shift[:, None, :])  # (cells, page, type)
    w[_S["browse"]] = browse.reshape(len(z), -1).T
    q_add = _sigmoid(_ADD_B[0] + _ADD_B[1] * z)
    q_rem = np.minimum(_sigmoid(_REMOVE_B[0] + _REMOVE_B[1] * h), 1.0 - q_add)
    other = np.maximum(1.0 - q_add - q_rem, 1e-12)
    w[_S["zone_other"]], w[_S["zone_add"]], w[_S["zone_rem"]] = (
        np.log(other), np.log(q_add), np.log(q_rem),
    )  # fmt: skip
    click = int(np.flatnonzero(_BROWSE_TYPES == CLICK)[0])
    p_click = np.exp(browse[:, :, click])  # (cells, page); 1 where a click is impossible
    w[_S["click_empty"]] = np.log(other[:, None] * p_click + q_rem[:, None]).T
    prod, rest = (
        _sigmoid(b + _PRICE_HOVER_B[1] * h) for b in (_PRICE_HOVER_B[0], _PRICE_HOVER_B[0] - 1)
    )
    w[_S["price"]] = np.log(np.stack([prod, 1 - prod, rest, 1 - rest]))
    gap_mu = _GAP_H * h + _GAP_Z * z
    low = (math.log(_GAP_MIN + 0.5) - _GAP_MU - gap_mu) / _GAP_SIGMA
    high = (math.log(_GAP_MAX - 0.5) - _GAP_MU - gap_mu) / _GAP_SIGMA
    w[_S["gap"]] = np.vstack([_lognormal_terms(gap_mu, _GAP_SIGMA), log_ndtr(low), log_ndtr(-high)])
    w[_S["hover"]] = _lognormal_terms(_HOVER_H * h, _HOVER_SIGMA)
    w[_S["zoom"]] = _lognormal_terms(_ZOOM_H * h, _ZOOM_SIGMA)
    a = 2.0 * np.exp(0.15 * h + 0.3 * z)
    w[_S["depth"]] = np.stack([a, gammaln(a + 2.2) - gammaln(a)])
    w[_S["velocity"]] = _lognormal_terms(_VEL_H * h, _VEL_SIGMA)
    return _Grid(z, h, w)


# --------------------------------------------------------------------------- the log


@dataclass
class _Log:
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


def _read(events: pa.Table, oracle: pa.Table, cfg: GeneratorConfig) -> _Log:
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
    return _Log(
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


def _event_stats(log: _Log, lo: int, hi: int) -> np.ndarray:
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
    add(pos == k, _S["cart"].start)
    add(free & pv, _S["pv"].start)
    add(free & ~pv, _S["npv"].start)
    add(pos == 0, _S["land"].start + page)
    add(free & pv, _S["next"].start + page)
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
    add(plain, _S["browse"].start + page * _N_BROWSE + btype)
    add(zone & plain, _S["zone_other"].start)
    add(zone & (et == ADD), _S["zone_add"].start)
    add(zone & (et == REMOVE), _S["zone_rem"].start)
    add(click_empty, _S["click_empty"].start + page)
    hov = et == HOVER
    add(hov, _S["price"].start + np.where(page == PRODUCT, 0, 2) + np.where(log.price[sl], 0, 1))
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
    add(mid, _S["gap"].start, np.log(np.maximum(gap, 1.0)) - _GAP_MU)
    add(mid, _S["gap"].start + 1)
    add(low, _S["gap"].start + 2)
    add(high, _S["gap"].start + 3)
    for kind, name, mu in ((HOVER, "hover", _HOVER_MU), (ZOOM, "zoom", _ZOOM_MU)):
        m = et == kind
        add(m, _S[name].start, np.log(np.maximum(dur, 1.0)) - mu)
        add(m, _S[name].start + 1)
    sc = et == SCROLL
    add(sc, _S["depth"].start, np.log(np.clip(log.depth[sl], 5e-4, 1 - 5e-4)))
    add(sc, _S["depth"].start + 1)
    scale = np.log([r.velocity_scale for r in log.regime])[log.drifted[sess].astype(int)]
    vel = np.log(np.maximum(log.velocity[sl], 1e-3)) - _VEL_MU - _VEL_DEVICE[log.device[sess]]
    add(sc, _S["velocity"].start, vel - scale)
    add(sc, _S["velocity"].start + 1)
    return out


# --------------------------------------------------------------------------- session length


def _length_cdf(g: _Grid) -> np.ndarray:
    """``P(round(exp(X)) <= b)`` for ``b = 0 .. 398`` (rows) at every grid cell (columns)."""
    mu = _LEN_MU + _LEN_Z * g.z + _LEN_H * g.h
    edges = np.log(np.arange(_MAX_BROWSE + 1) + 0.5)
    return ndtr((edges[:, None] - mu[None, :]) / _LEN_SIGMA)


def _length_probs(cdf: np.ndarray, floor: int) -> np.ndarray:
    """``P(browse = b)`` for ``b = 0 .. 398``, the draw clipped to ``[floor, 398]``."""
    p = np.diff(cdf, axis=0, prepend=0.0)
    p[:floor] = 0.0
    p[floor] = cdf[floor]
    p[_MAX_BROWSE] = 1.0 - cdf[_MAX_BROWSE - 1]
    return p


def _first_add_probs() -> np.ndarray:
    """``P(k | browse = b)`` as a ``(k, b)`` matrix; ``k = clip(floor(U(0.4, 0.8) b), 8, b - 2)``.

    Rows are first-add positions, columns browsing lengths.
    """
    out = np.zeros((_MAX_BROWSE + 1, _MAX_BROWSE + 1))
    for b in range(_CART_MIN_EVENTS, _MAX_BROWSE + 1):
        for raw in range(math.floor(0.4 * b), math.ceil(0.8 * b)):
            width = min((raw + 1) / b, 0.8) - max(raw / b, 0.4)
            if width > 0:
                out[min(max(raw, 8), b - 2), b] += width / 0.4
    return out


_PK = _first_add_probs()


def _length_so_far(k: np.ndarray, j: np.ndarray, cart_len: np.ndarray) -> np.ndarray:
    """log P(first add at ``k``, more than ``j`` browsing events) per row and grid cell."""
    out = np.empty((len(k), cart_len.shape[1]))
    for kk in np.unique(k).tolist():
        rows = np.flatnonzero(k == kk)
        bs = np.flatnonzero(_PK[kk])
        tail = np.cumsum((_PK[kk, bs, None] * cart_len[bs])[::-1], axis=0)[::-1]
        at = np.searchsorted(bs, j[rows] + 1)
        tail = np.vstack([tail, np.zeros((1, tail.shape[1]))])
        out[rows] = np.log(np.maximum(tail[at], _TINY))
    return out


# --------------------------------------------------------------------------- the user's trait


def _risk_table(g: _Grid, log: _Log) -> np.ndarray:
    """True abandonment probability per (regime, device) and grid cell: ``(2, 3, cells)``."""
    return np.stack(
        [
            np.stack(
                [_sigmoid(r.logit(g.z, g.h, np.full(g.cells, d))) for d in range(len(DEVICES))]
            )
            for r in log.regime
        ]
    )


def _blocks(log: _Log, budget: int = 60_000) -> list[tuple[int, int]]:
    """Ranges of whole sessions holding about ``budget`` events each."""
    ends = np.cumsum(log.n)
    cuts = np.searchsorted(ends, np.arange(budget, int(ends[-1]), budget), side="left") + 1
    edges = np.unique(np.concatenate([[0], cuts, [len(log.n)]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _event_range(log: _Log, s_lo: int, s_hi: int) -> tuple[int, int]:
    return int(log.offset[s_lo]), int(log.offset[s_hi - 1] + log.n[s_hi - 1])


def _whole_sessions(log: _Log, g: _Grid, risk: np.ndarray, wanted: np.ndarray) -> np.ndarray:
    """log-likelihood of whole sessions, outcome included, per intent: ``(sessions, z)``.

    ``wanted`` is a boolean mask over sessions; the rows follow its order.
    """
    stats = np.zeros((int(wanted.sum()), N_STATS))
    at = np.cumsum(wanted) - 1
    for s_lo, s_hi in _blocks(log):
        if not wanted[s_lo:s_hi].any():
            continue
        lo, hi = _event_range(log, s_lo, s_hi)
        seen = log.n[s_lo:s_hi] > 0
        sums = np.zeros((s_hi - s_lo, N_STATS))
        if hi > lo:
            per_event = _event_stats(log, lo, hi)
            sums[seen] = np.add.reduceat(per_event, log.offset[s_lo:s_hi][seen] - lo, axis=0)
        keep = wanted[s_lo:s_hi]
        stats[at[s_lo:s_hi][keep]] = sums[keep]
    idx = np.flatnonzero(wanted)
    ll = stats @ g.w
    cdf = _length_cdf(g)
    cart, browse = log.cart[idx], log.browse[idx]
    with np.errstate(divide="ignore"):
        as_cart = np.log(_length_probs(cdf, _CART_MIN_EVENTS)[browse])
        as_browser = np.log(_length_probs(cdf, 3)[browse]) + np.log1p(-np.exp(g.w[_S["cart"]][0]))
    ll += np.where(cart[:, None], as_cart, as_browser)
    p = risk[log.drifted[idx].astype(int), log.device[idx]]
    ll += np.where(
        cart[:, None], np.where(log.abandoned[idx][:, None], np.log(p), np.log1p(-p)), 0.0
    )
    ll = np.maximum(ll, np.log(_TINY))
    nz = len(np.unique(g.z))
    return logsumexp(ll.reshape(len(idx), nz, -1) - g.h.reshape(nz, -1)[None] ** 2 / 2, axis=2)


def _intent_priors(log: _Log, g: _Grid, risk: np.ndarray, history: bool = True) -> np.ndarray:
    """Each session's log prior of intent over the grid, given the user's earlier sessions.

    A signed-in session's intent is ``0.7 u + sqrt(0.51) e``; the user's trait
    ``u`` is learnt from every earlier consented session of theirs. Anonymous
    sessions have intent ``N(-0.25, 1)``.
    """
    points = np.unique(g.z)
    sd = math.sqrt(1 - _RHO_USER**2)
    log_k = -((points[None, :] - _RHO_USER * points[:, None]) ** 2) / (2 * sd**2)
    log_k -= logsumexp(log_k, axis=1, keepdims=True)  # (trait, intent): p(intent | trait)
    prior = np.tile(-((points - _ANON_INTENT) ** 2) / 2, (len(log.n), 1))
    signed = np.flatnonzero(log.user >= 0)
    if not history:
        prior[signed] = -(points**2) / 2
        return prior
    order = signed[np.lexsort((log.start_us[signed], log.user[signed]))]
    if len(order) == 0:
        return prior
    user = log.user[order]
    later = np.zeros(len(order), dtype=bool)
    later[:-1] = user[1:] == user[:-1]
    evidence = np.zeros((len(order), len(points)))
    teach = later & log.consent[order] & (log.n[order] > 0)
    wanted = np.zeros(len(log.n), dtype=bool)
    wanted[order[teach]] = True
    if wanted.any():
        lz = _whole_sessions(log, g, risk, wanted)  # rows in session order
        rank = np.cumsum(wanted) - 1
        log_m = logsumexp(log_k[None] + lz[rank[order[teach]]][:, None, :], axis=2)
        evidence[teach] = log_m - log_m.max(axis=1, keepdims=True)
    first = np.ones(len(order), dtype=bool)
    first[1:] = user[1:] != user[:-1]
    cum = np.cumsum(evidence, axis=0)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(order)), 0))
    earlier = cum - evidence - (cum[group_start] - evidence[group_start])
    trait = -(points**2) / 2 + earlier
    prior[order] = logsumexp(trait[:, :, None] + log_k[None], axis=1)
    return prior


# --------------------------------------------------------------------------- the ideal risk


def ideal_risk(
    events: pa.Table,
    oracle: pa.Table,
    cfg: GeneratorConfig | None = None,
    *,
    leave_out: Collection[str] = (),
) -> pa.Table:
    """The ideal risk at every event of every cart session that a decision can follow.

    Parameters
    ----------
    events, oracle:
        A log and its ground truth, as :func:`events.synth.generate_events` returns
        them (valid events only).
    cfg:
        The configuration the log was generated with; only its drift regime is read.
    leave_out:
        Evidence to ignore, to see where the information is (a diagnostic; the
        ideal risk uses all of it): any of :data:`EVIDENCE`.

    Returns
    -------
    pyarrow.Table
        :data:`IDEAL_SCHEMA`: one row per event of a cart session from its first
        ``add_to_cart`` up to, not including, its ``checkout_start`` or ``purchase``
        (every possible decision point), keyed by ``(session_id, ts)``, sorted so.
    """
    unknown = set(leave_out) - set(EVIDENCE)
    if unknown:
        raise ValueError(f"unknown evidence {sorted(unknown)}; known: {', '.join(EVIDENCE)}")
    cfg = cfg or GeneratorConfig()
    log = _read(events, oracle, cfg)
    g = _grid()
    for name in set(leave_out) & set(_S):
        g.w[_S[name]] = 0.0
    risk = _risk_table(g, log)
    prior_z = _intent_priors(log, g, risk, history="history" not in leave_out)
    cart_len = _length_probs(_length_cdf(g), _CART_MIN_EVENTS)
    nz = len(np.unique(g.z))
    z_of_cell = np.repeat(np.arange(nz), g.cells // nz)
    log_h = -(g.h**2) / 2
    flat_risk = risk.reshape(-1, g.cells).T  # (cells, regime * device)
    picked: list[np.ndarray] = []
    values: list[np.ndarray] = []
    step = max(1, _BLOCK_CELLS // g.cells)
    for s_lo, s_hi in _blocks(log):
        lo, hi = _event_range(log, s_lo, s_hi)
        sess, pos = log.sess[lo:hi], log.pos[lo:hi]
        k = log.k[sess]
        rows = np.flatnonzero((k >= 0) & (pos >= k) & (pos < log.browse[sess]))
        if len(rows) == 0:
            continue
        stats = _event_stats(log, lo, hi)
        cum = np.cumsum(stats, axis=0)
        first = log.offset[sess] - lo
        for part in np.array_split(rows, -(-len(rows) // step)):
            ps = sess[part]
            ll = cum[part] - cum[first[part]] + stats[first[part]]
            ll = ll @ g.w
            if "length" not in leave_out:
                ll += _length_so_far(k[part], pos[part], cart_len)
            ll += prior_z[ps][:, z_of_cell] + log_h
            w = np.exp(ll - ll.max(axis=1, keepdims=True))
            col = log.drifted[ps].astype(int) * len(DEVICES) + log.device[ps]
            values.append((w @ flat_risk)[np.arange(len(part)), col] / w.sum(axis=1))
            picked.append(part + lo)
    at = np.concatenate(picked) if picked else np.zeros(0, dtype=np.int64)
    risk_out = np.concatenate(values) if values else np.zeros(0)
    ids = oracle["session_id"].combine_chunks().take(pa.array(log.sess[at]))
    stamps = pa.array(log.ts_us[at], type=pa.timestamp("us", tz="UTC"))
    return pa.Table.from_arrays([ids, stamps, pa.array(risk_out)], schema=IDEAL_SCHEMA)
