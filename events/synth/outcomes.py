"""How a cart session ends: purchase or abandonment, drawn from the latent state."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from events.synth.behaviour import _Events
from events.synth.config import GeneratorConfig
from events.synth.draws import _rows_choice, _sigmoid
from events.synth.sessions import _Sessions
from events.synth.world import _CHECKOUT_ABANDON, BASELINE, DAY_MS, DRIFTED, Regime

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
