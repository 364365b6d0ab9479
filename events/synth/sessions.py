"""Sessions: users, latent intent and hesitation, device, length, and start times."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from events.synth.config import GeneratorConfig
from events.synth.draws import _group_cummax, _group_starts, _sigmoid
from events.synth.world import (
    _ANON_INTENT,
    _CART_B,
    _CART_MIN_EVENTS,
    _FIRST_ADD_MIN,
    _HOURLY,
    _LEN_H,
    _LEN_MU,
    _LEN_SIGMA,
    _LEN_Z,
    _RHO_USER,
    _WEEKDAY,
    DAY_MS,
    MAX_EVENTS,
    MAX_SESSIONS_PER_USER_DAY,
    MIN_SESSION_GAP_MS,
)

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


def _session_cumsum(values: np.ndarray, s: _Sessions) -> np.ndarray:
    """Running sum of per-event ``values`` restarting at each session."""
    cum = np.cumsum(values)
    return cum - np.repeat(cum[s.offset] - values[s.offset], s.n)
