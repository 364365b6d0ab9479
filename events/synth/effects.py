"""The true effect of every micro-adjustment on every simulated visitor.

The world's visitors answer what they are shown. An action moves a cart
session's abandonment log-odds (``Regime.logit``) by an amount that depends on
the visitor's latent state:

* ``show_discount_popup`` (``percent`` p, default 10) helps **price-hesitant**
  visitors: ``-0.25 * sqrt(p / 10) * sigmoid(2 h) * (1 - size_share)``. It costs
  p % of the order on every purchase it is shown to, including those of visitors
  who would have bought anyway: the margin given away.
* ``highlight_size_guide`` helps **size-hesitant** visitors,
  ``-0.25 * sigmoid(2 h) * size_share``, and distracts confident ones a little,
  ``+0.04 * (1 - sigmoid(2 h))``.
* ``emphasize_cta`` helps **low-intent** browsers a little,
  ``-0.12 * sigmoid(-1.5 intent)``, and pushes keen buyers the wrong way,
  ``+0.02``.
* ``show_social_proof``: ``-0.06 * sigmoid(-intent)``.
* **Annoyance:** every adjustment shown after the first in a session adds
  ``+0.08``.

``h`` is the hesitation, ``intent`` the intent and ``size_share`` in [0, 1] how
much of the hesitation is about size rather than price (a latent the behaviour
does not reveal). At the world's abandonment rates (a slope of about 0.23 points
per 0.01 of log-odds) the effects are at most about 4 points of conversion per
visitor, 0.2 to 1 point on average, and some are negative.

>>> import numpy as np
>>> h, z, s = np.array([1.5, -1.0]), np.array([0.0, 0.0]), np.array([0.0, 0.0])
>>> np.round(effect_logit("show_discount_popup", {"percent": 10}, z, h, s), 3)
array([-0.238, -0.03 ])
>>> round(float(purchase_probability(np.array([0.0]), np.array([-0.2]))[0]), 4)
0.5498
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from events.synth.draws import _sigmoid

NONE = "none"
DISCOUNT = "show_discount_popup"
SIZE_GUIDE = "highlight_size_guide"
CTA = "emphasize_cta"
SOCIAL_PROOF = "show_social_proof"
#: Every action the world knows; the policy's actions are a subset.
ACTIONS: tuple[str, ...] = (NONE, DISCOUNT, SIZE_GUIDE, CTA, SOCIAL_PROOF)

DISCOUNT_MAX = 0.25
SIZE_GUIDE_MAX = 0.25
SIZE_GUIDE_DISTRACTION = 0.04
CTA_MAX = 0.12
CTA_PUSH = 0.02
SOCIAL_PROOF_MAX = 0.06
ANNOYANCE = 0.08
DEFAULT_DISCOUNT_PERCENT = 10.0


def effect_logit(
    action: str,
    params: Mapping[str, Any],
    intent: np.ndarray,
    hesitation: np.ndarray,
    size_share: np.ndarray,
) -> np.ndarray:
    """The change of abandonment log-odds that ``action`` causes, per visitor."""
    hes = _sigmoid(2.0 * hesitation)
    if action == DISCOUNT:
        pct = float(params.get("percent", DEFAULT_DISCOUNT_PERCENT))
        return -DISCOUNT_MAX * math.sqrt(pct / 10.0) * hes * (1.0 - size_share)
    if action == SIZE_GUIDE:
        return -SIZE_GUIDE_MAX * hes * size_share + SIZE_GUIDE_DISTRACTION * (1.0 - hes)
    if action == CTA:
        return -CTA_MAX * _sigmoid(-1.5 * intent) + CTA_PUSH
    if action == SOCIAL_PROOF:
        return -SOCIAL_PROOF_MAX * _sigmoid(-intent)
    return np.zeros(np.shape(intent))


def shown_effect(
    shown: Sequence[tuple[str, Mapping[str, Any]]],
    intent: float,
    hesitation: float,
    size_share: float,
) -> float:
    """The total log-odds change of everything one session was shown, in order.

    >>> round(shown_effect([("emphasize_cta", {}), ("emphasize_cta", {})], 0.0, 0.0, 0.5), 12)
    0.0
    """
    z, h, s = np.array([intent]), np.array([hesitation]), np.array([size_share])
    total = 0.0
    for i, (action, params) in enumerate(a for a in shown if a[0] != NONE):
        total += float(effect_logit(action, params, z, h, s)[0]) + (ANNOYANCE if i else 0.0)
    return total


def purchase_probability(base_logit: np.ndarray, effect: np.ndarray) -> np.ndarray:
    """Probability that a cart session buys, given its abandonment log-odds and an effect."""
    return 1.0 - _sigmoid(base_logit + effect)


def discount_percent(shown: Sequence[tuple[str, Mapping[str, Any]]]) -> float:
    """The largest discount a session was shown, in percent (0 without one)."""
    return max(
        (float(p.get("percent", DEFAULT_DISCOUNT_PERCENT)) for a, p in shown if a == DISCOUNT),
        default=0.0,
    )
