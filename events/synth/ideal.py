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

How it is computed (:mod:`events.synth.likelihood` holds the terms): every
likelihood term of the generator
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

import numpy as np
import pyarrow as pa
from scipy.special import logsumexp

from events.synth.config import GeneratorConfig
from events.synth.likelihood import (
    EVIDENCE,
    N_STATS,
    STATS,
    TINY,
    EventLog,
    Grid,
    event_stats,
    grid,
    length_cdf,
    length_probs,
    length_so_far,
    read_log,
    sigmoid,
)
from events.synth.world import _ANON_INTENT, _CART_MIN_EVENTS, _RHO_USER, DEVICES

IDEAL_SCHEMA = pa.schema(
    [
        pa.field("session_id", pa.string(), False),
        pa.field("ts", pa.timestamp("us", tz="UTC"), False),
        pa.field("ideal_risk", pa.float64(), False),
    ]
)
#: Grid cells times rows of one block of work (bounds the memory: ~8 bytes each).
_BLOCK_CELLS = 8_000_000
# --------------------------------------------------------------------------- the user's trait


def _risk_table(g: Grid, log: EventLog) -> np.ndarray:
    """True abandonment probability per (regime, device) and grid cell: ``(2, 3, cells)``."""
    return np.stack(
        [
            np.stack([sigmoid(r.logit(g.z, g.h, np.full(g.cells, d))) for d in range(len(DEVICES))])
            for r in log.regime
        ]
    )


def _blocks(log: EventLog, budget: int = 60_000) -> list[tuple[int, int]]:
    """Ranges of whole sessions holding about ``budget`` events each."""
    ends = np.cumsum(log.n)
    cuts = np.searchsorted(ends, np.arange(budget, int(ends[-1]), budget), side="left") + 1
    edges = np.unique(np.concatenate([[0], cuts, [len(log.n)]]))
    return list(zip(edges[:-1].tolist(), edges[1:].tolist(), strict=True))


def _event_range(log: EventLog, s_lo: int, s_hi: int) -> tuple[int, int]:
    return int(log.offset[s_lo]), int(log.offset[s_hi - 1] + log.n[s_hi - 1])


def _whole_sessions(log: EventLog, g: Grid, risk: np.ndarray, wanted: np.ndarray) -> np.ndarray:
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
            per_event = event_stats(log, lo, hi)
            sums[seen] = np.add.reduceat(per_event, log.offset[s_lo:s_hi][seen] - lo, axis=0)
        keep = wanted[s_lo:s_hi]
        stats[at[s_lo:s_hi][keep]] = sums[keep]
    idx = np.flatnonzero(wanted)
    ll = stats @ g.w
    cdf = length_cdf(g)
    cart, browse = log.cart[idx], log.browse[idx]
    with np.errstate(divide="ignore"):
        as_cart = np.log(length_probs(cdf, _CART_MIN_EVENTS)[browse])
        as_browser = np.log(length_probs(cdf, 3)[browse]) + np.log1p(-np.exp(g.w[STATS["cart"]][0]))
    ll += np.where(cart[:, None], as_cart, as_browser)
    p = risk[log.drifted[idx].astype(int), log.device[idx]]
    ll += np.where(
        cart[:, None], np.where(log.abandoned[idx][:, None], np.log(p), np.log1p(-p)), 0.0
    )
    ll = np.maximum(ll, np.log(TINY))
    nz = len(np.unique(g.z))
    return logsumexp(ll.reshape(len(idx), nz, -1) - g.h.reshape(nz, -1)[None] ** 2 / 2, axis=2)


def _intent_priors(log: EventLog, g: Grid, risk: np.ndarray, history: bool = True) -> np.ndarray:
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
    log = read_log(events, oracle, cfg)
    g = grid()
    for name in set(leave_out) & set(STATS):
        g.w[STATS[name]] = 0.0
    risk = _risk_table(g, log)
    prior_z = _intent_priors(log, g, risk, history="history" not in leave_out)
    cart_len = length_probs(length_cdf(g), _CART_MIN_EVENTS)
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
        stats = event_stats(log, lo, hi)
        cum = np.cumsum(stats, axis=0)
        first = log.offset[sess] - lo
        for part in np.array_split(rows, -(-len(rows) // step)):
            ps = sess[part]
            ll = cum[part] - cum[first[part]] + stats[first[part]]
            ll = ll @ g.w
            if "length" not in leave_out:
                ll += length_so_far(k[part], pos[part], cart_len)
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
